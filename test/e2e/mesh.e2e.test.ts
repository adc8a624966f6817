// make e2e: the whole mesh on real podman (DESIGN §8). hack/up.sh starts NATS,
// a dispatcher, a lease-keeper and 3 node agents as host processes on ports
// of their own; the steps (steps.ts) drive a BeemeshDeployment with kubectl
// and check podman; hack/down.sh tears everything down, also on failure.
// Every step prints its timing, and the total is printed at the end.
// Skipped, with the reason printed, without root, podman, kubectl or
// nats-server, or with BEEMESH_E2E=0.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Mesh, freePortBlock, run } from "./harness.js";
import { APP_IMAGE_V2, deploymentSteps, type Step } from "./steps.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const STATE = path.join(repo, ".tmp", "e2e-mesh");
const UP_TIMEOUT_MS = 180_000;
const DOWN_TIMEOUT_MS = 60_000;

/** The run: Deployment steps now; a StatefulSet list joins here. */
const E2E_STEPS: Step[] = [...deploymentSteps({ name: "e2e-web" })];

const say = (line: string) => process.stdout.write(`e2e: ${line}\n`);

async function skipReason(): Promise<string | undefined> {
  if (process.env["BEEMESH_E2E"] === "0") return "BEEMESH_E2E=0";
  if (process.getuid?.() !== 0) return "not running as root (podman pods need root here, DESIGN §8)";
  for (const [bin, args] of [
    ["podman", ["--version"]],
    ["kubectl", ["version", "--client"]],
  ] as const) {
    try {
      await run(bin, args, { timeoutMs: 10_000 });
    } catch {
      return `${bin} is not installed`;
    }
  }
  if (
    !existsSync("/usr/sbin/nats-server") &&
    !process.env["PATH"]?.split(":").some((d) => existsSync(`${d}/nats-server`))
  ) {
    return "nats-server is not installed";
  }
  return undefined;
}

/** Runs a hack/ script, its output prefixed on stdout; rejects on a non-zero exit or after timeoutMs. */
function script(name: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [path.join(repo, "hack", name), ...args], {
      cwd: repo,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const relay = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n"))
        if (line.trim() !== "" && !line.startsWith("npm warn")) say(`  | ${line}`);
    };
    child.stdout.on("data", relay);
    child.stderr.on("data", relay);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `hack/${name} ${signal ? `was killed (${signal}) after ${timeoutMs} ms` : `exited with ${code}`}`,
          ),
        );
    });
  });
}

const reason = await skipReason();
if (reason !== undefined) say(`skipped: ${reason}`);
const describeE2e = reason === undefined ? describe : describe.skip;

describeE2e("mesh e2e on real podman", () => {
  const started = Date.now();
  const timings: Array<{ step: string; ms: number; ok: boolean; detail: string }> = [];
  let mesh: Mesh | undefined;
  let failed = false;
  let env: NodeJS.ProcessEnv;

  beforeAll(
    async () => {
      const base = await freePortBlock(12);
      env = {
        ...process.env,
        BEEMESH_MESH_DIR: STATE,
        BEEMESH_PORT_BASE: String(base),
        BEEMESH_POD_NET: "44",
        BEEMESH_MESH_APPLY: "",
        // Never npm install under a running Jest; .ci/run and make install first.
        BEEMESH_SKIP_INSTALL: "1",
      };
      // A previous run that died leaves its mesh behind: stop it first.
      if (existsSync(STATE)) await script("down.sh", ["--purge"], env, DOWN_TIMEOUT_MS);
      const t = Date.now();
      try {
        await script("up.sh", [], env, UP_TIMEOUT_MS);
      } catch (err) {
        failed = true;
        throw err;
      }
      timings.push({
        step: "make up (build, certificates, NATS, 5 controllers ready)",
        ms: Date.now() - t,
        ok: true,
        detail: `ports ${base}..${base + 11}`,
      });
      say(`[up] ${((Date.now() - t) / 1000).toFixed(1)} s`);
      mesh = await Mesh.open(repo, STATE);
    },
    UP_TIMEOUT_MS + DOWN_TIMEOUT_MS + 10_000,
  );

  afterAll(async () => {
    const t = Date.now();
    let downOk = true;
    try {
      // Keep the logs of a failed run; a passing run leaves nothing.
      await script("down.sh", failed ? [] : ["--purge"], env, DOWN_TIMEOUT_MS);
    } catch (err) {
      downOk = false;
      say(`down failed: ${String(err)}`);
    }
    timings.push({
      step: "make down (every process, pod and port gone)",
      ms: Date.now() - t,
      ok: downOk,
      detail: failed ? `logs kept in ${STATE}/logs` : "",
    });
    await run("podman", ["untag", APP_IMAGE_V2], {
      env: { ...process.env, CONTAINERS_CONF: `${repo}/hack/podman/containers.conf` },
    }).catch(() => undefined);
    const total = Date.now() - started;
    say("summary:");
    for (const t of timings)
      say(
        `  ${t.ok ? "ok  " : "FAIL"} ${(t.ms / 1000).toFixed(1).padStart(6)} s  ${t.step}${t.detail ? `  (${t.detail})` : ""}`,
      );
    say(`  total ${(total / 1000).toFixed(1)} s`);
    if (!downOk) throw new Error("hack/down.sh did not leave the machine clean");
  }, DOWN_TIMEOUT_MS + 10_000);

  E2E_STEPS.forEach((step, i) => {
    test(
      `[${i + 1}/${E2E_STEPS.length}] ${step.name}`,
      async () => {
        if (failed || mesh === undefined) throw new Error("not run: an earlier step failed");
        const t = Date.now();
        say(`[${i + 1}/${E2E_STEPS.length}] ${step.name} ...`);
        try {
          let detail = await step.run({ mesh, log: (line) => say(`    ${line}`) });
          const ms = Date.now() - t;
          // The step's own waits bound it; a success past its budget is a slow machine, reported, not failed.
          if (ms > step.budgetMs) {
            say(`WARNING: step ${i + 1} took ${ms} ms, over its budget of ${step.budgetMs} ms`);
            detail += `; over its ${step.budgetMs / 1000} s budget`;
          }
          timings.push({ step: step.name, ms, ok: true, detail });
          say(`[${i + 1}/${E2E_STEPS.length}] ok in ${(ms / 1000).toFixed(1)} s: ${detail}`);
        } catch (err) {
          failed = true;
          timings.push({
            step: step.name,
            ms: Date.now() - t,
            ok: false,
            detail: err instanceof Error ? err.message.slice(0, 300) : String(err),
          });
          throw err;
        }
      },
      step.budgetMs + 15_000,
    );
  });
});
