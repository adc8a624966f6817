// The real dispatcher (API, fan-out, status) and the watchdogs share a
// Deployment without fighting (DESIGN §4): after the initial fan-out a
// template change or a scale with live replicas publishes no Task (the
// dispatcher only records the generation the watchdogs clone from), so a
// rolling image update stays within replicas + maxSurge pods and keeps
// replicas - maxUnavailable ready; after a scale to 0 the dispatcher starts the
// replicas again. Real nats-server with per-role users, lease-keeper, node
// agents on fake runtimes, one in-process watchdog per pod (watchdog-mesh.ts).
import { Registry } from "prom-client";
import { Dispatcher } from "../../controllers/dispatcher/dispatcher.js";
import { memoryLogger } from "../../controllers/common/log.js";
import type { ReconcileResult } from "../../controllers/dispatcher/fanout/index.js";
import { parseTask, subjects, type Task, type WorkloadStatus } from "../../protocol/index.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { NS, WatchdogMesh } from "./watchdog-mesh.js";
import { BUCKETS } from "../../protocol/subjects.js";
import { kvProviderDirectory } from "../../controllers/dispatcher/fanout/nats.js";
import { liveReplicasFrom } from "../../controllers/dispatcher/fanout/ports.js";

const NAME = "web";
const KEY = `Deployment/${NS}/${NAME}`;
const PATH = `/apis/beemesh.io/v1alpha1/namespaces/${NS}/beemeshdeployments`;

let mesh: WatchdogMesh;
let dispatcher: Dispatcher;
let admin: TestBus;
const reconciled: ReconcileResult[] = [];
const tasks: Task[] = [];
const dispatcherLog = memoryLogger("dispatcher");

beforeAll(async () => {
  // Default cloneGraceMs (60 s): a record lagging its object is waited for, not waited out.
  mesh = await WatchdogMesh.start({ nodes: 3, readyDelayMs: 300 });
  admin = await busAs(mesh.nats, "admin");
  const sub = admin.bus.subscribe(subjects().allTasks, { type: "Task", parse: parseTask });
  void (async () => {
    for await (const m of sub) if (m.payload.parent === NAME) tasks.push(m.payload);
  })();
  await admin.bus.nc.flush();
  dispatcher = await Dispatcher.start({
    natsServers: mesh.nats.urls,
    svid: await mesh.nats.issue("dispatcher"),
    source: "api",
    api: { port: 0, devInsecure: true },
    // The mesh's node agents and watchdogs use one task shard.
    shards: 1,
    logger: dispatcherLog,
    registry: new Registry(),
    statusThrottleMs: 100,
    statusSweepMs: 200,
    hooks: { afterReconcile: (key, result) => key === KEY && reconciled.push(result) },
  });
  await withTimeout(dispatcher.synced(), 10_000, "dispatcher sync");
}, 60_000);

afterAll(async () => {
  await dispatcher?.stop().catch(() => undefined);
  await admin?.bus.close().catch(() => undefined);
  await mesh?.stop();
});

async function api(method: string, path: string, body?: unknown): Promise<{ status?: WorkloadStatus }> {
  const res = await fetch(`${dispatcher.api!.url}${path}`, {
    method,
    headers: {
      "content-type": method === "PATCH" ? "application/merge-patch+json" : "application/json",
      accept: "application/json",
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as { status?: WorkloadStatus };
}

const patch = (spec: unknown) => api("PATCH", `${PATH}/${NAME}`, { spec });

const image = (tag: string) => ({
  template: {
    spec: {
      containers: [
        {
          name: "app",
          image: `localhost/app:${tag}`,
          resources: { requests: { cpu: "10m", memory: "16Mi" } },
        },
      ],
    },
  },
});

function reconcileOf(generation: number): Promise<ReconcileResult> {
  return waitFor(() => reconciled.find((r) => r.generation === generation), {
    timeoutMs: 10_000,
    what: `the dispatcher's reconcile of generation ${generation}`,
  }).catch(diagnose);
}

/** `n` pods, every watchdog running and ready, all on one template. */
function settled(n: number) {
  return () => mesh.settledReady(NAME, n);
}

function diagnose(err: unknown): never {
  console.log(
    [
      ...mesh.events.slice(-60),
      ...mesh.watchdogLogs().slice(-60),
      ...dispatcherLog.lines.slice(-30).map((l) => JSON.stringify(l)),
    ].join("\n"),
  );
  throw err;
}

let rolledTemplate: string | undefined;

const lostCloneRaces = () => mesh.watchdogLogs().filter((l) => l.includes("clone task not built")).length;

it("creates the replicas from the dispatcher's Tasks", async () => {
  await api("POST", PATH, {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: NAME, namespace: NS },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: NAME } },
      template: { metadata: { labels: { app: NAME } }, spec: image("v1").template.spec },
    },
  });
  expect(await reconcileOf(1)).toMatchObject({ reason: "new", published: 2, byWatchdogs: false });
  await waitFor(settled(2), { timeoutMs: 15_000, what: "2 ready replicas" }).catch(diagnose);
});

