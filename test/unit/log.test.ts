import { memoryLogger } from "../../controllers/common/log.js";

describe("structured logger", () => {
  it("writes one JSON object per line with component, level and fields", () => {
    const log = memoryLogger("dispatcher");
    log.child({ node: "n1" }).info("bid sent", { task_id: "01ABC" });
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatchObject({
      level: "info",
      component: "dispatcher",
      msg: "bid sent",
      node: "n1",
      task_id: "01ABC",
    });
  });

  it("never writes secrets, whatever the caller passes", () => {
    const log = memoryLogger();
    log.warn("join refused", { token: "s3cr3t", private_key: "pem", join_token: "x", node_id: "n1" });
    const line = JSON.stringify(log.lines[0]);
    expect(line).not.toContain("s3cr3t");
    expect(line).not.toContain("pem");
    expect(log.lines[0]).toMatchObject({ token: "[redacted]", node_id: "n1" });
  });
});
