// hack/build-local-images.sh builds localhost/beemesh/controllers:latest with
// real podman and no registry; the image runs Node 22 and the built project,
// and a second run with unchanged inputs is skipped by its content hash.
import { execFile, spawn } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "../..");
const IMAGE = "localhost/beemesh/controllers:latest";
const BUILD_BUDGET_MS = 45_000;
const env = { ...process.env, CONTAINERS_CONF: resolve(REPO, "hack/podman/containers.conf") };

interface BuildResult {
  code: number | null;
  output: string;
  timedOut: boolean;
  ms: number;
}

/** Runs the build in its own process group, so a build over budget is stopped whole (tsc, tar, podman). */
function build(args: string[], budgetMs: number): Promise<BuildResult> {
  const started = performance.now();
  return new Promise((done, fail) => {
    const child = spawn("bash", [resolve(REPO, "hack/build-local-images.sh"), ...args], {
      cwd: REPO,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    }, budgetMs);
    child.on("error", fail);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, output, timedOut, ms: performance.now() - started });
    });
  });
}

const podmanAvailable = await run("podman", ["--version"], { env }).then(
  () => true,
  () => false,
);

let built: BuildResult | undefined;

beforeAll(async () => {
  if (!podmanAvailable) return;
  built = await build(["--only", "controllers"], BUILD_BUDGET_MS);
}, BUILD_BUDGET_MS + 5_000);

const skipReason = (): string | undefined => {
  if (!podmanAvailable) return "podman is not installed";
  if (built?.timedOut) return `the image build needed more than ${BUILD_BUDGET_MS} ms (machine busy?)`;
  return undefined;
};

describe("local controllers image", () => {
  it("builds and runs Node 22 with the built project and its production dependencies", async () => {
    const reason = skipReason();
    if (reason) {
      console.log(`skipped: ${reason}`);
      return;
    }
    expect({ code: built?.code, output: built?.output }).toEqual({ code: 0, output: expect.any(String) });
    const version = await run(
      "podman",
      ["run", "--rm", "--network", "host", IMAGE, "node", "-e", "console.log(process.version)"],
      { env },
    );
    expect(version.stdout.trim()).toMatch(/^v22\./);
    // ESM entry points resolve their dependencies from /app/node_modules; dev dependencies are gone.
    const probe = [
      'await import("/app/dist/identity/ca.js");',
      'await import("@nats-io/transport-node");',
      'const fs = await import("node:fs");',
      'console.log(JSON.stringify({ uid: process.getuid(), cwd: process.cwd(), jest: fs.existsSync("/app/node_modules/jest"), ts: fs.existsSync("/app/node_modules/typescript") }));',
    ].join(" ");
    const app = await run(
      "podman",
      ["run", "--rm", "--network", "host", IMAGE, "node", "--input-type=module", "-e", probe],
      { env },
    );
    expect(JSON.parse(app.stdout.trim())).toEqual({ uid: 65532, cwd: "/app", jest: false, ts: false });
  }, 30_000);

  it("skips a rebuild when nothing changed (content hash label)", async () => {
    const reason = skipReason();
    if (reason) {
      console.log(`skipped: ${reason}`);
      return;
    }
    const label = await run(
      "podman",
      ["image", "inspect", "--format", '{{index .Labels "io.beemesh.content-hash"}}', IMAGE],
      { env },
    );
    expect(label.stdout.trim()).toMatch(/^[0-9a-f]{64}$/);
    const again = await build(["--only", "controllers"], 20_000);
    expect(again.code).toBe(0);
    expect(again.output).toContain(`${IMAGE} is up to date (hash ${label.stdout.trim().slice(0, 12)})`);
  }, 30_000);
});
