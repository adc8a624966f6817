// A Deployment whose every replica is gone at once (every node that ran one
// lost, no spec change, no watchdog left) is started again by the dispatcher
// (logic/revive.ts), once for two dispatchers, within replicas + maxSurge; one
// surviving replica heals alone and the dispatcher publishes nothing. Real
// nats-server with per-role users, lease-keeper, node agents on fake runtimes,
// one in-process watchdog per pod (watchdog-mesh.ts), two real Dispatchers.
import { Registry } from "prom-client";
import { Dispatcher } from "../../controllers/dispatcher/dispatcher.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { REVIVAL_HINT, type ReviveResult } from "../../controllers/dispatcher/fanout/index.js";
import type { ReviveVerdict } from "../../controllers/dispatcher/logic/index.js";
import { parseTask, subjects, type Task } from "../../protocol/index.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { NS, WatchdogMesh } from "./watchdog-mesh.js";

const NAME = "web";
const KEY = `Deployment/${NS}/${NAME}`;
const PATH = `/apis/beemesh.io/v1alpha1/namespaces/${NS}/beemeshdeployments`;
const REPLICAS = 2;
/** maxSurge 1 by default. */
const MAX_LIVE = REPLICAS + 1;
const GRACE_MS = 2000;
/** The dispatcher judges heartbeats by the object's watchdog settings: 1 s x 3 by default. */
const HEARTBEAT_TTL_MS = 3000;

let mesh: WatchdogMesh;
let admin: TestBus;
const dispatchers: Dispatcher[] = [];
const tasks: Task[] = [];
const revived: Array<{ by: number; result: ReviveResult }> = [];
const verdicts: Array<{ by: number; atMs: number; verdict: ReviveVerdict }> = [];
const logs = [memoryLogger("dispatcher-a"), memoryLogger("dispatcher-b")];

async function startDispatcher(index: number): Promise<Dispatcher> {
  const d = await Dispatcher.start({
    natsServers: mesh.nats.urls,
    svid: await mesh.nats.issue("dispatcher"),
    source: "api",
    api: { port: 0, devInsecure: true },
    // The mesh's node agents and watchdogs use one task shard.
    shards: 1,
    logger: logs[index]!,
    registry: new Registry(),
    statusThrottleMs: 100,
    statusSweepMs: 200,
    revive: { graceMs: GRACE_MS, probeEveryMs: 300, probeTimeoutMs: 1000, checkEveryMs: 100 },
    hooks: {
      afterRevive: (key, result) => key === KEY && revived.push({ by: index, result }),
      onReviveDecision: (key, d) =>
        key === KEY && verdicts.push({ by: index, atMs: performance.now(), verdict: d.verdict }),
    },
  });
  dispatchers.push(d);
  await withTimeout(d.synced(), 10_000, `dispatcher ${index} sync`);
  return d;
}

beforeAll(async () => {
  // Five nodes: one lost in the first case, two in the second, two left for the spread replicas.
  mesh = await WatchdogMesh.start({ nodes: 5, readyDelayMs: 300 });
  admin = await busAs(mesh.nats, "admin");
  const sub = admin.bus.subscribe(subjects().allTasks, { type: "Task", parse: parseTask });
  void (async () => {
    for await (const m of sub) if (m.payload.parent === NAME) tasks.push(m.payload);
  })();
  await admin.bus.nc.flush();
  await startDispatcher(0);
}, 60_000);

afterAll(async () => {
  for (const d of dispatchers) await d.stop().catch(() => undefined);
  await admin?.bus.close().catch(() => undefined);
  await mesh?.stop();
});

/** `n` pods, every watchdog running and ready, all on one template. */
function settled(n: number) {
  return () => mesh.settledReady(NAME, n);
}

function diagnose(err: unknown): never {
  console.log(
    [
      ...mesh.events.slice(-40),
      ...mesh.watchdogLogs().slice(-40),
      ...logs.flatMap((l) => l.lines.slice(-30).map((x) => JSON.stringify(x))),
    ].join("\n"),
  );
  throw err;
}

const revivalTasks = () => tasks.filter((t) => t.hints?.[REVIVAL_HINT] !== undefined);

/** Resolves once every dispatcher has decided about the Deployment after `atMs`. */
function decidedAfter(atMs: number, what: string) {
  return waitFor(() => dispatchers.every((_, i) => verdicts.some((v) => v.by === i && v.atMs > atMs)), {
    timeoutMs: 20_000,
    what,
  });
}

