// The watchdog as its own process, both from source (controllers/watchdog/main.ts
// run by tsx) and as the image runs it (the bundle from hack/bundle-sidecars.ts,
// started with the node flags the dispatcher renders): configured only by env, it reads its Deployment, heartbeats signed as its
// workload SVID, serves /healthz, /readyz and /metrics, and stops on SIGTERM.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSvidFiles } from "../../identity/ca.js";
import { ensureSchedulingInfra } from "../../controllers/common/nats-setup.js";
import { renderWorkload } from "../../controllers/dispatcher/fanout/render.js";
import { HEARTBEAT_SPEC } from "../../controllers/watchdog/wire.js";
import { BUCKETS, kvKeys, parseBeemeshDeployment, subjects } from "../../protocol/index.js";
import { freePort, startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { sampleDeployment } from "./watchdog-mesh.js";
import { WATCHDOG_COMMAND } from "../../controllers/dispatcher/fanout/render.js";
import { bundleSidecars } from "../../hack/bundle-sidecars.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

let nats: NatsFixture;
let dispatcher: TestBus; // writes the object and manifest, as only dispatchers may
let dir: string;
let child: ChildProcess | undefined;
let stderr = "";
let bundle: string;

beforeAll(async () => {
  nats = await startNats();
  dispatcher = await busAs(nats, "dispatcher");
  await ensureSchedulingInfra(dispatcher.bus.nc, { storage: "memory" });
  dir = await mkdtemp(join(tmpdir(), "beemesh-watchdog-main-"));
  bundle = (await bundleSidecars(join(dir, "dist")))[0]!;
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await dispatcher?.bus.close();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The node flags of the rendered sidecar command, its script swapped for the local bundle. */
function bundledCommand(): string[] {
  const [node, ...rest] = WATCHDOG_COMMAND;
  expect(node).toBe("node");
  expect(rest[rest.length - 1]).toMatch(/^\/app\/dist\/sidecars\/watchdog\/main\.mjs$/);
  return [...rest.slice(0, -1), bundle];
}

it.each([
  ["from source", "solo", () => ["--import", "tsx", join(repo, "controllers/watchdog/main.ts")]],
  ["as the bundle the image runs", "bundled", bundledCommand],
])(
  "runs %s from env: heartbeats, health endpoints, metrics, graceful SIGTERM",
  async (_how, name, argv) => {
    stderr = "";
    const parsed = parseBeemeshDeployment(sampleDeployment(name, 1, `uid-${name}`));
    if (!parsed.ok) throw parsed.error;
    const obj = parsed.value;
    const rendered = renderWorkload(obj, { natsUrl: nats.url });
    const manifests = await dispatcher.bus.kvm.open(BUCKETS.manifests);
    const objects = await dispatcher.bus.kvm.open(BUCKETS.objects);
    for (const m of rendered.manifests) await manifests.put(m.key, m.bytes);
    await objects.put(
      kvKeys.object("beemeshdeployments", "default", name),
      new TextEncoder().encode(JSON.stringify(obj)),
    );
    await writeSvidFiles(
      dir,
      "svid",
      await nats.issue("watchdog", "ns", "default", "deployment", name, `${name}-0`),
    );

    const heartbeats = dispatcher.bus.subscribe(subjects().watchdog("default", name), HEARTBEAT_SPEC);
    const first = (async () => {
      for await (const m of heartbeats) return m;
      return undefined;
    })();
    await dispatcher.bus.nc.flush();

    const port = await freePort();
    child = spawn(process.execPath, argv(), {
      cwd: repo,
      env: {
        PATH: process.env["PATH"] ?? "",
        BEEMESH_NATS_URL: nats.url,
        BEEMESH_NAMESPACE: "default",
        BEEMESH_PARENT: name,
        BEEMESH_PARENT_UID: `uid-${name}`,
        BEEMESH_GENERATION: "1",
        BEEMESH_TEMPLATE_HASH: rendered.templateHash,
        BEEMESH_WATCHDOG_INTERVAL_MS: "200",
        BEEMESH_POD_NAME: `${name}-0`,
        BEEMESH_NODE_ID: "node-1",
        BEEMESH_SVID_DIR: dir,
        BEEMESH_HEALTH_PORT: String(port),
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8000)));
    const exited = new Promise<number | null>((r) => child!.once("exit", (code) => r(code)));

    const hb = await withTimeout(first, 30_000, `a heartbeat (stderr: ${stderr})`);
    expect(hb?.payload).toMatchObject({
      pod: `${name}-0`,
      parent: name,
      node: "node-1",
      healthy: true,
      retiring: false,
    });
    expect(hb?.sender.toString()).toBe(`spiffe://beemesh.local/ns/default/deployment/${name}/${name}-0`);
    heartbeats.unsubscribe();

    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: res.status, body: await res.text() };
    };
    await waitFor(async () => (await get("/readyz")).status === 200, { timeoutMs: 10_000, what: "/readyz" });
    expect((await get("/healthz")).status).toBe(200);
    const metrics = await waitFor(
      async () => {
        const body = (await get("/metrics")).body;
        const sent = /beemesh_watchdog_heartbeats_sent_total\{[^}]*\} (\d+)/.exec(body);
        return sent && Number(sent[1]) >= 3 ? body : undefined;
      },
      { timeoutMs: 10_000, what: "heartbeats counted in /metrics" },
    );
    expect(metrics).toMatch(/beemesh_watchdog_peers_alive\{[^}]*\} 0/);
    expect(metrics).toMatch(/beemesh_watchdog_clones_total\{[^}]*\} 0/);

    child.kill("SIGTERM");
    expect(await withTimeout(exited, 15_000, "exit after SIGTERM")).toBe(0);
    expect(stderr).toContain("watchdog stopped");
  },
  60_000,
);
