// Runs every watchdog scenario script and compares its transcript with the
// golden file beside it. UPDATE_GOLDEN=1 rewrites the golden files.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { runWatchdogScript } from "./scenarios/watchdog-script.js";

const dir = fileURLToPath(new URL("./scenarios/watchdog/", import.meta.url));
const scripts = readdirSync(dir)
  .filter((f) => f.endsWith(".txt"))
  .sort();

describe("watchdog scenario scripts", () => {
  it("finds the scripts", () => {
    expect(scripts.length).toBeGreaterThanOrEqual(10);
  });

  it.each(scripts)("%s", (file) => {
    const { transcript } = runWatchdogScript(readFileSync(join(dir, file), "utf8"));
    const golden = join(dir, file.replace(/\.txt$/, ".golden"));
    if (process.env["UPDATE_GOLDEN"] === "1" || !existsSync(golden)) {
      if (process.env["UPDATE_GOLDEN"] !== "1")
        throw new Error(`no golden file ${golden}; run with UPDATE_GOLDEN=1`);
      writeFileSync(golden, transcript);
    }
    expect(transcript).toBe(readFileSync(golden, "utf8"));
  });
});
