// The whole workload path across the controllers' seams, on a real
// nats-server with per-role permissions: the real dispatcher (API, fan-out,
// status) with render options a sidecar cannot guess, a real lease-keeper,
// two real node agents on fake runtimes with per-pod Workload API sockets,
// and for every pod they start a real watchdog configured from nothing but
// its container's env and its SVID fetched from its own socket.
//
// Checked: the node agent gives the sidecar its pod facts and its own socket
// (and removes the socket with the pod); the dispatcher counts the
// watchdogs' heartbeats (readyReplicas); a clone names the manifest the
// dispatcher recorded and a node accepts it (the manifest carries
// beemesh.io/parent); a name with a dot travels through every subject.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { Dispatcher } from "../../controllers/dispatcher/dispatcher.js";
import { MANIFEST_LABELS, renderWorkload } from "../../controllers/dispatcher/fanout/render.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { ensureSchedulingInfra } from "../../controllers/common/nats-setup.js";
import { LeaseKeeper } from "../../controllers/lease-keeper/keeper.js";
import { NodeAgent } from "../../controllers/scheduler-bidder/agent.js";
import {
  FakeRuntime,
  type DeploySpec,
  type LogOptions,
  type NodeCapacity,
  type PodListing,
  type PodLogs,
  type PodStatus,
  type Runtime,
} from "../../controllers/scheduler-bidder/runtime/index.js";
import { WorkloadIdentities, localCaIssuer } from "../../controllers/scheduler-bidder/workload-identity.js";
import { configFromEnv } from "../../controllers/watchdog/main.js";
import { Watchdog } from "../../controllers/watchdog/watchdog.js";
import { workloadSvidSource } from "../../controllers/watchdog/workload-svid.js";
import { Bus, counterValue } from "../../protocol/bus/index.js";
import {
  BUCKETS,
  WATCHDOG_CONTAINER_NAME,
  parseBeemeshDeployment,
  parseEvent,
  parseTask,
  subjects,
  type BeemeshDeployment,
  type Event,
  type Task,
  type WorkloadStatus,
} from "../../protocol/index.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { waitFor, withTimeout } from "../helpers/wait.js";

const NAME = "web.v2";
const NS = "default";
const PATH = `/apis/beemesh.io/v1alpha1/namespaces/${NS}/beemeshdeployments`;
const RENDER = {
  watchdogImage: "localhost/beemesh/controllers:seams",
  sidecarResources: { cpu: "30m", memory: "40Mi" },
};
const FAST = { intervalMs: 300, ttlIntervals: 3, slotRenewMs: 500, slotTtlMs: 1500, slotRetryMs: 300 };

interface PodRun {
  pod: string;
  node: string;
  env: Record<string, string>;
  socketDir: string;
  watchdog?: Watchdog;
  bus?: Bus;
  stop: AbortController;
  gone: boolean;
}

let nats: NatsFixture;
let dispatcher: Dispatcher;
let keeper: LeaseKeeper;
let admin: TestBus;
let dir: string;
const pods = new Map<string, PodRun>();
const starting = new Set<Promise<void>>();
const agents: Array<{ agent: NodeAgent; bus: TestBus; fake: FakeRuntime; ids: WorkloadIdentities }> = [];
const tasks: Array<Task & { sender: string }> = [];
const events: Event[] = [];
const logs = memoryLogger("seams");

/** Starts a watchdog beside every pod a node runs, configured only from what the pod was given. */
class PodRuntime implements Runtime {
  readonly kind: Runtime["kind"];
  constructor(
    readonly inner: FakeRuntime,
    private readonly nodeId: string,
  ) {
    this.kind = inner.kind;
  }
  async deploy(spec: DeploySpec): Promise<void> {
    await this.inner.deploy(spec);
    const sidecar = spec.manifest.spec.containers.find((c) => c.name === WATCHDOG_CONTAINER_NAME);
    const env = Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.value ?? ""]));
    const volume = (spec.manifest.spec.volumes ?? []).find((v) => v.name === "beemesh-workload-api") as
      { hostPath?: { path: string } } | undefined;
    const run: PodRun = {
      pod: spec.podName,
      node: this.nodeId,
      env,
      socketDir: volume?.hostPath?.path ?? "",
      stop: new AbortController(),
      gone: false,
    };
    pods.set(spec.podName, run);
    const p = startWatchdog(run).catch((err: unknown) =>
      logs.error("watchdog did not start", {
        pod: run.pod,
        err: err instanceof Error ? err.message : String(err),
      }),
    );
    starting.add(p);
    void p.finally(() => starting.delete(p));
  }
  status(podName: string): Promise<PodStatus> {
    return this.inner.status(podName);
  }
  logs(podName: string, options?: LogOptions): Promise<PodLogs> {
    return this.inner.logs(podName, options);
  }
  async remove(podName: string): Promise<boolean> {
    const removed = await this.inner.remove(podName);
    // Not awaited: a retiring watchdog is still waiting for this removal's answer.
    void stopWatchdog(podName);
    return removed;
  }
  list(): Promise<PodListing> {
    return this.inner.list();
  }
  capacity(): Promise<NodeCapacity> {
    return this.inner.capacity();
  }
}

