// The podman runtime against real podman (DESIGN §8): a busybox httpd pod on
// 127.0.0.1 with hostNetwork, and pods whose app exits. Uses its own podman
// store (--root/--runroot/--tmpdir) so it never touches other pods.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PodmanRuntime } from "../../controllers/scheduler-bidder/runtime/podman.js";
import {
  DeployFailedError,
  PodExistsError,
  PodNotFoundError,
  type DeploySpec,
  type PodPhase,
  type PodStatus,
} from "../../controllers/scheduler-bidder/runtime/types.js";

const execFileP = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const IMAGE = "localhost/beemesh/busybox:latest";
const INDEX_HTML = "<!doctype html><title>beemesh</title><p>beemesh busybox test image</p>\n";

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "not running as root (podman pods need root here, DESIGN §8)";
  try {
    await execFileP("podman", ["--version"], { timeout: 10_000 });
  } catch {
    return "podman is not installed";
  }
  return undefined;
}

const reason = await skipReason();
if (reason !== undefined) console.warn(`runtime-podman.test: skipped: ${reason}`);
const describePodman = reason === undefined ? describe : describe.skip;

const store = path.join(os.tmpdir(), "beemesh-runtime-podman-test");
const globalArgs = ["--root", `${store}/root`, "--runroot", `${store}/run`, "--tmpdir", `${store}/tmp`];
const run = randomBytes(3).toString("hex");
const podName = (what: string) => `rt-${run}-${what}`;

