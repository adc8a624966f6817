// A node agent's request subjects (`beemesh.node.<nodeId>.remove|logs|status`, DESIGN
// §2, §5): answered, signed, for dispatchers, users, and a workload asking for
// its own pod; refused for anyone else, and for a stale fencing token.
import { counterValue } from "../../protocol/bus/index.js";
import { FakeRuntime } from "../../controllers/scheduler-bidder/runtime/index.js";
import { requestLogs, requestRemove, requestStatus } from "../../controllers/scheduler-bidder/node-api.js";
import { SchedulingMesh, podTemplate } from "../helpers/scheduling-mesh.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import type { Event, RemoveRequest } from "../../protocol/index.js";

let mesh: SchedulingMesh;
let runtime: FakeRuntime;
let user: TestBus;
let deployed: Event;

beforeAll(async () => {
  mesh = await SchedulingMesh.start();
  await mesh.addKeeper("lk-1");
  runtime = new FakeRuntime();
  await mesh.addAgent("api-1", { runtime });
  user = await busAs(mesh.nats, "user", ["user", "alice"]);
  const ref = await mesh.putManifest(podTemplate("web"));
  const task = await mesh.publish(mesh.task(ref));
  deployed = await mesh.waitForEvent(task.task_id, "deployed");
});

afterAll(async () => {
  await user?.bus.close();
  await mesh?.stop();
});

const removal = (extra: Partial<RemoveRequest> = {}): RemoveRequest => ({
  ns: "default",
  kind: "Deployment",
  parent: "web",
  pod: deployed.pod!,
  reason: "retire",
  ts: Date.now(),
  ...extra,
});

test("logs for a user: the pod's last lines, signed by the node", async () => {
  runtime.appendLog(deployed.pod!, "app", "hello from the pod");
  const reply = await requestLogs(user.bus, "api-1", {
    ns: "default",
    pod: deployed.pod!,
    tail: 5,
    ts: Date.now(),
  });
  expect(reply).toEqual(expect.objectContaining({ ok: true, node_id: "api-1", pod: deployed.pod }));
  expect(reply.logs).toEqual([{ name: "app", lines: ["hello from the pod"] }]);
  const missing = await requestLogs(user.bus, "api-1", { ns: "default", pod: "nope", ts: Date.now() });
  expect(missing.ok).toBe(false);
});

test("status answers that the agent is there, with the pods it holds; a node not there has no responders", async () => {
  const reply = await requestStatus(user.bus, "api-1", { ts: Date.now() });
  expect(reply).toEqual(expect.objectContaining({ ok: true, node_id: "api-1", pods: 1 }));
  await expect(requestStatus(user.bus, "api-9", { ts: Date.now() }, 1500)).rejects.toThrow(/no responders/i);
  // A workload may not ask (only dispatchers and users): dropped and counted, no answer.
  const pod = await busAs(mesh.nats, "watchdog", ["ns", "default", "deployment", "web", deployed.pod!]);
  const agentBus = mesh.agents.get("api-1")!.bus;
  const before = await agentBus.rejected("unauthorized");
  try {
    await expect(requestStatus(pod.bus, "api-1", { ts: Date.now() }, 1500)).rejects.toThrow();
  } finally {
    await pod.bus.close();
  }
  expect(await agentBus.rejected("unauthorized")).toBe(before + 1);
});

test("a workload of another parent cannot remove the pod: dropped, no answer", async () => {
  const other = await busAs(mesh.nats, "watchdog", ["ns", "default", "deployment", "other", "other-abc"]);
  try {
    // Even claiming to be of the right parent in the payload does not help: the SVID says otherwise.
    await expect(requestRemove(other.bus, "api-1", removal(), 1500)).rejects.toThrow();
  } finally {
    await other.bus.close();
  }
  const agentBus = mesh.agents.get("api-1")!.bus;
  expect(
    await counterValue(agentBus.registry, "beemesh_messages_rejected_total", { reason: "unauthorized" }),
  ).toBeGreaterThanOrEqual(1);
  expect(runtime.podCount).toBe(1);
});

test("another node cannot even publish a removal (NATS permissions)", async () => {
  const node = await busAs(mesh.nats, "scheduler-bidder", ["node", "api-2"]);
  try {
    await expect(requestRemove(node.bus, "api-1", removal(), 1500)).rejects.toThrow();
  } finally {
    await node.bus.close();
  }
  expect(runtime.podCount).toBe(1);
});

test("a stale fencing token is refused with a reason", async () => {
  const reply = await requestRemove(
    user.bus,
    "api-1",
    removal({ fencing_token: deployed.fencing_token! + 100 }),
  );
  expect(reply.ok).toBe(false);
  expect(reply.error).toMatch(/stale fencing token/);
  expect(runtime.podCount).toBe(1);
});

test("the pod's own workload retires it: removed, lease and provider record gone", async () => {
  const self = await busAs(mesh.nats, "watchdog", ["ns", "default", "deployment", "web", deployed.pod!]);
  try {
    const reply = await requestRemove(self.bus, "api-1", removal({ fencing_token: deployed.fencing_token! }));
    expect(reply).toEqual(expect.objectContaining({ ok: true, removed: true, pod: deployed.pod }));
  } finally {
    await self.bus.close();
  }
  expect(runtime.podCount).toBe(0);
  const removed = await mesh.waitForEvent(deployed.task_id, "removed");
  expect(removed.node_id).toBe("api-1");
  expect(removed.details).toMatch(/retire/);
  expect((await mesh.infra.buckets.leases.get(`task.${deployed.task_id}`))?.operation ?? "DEL").not.toBe(
    "PUT",
  );
  expect(
    (await mesh.infra.buckets.providers.get(`deployment.default.web.${deployed.pod}`))?.operation ?? "DEL",
  ).not.toBe("PUT");
  expect(mesh.agents.get("api-1")!.agent.pods()).toEqual([]);
  expect(mesh.agents.get("api-1")!.agent.used().pods).toBe(0);
});