async function startWatchdog(run: PodRun): Promise<void> {
  // Exactly what watchdog/main.ts does with its env, minus the process.
  const cfg = configFromEnv(run.env);
  const socket = join(run.socketDir, "agent.sock");
  const svid = await workloadSvidSource(socket, run.stop.signal, { firstTimeoutMs: 10_000 });
  run.bus = nats.track(
    await Bus.connect({
      servers: nats.urls,
      svid,
      registry: new Registry(),
      logger: memoryLogger(`bus-${run.pod}`),
      prefix: cfg.prefix,
    }),
  );
  run.watchdog = new Watchdog({
    bus: run.bus,
    target: cfg.target,
    health: { periodMs: 100, check: () => Promise.resolve({ live: true, ready: true }) },
    logic: { ...cfg.logic, ...FAST },
    taskShards: cfg.taskShards,
    logger: memoryLogger(`wd-${run.pod}`),
  });
  if (run.gone) return;
  await run.watchdog.start(run.stop.signal);
}

async function stopWatchdog(pod: string): Promise<void> {
  const run = pods.get(pod);
  if (run === undefined || run.gone) return;
  run.gone = true;
  run.stop.abort();
  await run.watchdog?.stop();
  await run.bus?.close().catch(() => undefined);
}

const livePods = () => [...pods.values()].filter((p) => !p.gone);

async function status(): Promise<WorkloadStatus> {
  const res = await fetch(`${dispatcher.api!.url}${PATH}/${NAME}`);
  return ((await res.json()) as { status?: WorkloadStatus }).status ?? {};
}

beforeAll(async () => {
  nats = await startNats();
  dir = await mkdtemp(join(tmpdir(), "bm-seams-"));
  dispatcher = await Dispatcher.start({
    natsServers: nats.urls,
    svid: await nats.issue("dispatcher"),
    source: "api",
    api: { port: 0, devInsecure: true },
    logger: memoryLogger("dispatcher"),
    registry: new Registry(),
    shards: 2,
    render: RENDER,
    statusThrottleMs: 100,
    statusSweepMs: 200,
  });
  await withTimeout(dispatcher.synced(), 10_000, "dispatcher sync");

  admin = await busAs(nats, "admin");
  const taskSub = admin.bus.subscribe(subjects().allTasks, { type: "Task", parse: parseTask });
  void (async () => {
    for await (const m of taskSub) tasks.push({ ...m.payload, sender: m.sender.toString() });
  })();
  const eventSub = admin.bus.subscribe(subjects().allEvents, { type: "Event", parse: parseEvent });
  void (async () => {
    for await (const m of eventSub) events.push(m.payload);
  })();
  await admin.bus.nc.flush();

  const keeperBus = await busAs(nats, "lease-keeper", ["controller", "lease-keeper", "lk-1"]);
  keeper = new LeaseKeeper({
    bus: keeperBus.bus,
    buckets: {
      leases: await keeperBus.bus.kvm.open(BUCKETS.leases),
      nodes: await keeperBus.bus.kvm.open(BUCKETS.nodes),
    },
    logger: memoryLogger("keeper"),
  });
  await keeper.start();

  for (const nodeId of ["node-1", "node-2"]) {
    const bus = await busAs(nats, "scheduler-bidder", ["node", nodeId]);
    const infra = await ensureSchedulingInfra(bus.bus.nc, { create: false, waitTimeoutMs: 5000 });
    const fake = new FakeRuntime();
    const ids = new WorkloadIdentities({
      nodeId,
      trustDomain: nats.trustDomain,
      socketDir: join(dir, nodeId),
      issue: localCaIssuer(nats.ca, { ttlMs: 10 * 60_000 }),
    });
    const agent = new NodeAgent({
      nodeId,
      bus: bus.bus,
      runtime: new PodRuntime(fake, nodeId),
      buckets: infra.buckets,
      shards: 2,
      workloadIdentity: ids,
      logger: memoryLogger(`agent-${nodeId}`),
    });
    await agent.start();
    agents.push({ agent, bus, fake, ids });
  }
}, 60_000);