/** Polls until check returns a value, or fails after timeoutMs. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let attempt = 0; Date.now() < deadline && attempt < 1_000; attempt++) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`, { cause: last });
}

function waitForPhase(rt: PodmanRuntime, name: string, phase: PodPhase): Promise<PodStatus> {
  return waitFor(`${name} to be ${phase}`, async () => {
    const s = await rt.status(name);
    return s.phase === phase ? s : undefined;
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

function spec(name: string, command: string[], over: Partial<DeploySpec> = {}): DeploySpec {
  return {
    podName: name,
    identity: {
      taskId: `01J${run.toUpperCase()}`,
      ns: "it",
      parent: "web",
      kind: "Deployment",
      generation: 3,
      fencingToken: 42,
    },
    limits: { cpuMillis: 100, memoryBytes: 32 * 2 ** 20 },
    manifest: {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { labels: { app: "web" } },
      spec: {
        hostNetwork: true,
        restartPolicy: "Never",
        containers: [
          {
            name: "app",
            image: IMAGE,
            imagePullPolicy: "Never",
            command,
            resources: { limits: { cpu: "100m", memory: "32Mi" } },
          },
        ],
      },
    },
    ...over,
  };
}

describePodman("PodmanRuntime (real podman)", () => {
  let rt: PodmanRuntime;
  const created: string[] = [];

  beforeAll(async () => {
    for (const dir of ["root", "run", "tmp"]) mkdirSync(path.join(store, dir), { recursive: true });
    const started = performance.now();
    const { stderr } = await execFileP(path.join(repo, "hack/build-test-images.sh"), ["--", ...globalArgs], {
      timeout: 60_000,
    });
    console.log(`build-test-images (${Math.round(performance.now() - started)} ms): ${stderr.trim()}`);
    rt = new PodmanRuntime({ globalArgs, stopTimeoutSeconds: 0, commandTimeoutMs: 30_000 });
    // Leftovers of an interrupted run in this test-only store.
    for (const pod of (await rt.list()).pods) await rt.remove(pod.podName);
  }, 90_000);

  afterAll(async () => {
    if (!rt) return;
    for (const name of created) await rt.remove(name).catch(() => undefined);
  });

  test("serves HTTP, reports running, logs, lists its labels, removes", async () => {
    const name = podName("web");
    const port = await freePort();
    const s = spec(name, ["/bin/httpd", "-f", "-v", "-p", `127.0.0.1:${port}`, "-h", "/www"], {
      identity: {
        taskId: `01J${run.toUpperCase()}`,
        ns: "it",
        parent: "web",
        kind: "StatefulSet",
        ordinal: 0,
        generation: 3,
        fencingToken: 42,
      },
    });
    created.push(name);

    const t0 = performance.now();
    await rt.deploy(s);
    console.log(`podman deploy of ${name} took ${Math.round(performance.now() - t0)} ms`);

    const status = await waitForPhase(rt, name, "running");
    expect(status.containers).toEqual([expect.objectContaining({ name: "app", state: "running" })]);
    // The container's resources reached the cgroup settings.
    const limits = await rt.podman([
      "inspect",
      "--format",
      "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
      `${name}-app`,
    ]);
    expect(limits.stdout.trim()).toBe(`${32 * 2 ** 20} ${100_000_000}`);

    const body = await waitFor("httpd to answer", async () => {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      return res.ok ? res.text() : undefined;
    });
    expect(body).toBe(INDEX_HTML);

    const logs = await waitFor("the request in the log", async () => {
      const l = await rt.logs(name, { tail: 10 });
      return l.containers[0]?.lines.some((line) => line.includes("response:200")) ? l : undefined;
    });
    expect(logs.containers.map((c) => c.name)).toEqual(["app"]);

    const listing = await rt.list();
    expect(listing.unparsable).toEqual([]);
    expect(listing.pods.find((p) => p.podName === name)).toEqual({
      podName: name,
      identity: s.identity,
      limits: s.limits,
      phase: "running",
    });
    const capacity = await rt.capacity();
    expect(capacity.used.pods).toBeGreaterThanOrEqual(1);
    expect(capacity.used.cpuMillis).toBeGreaterThanOrEqual(100);
    expect(capacity.total.cpuMillis).toBe(os.availableParallelism() * 1000);

    await expect(rt.deploy(s)).rejects.toBeInstanceOf(PodExistsError);
    expect((await rt.status(name)).phase).toBe("running");

    const t1 = performance.now();
    await expect(rt.remove(name)).resolves.toBe(true);
    console.log(`podman remove of ${name} took ${Math.round(performance.now() - t1)} ms`);
    await expect(rt.status(name)).rejects.toBeInstanceOf(PodNotFoundError);
    expect((await rt.list()).pods.find((p) => p.podName === name)).toBeUndefined();
    await expect(rt.remove(name)).resolves.toBe(false);
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  });

  test("an app that exits non-zero shows as failed with its exit code and output", async () => {
    const name = podName("crash");
    created.push(name);
    await rt.deploy(spec(name, ["/bin/sh", "-c", "echo going down; echo oops >&2; exit 3"]));
    const status = await waitForPhase(rt, name, "failed");
    expect(status.containers).toEqual([
      expect.objectContaining({ name: "app", state: "exited", exitCode: 3 }),
    ]);
    expect((await rt.logs(name)).containers[0]?.lines).toEqual(["going down", "oops"]);
    expect((await rt.list()).pods.find((p) => p.podName === name)?.phase).toBe("failed");
    await expect(rt.remove(name)).resolves.toBe(true);
  });

  test("an app that exits 0 shows as exited", async () => {
    const name = podName("done");
    created.push(name);
    await rt.deploy(spec(name, ["/bin/true"]));
    const status = await waitForPhase(rt, name, "exited");
    expect(status.containers[0]).toMatchObject({ state: "exited", exitCode: 0 });
    await expect(rt.remove(name)).resolves.toBe(true);
  });

  test("a missing image fails the deploy and leaves no half-made pod", async () => {
    const name = podName("noimage");
    created.push(name);
    const s = spec(name, ["/bin/true"]);
    const container = s.manifest.spec.containers[0];
    if (container) container.image = "localhost/beemesh/does-not-exist:1";
    await expect(rt.deploy(s)).rejects.toBeInstanceOf(DeployFailedError);
    await expect(rt.status(name)).rejects.toBeInstanceOf(PodNotFoundError);
  });
});
