// Watchdogs heal real podman pods (DESIGN §4, §8): a 3-replica busybox httpd
// BeemeshDeployment placed by real node agents (PodmanRuntime) and a real
// lease-keeper over a real nats-server; `podman rm -f` of one app container,
// and a replacement pod serves HTTP again. Prints the heal time.
//
// The watchdog runs IN-PROCESS beside each real pod, not as the injected
// sidecar container: the node agent does not yet add BEEMESH_POD_NAME /
// BEEMESH_NODE_ID nor mount a Workload API socket into pods, so the sidecar
// could not get its identity. The agents run the dispatcher's rendered
// manifest minus the watchdog container; each in-process watchdog runs the
// pod spec's own exec probes inside the real app container (`podman exec`),
// which reach httpd over 127.0.0.1 (hostNetwork).
//
// All replicas share the host's network, so the app picks the first free port
// of a list and writes it to /tmp/port; the probes read it from there.
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PodmanRuntime } from "../../controllers/scheduler-bidder/runtime/index.js";
import { ContainerProbes, type ExecRunner } from "../../controllers/watchdog/probes.js";
import { WatchdogMesh, sampleDeployment } from "./watchdog-mesh.js";
import { freePort } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const execFileP = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const IMAGE = "localhost/beemesh/busybox:latest";

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
if (reason !== undefined) console.warn(`watchdog-podman.test: skipped: ${reason}`);
const describePodman = reason === undefined ? describe : describe.skip;

// A store of its own, shared by the three node agents (one machine, three agents).
const store = path.join(os.tmpdir(), "beemesh-watchdog-podman-test");
const globalArgs = ["--root", `${store}/root`, "--runroot", `${store}/run`, "--tmpdir", `${store}/tmp`];

describePodman("watchdog on real podman pods", () => {
  let mesh: WatchdogMesh;
  let admin: PodmanRuntime;
  let ports: number[];

  const podmanExec =
    (container: string): ExecRunner =>
    async (command) => {
      try {
        // The runtime bounds every podman call (commandTimeoutMs).
        await admin.podman(["exec", container, ...command]);
        return 0;
      } catch (err) {
        const code = (err as { exitCode?: number | null }).exitCode;
        return typeof code === "number" && code > 0 ? code : 1;
      }
    };

  async function httpPort(pod: string): Promise<number | undefined> {
    try {
      const { stdout } = await admin.podman(["exec", `${pod}-app`, "cat", "/tmp/port"]);
      const port = Number(stdout.trim());
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
      return res.ok ? port : undefined;
    } catch {
      return undefined;
    }
  }

  beforeAll(async () => {
    for (const dir of ["root", "run", "tmp"]) mkdirSync(path.join(store, dir), { recursive: true });
    const t0 = performance.now();
    await execFileP(path.join(repo, "hack/build-test-images.sh"), ["--", ...globalArgs], { timeout: 60_000 });
    console.log(`build-test-images: ${Math.round(performance.now() - t0)} ms`);
    admin = new PodmanRuntime({ globalArgs, stopTimeoutSeconds: 0, commandTimeoutMs: 30_000 });
    for (const pod of (await admin.list()).pods) await admin.remove(pod.podName);
    ports = [];
    for (let i = 0; i < 8; i++) ports.push(await freePort());

    mesh = await WatchdogMesh.start({
      nodes: 3,
      stripSidecar: true,
      runtimeFor: () => new PodmanRuntime({ globalArgs, stopTimeoutSeconds: 0, commandTimeoutMs: 30_000 }),
      healthFor:
        ({ pod }) =>
        (app) => {
          if (app === undefined) throw new Error("the app container has no spec");
          return new ContainerProbes(app, { exec: podmanExec(`${pod}-app`), periodMs: 500 });
        },
      logic: { intervalMs: 500, ttlIntervals: 3, slotRenewMs: 1000, slotTtlMs: 3000, cloneGraceMs: 20_000 },
    });
  }, 90_000);

  afterAll(async () => {
    await mesh?.stop();
    if (admin)
      for (const pod of (await admin.list()).pods) await admin.remove(pod.podName).catch(() => undefined);
  }, 60_000);

  test("podman rm -f of one app container: a replacement pod serves again", async () => {
    const obj = sampleDeployment("httpd", 3, "uid-httpd-podman", IMAGE);
    const tpl = obj.spec.template.spec;
    tpl.hostNetwork = true;
    // Two replicas must not fight over one port on the shared host network.
    const loop = ports.map((p) => `echo ${p} > /tmp/port; httpd -f -p 127.0.0.1:${p} -h /www`).join("; ");
    const probe = {
      exec: { command: ["sh", "-c", "wget -q -O /dev/null http://127.0.0.1:$(cat /tmp/port)/"] },
      periodSeconds: 1,
      timeoutSeconds: 2,
    };
    tpl.containers = [
      {
        name: "app",
        image: IMAGE,
        imagePullPolicy: "Never",
        command: ["sh", "-c", `${loop}; sleep 3600`],
        resources: { limits: { cpu: "100m", memory: "32Mi" } },
        // podman exec is slow on a loaded machine: liveness is lenient, so a slow probe never retires a healthy pod.
        livenessProbe: { ...probe, timeoutSeconds: 10, failureThreshold: 5 },
        readinessProbe: probe,
      },
    ];
    await mesh.deploy(obj);
    const first = await waitFor(
      async () => {
        const live = mesh.live("httpd");
        if (live.length !== 3 || !mesh.watchdogsSettled("httpd")) return undefined;
        const served = await Promise.all(live.map(httpPort));
        return served.every((p) => p !== undefined) ? live : undefined;
      },
      { timeoutMs: 40_000, intervalMs: 250, what: "3 httpd pods serving" },
    );
    // Every watchdog has seen its app ready through the exec probes.
    await waitFor(() => first.every((p) => mesh.watchdogOf(p)?.status().view?.ready === true), {
      timeoutMs: 10_000,
      what: "watchdogs ready",
    });

    const victim = first[1]!;
    const t0 = performance.now();
    // --time 0: kill now; the shell looping over httpd (PID 1) ignores SIGTERM, and podman
    // would wait its 10 s stop timeout with the app still serving.
    await admin.podman(["rm", "--force", "--time", "0", `${victim}-app`]);
    const healed = await waitFor(
      async () => {
        const fresh = mesh.live("httpd").filter((p) => !first.includes(p));
        if (fresh.length !== 1) return undefined;
        return (await httpPort(fresh[0]!)) !== undefined ? fresh[0] : undefined;
      },
      { timeoutMs: 40_000, intervalMs: 100, what: "a replacement serving HTTP" },
    );
    const healMs = Math.round(performance.now() - t0);
    expect(mesh.watchdogOf(victim)?.status().retiredFor).toBe("unhealthy");
    // Its node agent removes the broken pod (podman's pod stop/rm is the slow part).
    await waitFor(() => !mesh.live("httpd").includes(victim), {
      timeoutMs: 40_000,
      what: `${victim} removed by its node agent`,
    });
    const removedMs = Math.round(performance.now() - t0);
    console.log(
      `podman rm -f ${victim}-app: replacement ${healed} serving HTTP after ${healMs} ms; broken pod removed after ${removedMs} ms`,
    );
    expect(mesh.live("httpd")).toHaveLength(3);
    expect((await admin.list()).pods.map((p) => p.podName)).not.toContain(victim);

    await mesh.deleteObject("httpd");
    await waitFor(async () => (await admin.list()).pods.length === 0, {
      timeoutMs: 30_000,
      intervalMs: 250,
      what: "every pod removed after delete",
    });
  }, 120_000);
});