it("rolls a new image out through the watchdogs only: never above replicas + maxSurge, never below replicas ready", async () => {
  const old = mesh.live(NAME);
  const oldTemplate = mesh.templateOf(old[0]!);
  const racesBefore = lostCloneRaces();
  mesh.mark();
  const t0 = performance.now();
  await patch(image("v2"));
  expect(await reconcileOf(2)).toMatchObject({
    reason: "template-changed",
    published: 0,
    byWatchdogs: true,
    live: 2,
  });
  const rolled = await waitFor(
    () => {
      const live = settled(2)();
      return live?.every((p) => mesh.templateOf(p) !== oldTemplate) ? live : undefined;
    },
    { timeoutMs: 30_000, what: "both replicas on the new template" },
  ).catch(diagnose);
  console.log(
    `rollout of 2: ${Math.round(performance.now() - t0)} ms; max live ${mesh.maxLiveSinceMark()}; ` +
      `min ready ${mesh.minReadySinceMark()}; clones that found the record behind the object: ${lostCloneRaces() - racesBefore}`,
  );
  expect(rolled.filter((p) => old.includes(p))).toEqual([]);
  rolledTemplate = mesh.templateOf(rolled[0]!);
  // maxSurge 1 / maxUnavailable 0 (the defaults).
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(3);
  expect(mesh.minReadySinceMark()).toBeGreaterThanOrEqual(2);
  // Every pod of generation 2 came from a watchdog's clone, built from the dispatcher's record.
  const g2 = tasks.filter((t) => t.generation === 2);
  expect(g2.length).toBeGreaterThanOrEqual(2);
  expect(g2.every((t) => t.origin === "clone")).toBe(true);
  expect(new Set(g2.map((t) => t.manifest_ref.key)).size).toBe(1);
  // The status counts the new replicas as updated and the generation as observed.
  await waitFor(
    async () => {
      const s = (await api("GET", `${PATH}/${NAME}`)).status;
      return s?.observedGeneration === 2 && s.updatedReplicas === 2 && s.readyReplicas === 2;
    },
    { timeoutMs: 10_000, what: "status: generation 2 observed, 2 replicas updated and ready" },
  );
}, 45_000);

it("a scale-up with live replicas is the watchdogs' too", async () => {
  mesh.mark();
  await patch({ replicas: 3 });
  expect(await reconcileOf(3)).toMatchObject({ reason: "scaled-up", published: 0, byWatchdogs: true });
  await waitFor(settled(3), { timeoutMs: 20_000, what: "3 ready replicas" }).catch(diagnose);
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(4);
  expect(tasks.filter((t) => t.generation === 3 && t.origin !== "clone")).toEqual([]);
}, 30_000);

it("after a scale to 0 no watchdog is left, so the dispatcher starts the replicas of a scale-up", async () => {
  await patch({ replicas: 0 });
  expect(await reconcileOf(4)).toMatchObject({ reason: "scaled-down", published: 0 });
  await waitFor(() => mesh.live(NAME).length === 0, { timeoutMs: 15_000, what: "no pod left" }).catch(
    diagnose,
  );
  // The dispatcher counts live replicas from provider records, which node agents
  // drop only after the pod is gone: the scale-up below must find none left.
  const census = liveReplicasFrom(kvProviderDirectory(await admin.bus.kvm.open(BUCKETS.providers)));
  await waitFor(async () => (await census.count("Deployment", NS, NAME)) === 0, {
    timeoutMs: 10_000,
    what: "no provider record of a starting or running pod",
  });
  mesh.mark();
  await patch({ replicas: 3 });
  expect(await reconcileOf(5)).toMatchObject({ reason: "scaled-up", published: 3, byWatchdogs: false });
  const live = await waitFor(settled(3), { timeoutMs: 20_000, what: "3 ready replicas again" }).catch(
    diagnose,
  );
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(4);
  expect(tasks.filter((t) => t.generation === 5 && t.origin === "dispatcher")).toHaveLength(3);
  // Still the template the rollout brought: a scale keeps it.
  expect(live.map((p) => mesh.templateOf(p))).toEqual(live.map(() => rolledTemplate));
}, 45_000);