afterAll(async () => {
  await Promise.allSettled([...starting]);
  await Promise.allSettled([...pods.keys()].map((p) => stopWatchdog(p)));
  for (const a of agents) {
    await a.agent.stop().catch(() => undefined);
    await a.ids.close().catch(() => undefined);
    await a.bus.bus.close().catch(() => undefined);
  }
  await keeper?.stop().catch(() => undefined);
  await admin?.bus.close().catch(() => undefined);
  await dispatcher?.stop().catch(() => undefined);
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("pods get their facts and sockets, the dispatcher counts their heartbeats, a clone is accepted", async () => {
  const res = await fetch(`${dispatcher.api!.url}${PATH}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name: NAME, namespace: NS },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: {
            containers: [
              {
                name: "app",
                image: "localhost/app:1",
                resources: { requests: { cpu: "10m", memory: "16Mi" } },
              },
            ],
          },
        },
        watchdogSidecar: { intervalSeconds: 1, ttlIntervals: 2 },
      },
    }),
  });
  expect(res.status).toBe(201);

  // 1. The status counts the watchdogs' heartbeats: readyReplicas comes only from them.
  const ready = await waitFor(
    async () => {
      const s = await status();
      return s.readyReplicas === 2 ? s : undefined;
    },
    { timeoutMs: 20_000, what: "readyReplicas 2" },
  ).catch(async (err: unknown) => {
    // What the mesh did instead, for the failure message.
    const did = events.map((e) => `${e.status}${e.details ? ` (${e.details})` : ""}`);
    console.log(
      JSON.stringify({ status: await status(), pods: [...pods.keys()], events: did, logs: logs.lines }),
    );
    throw err;
  });
  expect(ready.replicas).toBeGreaterThanOrEqual(2);

  // 2. Each sidecar got its pod's facts from the node agent, and its own socket: its SVID is its pod's.
  const first = livePods();
  expect(first).toHaveLength(2);
  for (const run of first) {
    const placed = tasks.find((t) => run.env["BEEMESH_TASK_ID"] === t.task_id);
    expect(placed).toBeDefined();
    expect(run.env).toMatchObject({
      BEEMESH_POD_NAME: run.pod,
      BEEMESH_NODE_ID: run.node,
      BEEMESH_SHARDS: "2",
      BEEMESH_PARENT: NAME,
    });
    expect(run.socketDir.startsWith(join(dir, run.node))).toBe(true);
    expect(run.bus?.spiffeId).toBe(`spiffe://beemesh.local/ns/${NS}/deployment/${NAME}/${run.pod}`);
  }

  // 3. A pod vanishes; the survivor clones from the dispatcher's record and a node runs the clone.
  const [victim, survivor] = first;
  const node = agents.find((a) => a.agent.nodeId === victim!.node)!;
  await node.fake.remove(victim!.pod);
  await stopWatchdog(victim!.pod);
  const clone = await waitFor(() => tasks.find((t) => t.origin === "clone"), {
    timeoutMs: 15_000,
    what: "a clone task",
  });
  expect(clone.sender).toBe(`spiffe://beemesh.local/ns/${NS}/deployment/${NAME}/${survivor!.pod}`);
  const deployed = await waitFor(
    () => events.find((e) => e.task_id === clone.task_id && e.status === "deployed"),
    { timeoutMs: 15_000, what: "the clone deployed by a node agent" },
  );
  expect(deployed.parent).toBe(NAME);

  // The clone names the manifest the dispatcher recorded, not one a sidecar would render.
  const objects = await admin.bus.kvm.open(BUCKETS.objects);
  const record = (await objects.get("dispatch.deployment.default.web_v2"))!.json<{
    manifests: { key: string; sha256: string }[];
    generation: number;
  }>();
  expect(clone.manifest_ref).toEqual(record.manifests[0]);
  const stored = (await objects.get("beemeshdeployments.default.web_v2"))!.json<BeemeshDeployment>();
  const parsed = parseBeemeshDeployment(stored);
  if (!parsed.ok) throw parsed.error;
  const rendered = renderWorkload(parsed.value, { natsUrl: nats.url });
  expect(rendered.manifests[0]!.key).not.toBe(clone.manifest_ref.key);
  const manifest = (await (await admin.bus.kvm.open(BUCKETS.manifests)).get(clone.manifest_ref.key))!.json<{
    metadata: { labels: Record<string, string> };
  }>();
  expect(manifest.metadata.labels[MANIFEST_LABELS.parent]).toBe(NAME);

  await waitFor(
    async () => {
      const s = await status();
      return s.readyReplicas === 2 && livePods().length === 2 ? s : undefined;
    },
    { timeoutMs: 20_000, what: "readyReplicas back at 2 with the clone" },
  );

  // 4. Scale to 1: the surplus watchdog retires, its node removes the pod and its socket.
  const patched = await fetch(`${dispatcher.api!.url}${PATH}/${NAME}`, {
    method: "PATCH",
    headers: { "content-type": "application/merge-patch+json" },
    body: JSON.stringify({ spec: { replicas: 1 } }),
  });
  expect(patched.status).toBe(200);
  const retired = await waitFor(() => [...pods.values()].find((p) => p.gone && p !== victim), {
    timeoutMs: 20_000,
    what: "a surplus pod removed",
  });
  await waitFor(
    async () => {
      try {
        await stat(retired.socketDir);
        return false;
      } catch {
        return true;
      }
    },
    { timeoutMs: 10_000, what: `the socket directory ${retired.socketDir} removed` },
  );
  // The survivors' socket directories are still there.
  for (const run of livePods()) await expect(stat(run.socketDir)).resolves.toBeDefined();

  // No bus anywhere refused a message of this dotted-name workload as unauthorized.
  expect(
    await counterValue(admin.registry, "beemesh_messages_rejected_total", { reason: "unauthorized" }),
  ).toBe(0);
  expect(events.some((e) => e.parent === NAME && e.status === "leased")).toBe(true);
}, 90_000);