it("creates the replicas, spread over two nodes", async () => {
  const res = await fetch(`${dispatchers[0]!.api!.url}${PATH}`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name: NAME, namespace: NS },
      spec: {
        replicas: REPLICAS,
        selector: { matchLabels: { app: NAME } },
        template: {
          metadata: { labels: { app: NAME } },
          spec: {
            containers: [
              {
                name: "app",
                image: "localhost/app:v1",
                resources: { requests: { cpu: "10m", memory: "16Mi" } },
              },
            ],
            // At most one replica per node, so losing a pod's node loses only that pod.
            affinity: {
              podAntiAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: [
                  { labelSelector: { matchLabels: { app: NAME } }, topologyKey: "kubernetes.io/hostname" },
                ],
              },
            },
          },
        },
      },
    }),
  });
  expect(res.status).toBe(201);
  const live = await waitFor(settled(REPLICAS), { timeoutMs: 15_000, what: "2 ready replicas" }).catch(
    diagnose,
  );
  expect(new Set(live.map((p) => mesh.nodeOf(p))).size).toBe(REPLICAS);
  // A second dispatcher starts now: the record is in its starting snapshot (armed), the replicas beat.
  await startDispatcher(1);
}, 30_000);

it("one replica survives the loss of the other's node: its watchdog heals, the dispatchers publish nothing", async () => {
  const [victim] = mesh.live(NAME);
  const lostAt = performance.now();
  await mesh.loseNode(mesh.nodeOf(victim!)!);
  await waitFor(
    () => {
      const live = settled(REPLICAS)();
      return live && !live.includes(victim!) ? live : undefined;
    },
    { timeoutMs: 15_000, what: "the surviving watchdog's clone ready" },
  ).catch(diagnose);
  // Long enough for a dead Deployment to have been revived: heartbeat TTL, a probe, the grace.
  await decidedAfter(lostAt + HEARTBEAT_TTL_MS + GRACE_MS + 1000, "decisions past the grace");
  expect(revivalTasks()).toEqual([]);
  expect(revived).toEqual([]);
  expect(verdicts.filter((v) => v.atMs > lostAt && (v.verdict === "dead" || v.verdict === "due"))).toEqual(
    [],
  );
}, 30_000);

it("every node with a replica lost: back to the replicas within the grace and a few seconds, one round for two dispatchers, never above replicas + maxSurge", async () => {
  const before = mesh.live(NAME);
  const nodes = [...new Set(before.map((p) => mesh.nodeOf(p)!))];
  expect(nodes).toHaveLength(REPLICAS);
  mesh.mark();
  const lostAt = performance.now();
  for (const n of nodes) await mesh.loseNode(n);
  expect(mesh.live(NAME)).toEqual([]);
  const live = await waitFor(
    () => {
      const now = settled(REPLICAS)();
      return now && now.every((p) => !before.includes(p)) ? now : undefined;
    },
    { timeoutMs: HEARTBEAT_TTL_MS + GRACE_MS + 10_000, what: "2 ready replicas again" },
  ).catch(diagnose);
  const backMs = Math.round(performance.now() - lostAt);
  const round = revivalTasks();
  console.log(
    `revival: back to ${REPLICAS} ready in ${backMs} ms (heartbeat TTL ${HEARTBEAT_TTL_MS} + grace ${GRACE_MS}); ` +
      `max live ${mesh.maxLiveSinceMark()}; revival tasks ${round.length}; outcomes ${revived.map((r) => `${r.by}:${r.result.outcome}`).join(",")}`,
  );
  // The decision itself is due right after the TTL and the grace; the pods' start
  // and readiness after it are bounded by the wait above, not by a tight figure.
  const dueAt = verdicts.find((v) => v.atMs > lostAt && v.verdict === "due")?.atMs;
  expect(dueAt).toBeDefined();
  expect(dueAt! - lostAt).toBeGreaterThanOrEqual(GRACE_MS);
  expect(dueAt! - lostAt).toBeLessThan(HEARTBEAT_TTL_MS + GRACE_MS + 5000);
  // One round: one Task per replica on the wire from the dispatchers, whichever published it
  // (a lease-keeper may republish one for fresh bids: same id, a later attempt).
  expect(round.filter((t) => t.attempt === 0)).toHaveLength(REPLICAS);
  expect(new Set(round.map((t) => t.task_id)).size).toBe(REPLICAS);
  expect(
    round.every((t) => t.hints?.[REVIVAL_HINT] === "1" && t.origin === "dispatcher" && t.generation === 1),
  ).toBe(true);
  expect(revived.filter((r) => r.result.outcome === "published")).toHaveLength(1);
  // The new pods run what the watchdogs clone: the record's manifest of the generation.
  const first = tasks.find((t) => t.hints?.[REVIVAL_HINT] === undefined && t.origin === "dispatcher")!;
  expect(round.every((t) => t.manifest_ref.key === first.manifest_ref.key)).toBe(true);
  // settledReady already means one template; it must be the lost replicas' one.
  expect(mesh.templateOf(live[0]!)).toBe(mesh.templateOf(before[0]!));
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(MAX_LIVE);
  // Settled: the revived replicas beat, so no second round follows.
  const settledAt = performance.now();
  await decidedAfter(settledAt + GRACE_MS + 1000, "decisions past another grace");
  expect(new Set(revivalTasks().map((t) => t.task_id)).size).toBe(REPLICAS);
  expect(revivalTasks().filter((t) => t.attempt === 0)).toHaveLength(REPLICAS);
  expect(mesh.live(NAME)).toHaveLength(REPLICAS);
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(MAX_LIVE);
}, 40_000);
