// Batches end to end on a real nats-server (DESIGN §3.6): one Task stands for
// hundreds of replicas, each node offers as many as fit, the lease-keeper
// splits the batch into shares across the best bids (one lease per share),
// and each winner starts its share's pods. A winner that dies while starting
// stops renewing; its share is re-awarded whole to a node with room for it.
import type { FakeRuntime } from "../../controllers/scheduler-bidder/runtime/index.js";
import { parseTaskLeaseKey, decodeLeaseEntry } from "../../controllers/common/lease-record.js";
import { FAVOURITE_WINDOW, SchedulingMesh, podTemplate, type MeshAgent } from "../helpers/scheduling-mesh.js";
import { waitFor } from "../helpers/wait.js";

let mesh: SchedulingMesh;

beforeAll(async () => {
  mesh = await SchedulingMesh.start();
  await mesh.addKeeper("lk-1", FAVOURITE_WINDOW);
});

afterAll(async () => {
  await mesh?.stop();
});

interface Share {
  first: number;
  granted: number;
  winner: string;
  fencing: number;
}

/** The shares of a task as the lease bucket holds them, in replica order. */
async function sharesOf(taskId: string): Promise<Share[]> {
  const out: Share[] = [];
  for await (const key of await mesh.infra.buckets.leases.keys(`task.${taskId}.>`)) await add(key);
  await add(`task.${taskId}`);
  async function add(key: string): Promise<void> {
    const parsed = parseTaskLeaseKey(key);
    const rec = decodeLeaseEntry(await mesh.infra.buckets.leases.get(key));
    if (parsed === undefined || rec === undefined) return;
    out.push({
      first: parsed.first,
      granted: rec.lease.granted,
      winner: rec.lease.winner_id,
      fencing: rec.fencingToken,
    });
  }
  return out.sort((a, b) => a.first - b.first);
}

/** Pod names by node, for the pods of one task. */
async function podsOf(taskId: string, agents: MeshAgent[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const a of agents) {
    const names = (await a.runtime.list()).pods
      .filter((p) => p.identity.taskId === taskId)
      .map((p) => p.podName);
    out.set(a.nodeId, names.sort());
  }
  return out;
}

const replicaOf = (pod: string): number => Number(pod.slice(pod.lastIndexOf("-") + 1));

test("a 300-replica batch on 3 nodes: exactly 300 pods, every replica once, no node over capacity", async () => {
  const pods = 110;
  const agents: MeshAgent[] = [];
  for (const id of ["bt-1", "bt-2", "bt-3"])
    agents.push(
      await mesh.addAgent(id, { fake: { capacity: { pods, cpuMillis: 1_000_000, memoryBytes: 2 ** 40 } } }),
    );
  const ref = await mesh.putManifest(podTemplate("batch"));
  const task = await mesh.publish(mesh.task(ref, { parent: "batch", count: 300 }));

  const running = () => agents.reduce((n, a) => n + (a.runtime as FakeRuntime).podCount, 0);
  await waitFor(() => running() >= 300 && mesh.eventsOf(task.task_id, "deployed").length >= 3, {
    timeoutMs: 20_000,
    intervalMs: 50,
    what: "300 replicas running",
  });

  // Shares: disjoint, in order, covering replicas 0..299; each node within its room.
  const shares = await sharesOf(task.task_id);
  let next = 0;
  for (const s of shares) {
    expect(s.first).toBe(next);
    next = s.first + s.granted;
  }
  expect(next).toBe(300);
  const byNode = await podsOf(task.task_id, agents);
  const all = [...byNode.values()].flat();
  expect(all).toHaveLength(300);
  expect(new Set(all).size).toBe(300);
  expect(new Set(all.map(replicaOf))).toEqual(new Set(Array.from({ length: 300 }, (_, i) => i)));
  for (const a of agents) {
    const mine = byNode.get(a.nodeId) ?? [];
    expect(mine.length).toBeLessThanOrEqual(pods);
    // A node runs exactly the replicas of the shares it won.
    const granted = shares
      .filter((s) => s.winner === a.nodeId)
      .flatMap((s) => Array.from({ length: s.granted }, (_, i) => s.first + i));
    expect(mine.map(replicaOf).sort((x, y) => x - y)).toEqual(granted.sort((x, y) => x - y));
    const used = a.agent.used();
    expect(used.pods).toBeLessThanOrEqual(a.agent.allocatableResources.pods);
  }
  // One leased and one deployed event per share, the latter from its winner under its fencing token.
  expect(mesh.eventsOf(task.task_id, "leased")).toHaveLength(shares.length);
  const deployed = mesh.eventsOf(task.task_id, "deployed");
  expect(deployed).toHaveLength(shares.length);
  for (const s of shares) {
    const e = deployed.find((d) => d.fencing_token === s.fencing);
    expect(e?.node_id).toBe(s.winner);
    expect(e?.sender).toBe(`spiffe://beemesh.local/node/${s.winner}`);
  }
  expect(mesh.eventsOf(task.task_id, "failed")).toEqual([]);
  for (const a of agents) await a.agent.stop();
}, 40_000);

test("a winner killed while starting its share: the share is re-awarded whole, every replica runs once", async () => {
  const cap = { pods: 50, cpuMillis: 1_000_000, memoryBytes: 2 ** 40 };
  const doomed = await mesh.addAgent("bk-1", { fake: { capacity: cap, deployDelayMs: 2000 } });
  const others = [
    await mesh.addAgent("bk-2", { fake: { capacity: cap } }),
    await mesh.addAgent("bk-3", { fake: { capacity: cap } }),
  ];
  const ref = await mesh.putManifest(podTemplate("batchkill"));
  // The doomed node is the hinted favourite, so it takes the first share.
  const task = await mesh.publish(
    mesh.task(ref, { parent: "batchkill", count: 100, hints: { node: "bk-1" } }),
  );
  const first = await mesh.waitForEvent(task.task_id, "leased");
  expect(first.node_id).toBe("bk-1");
  expect(first.details).toMatch(/^replicas 0\.\.49 \(50 of 100\)/);
  await waitFor(() => (doomed.runtime as FakeRuntime).podCount >= 1, { what: "the doomed share to start" });
  doomed.agent.kill();
  await doomed.bus.bus.close();

  const expired = await mesh.waitForEvent(task.task_id, "expired", 15_000);
  expect(expired.node_id).toBe("bk-1");
  expect(expired.fencing_token).toBe(first.fencing_token);
  await waitFor(
    async () => {
      const byNode = await podsOf(task.task_id, others);
      return [...byNode.values()].flat().length >= 100 ? byNode : undefined;
    },
    { timeoutMs: 20_000, what: "all 100 replicas on the live nodes" },
  );
  const byNode = await podsOf(task.task_id, others);
  const live = [...byNode.values()].flat();
  expect(live).toHaveLength(100);
  expect(new Set(live.map(replicaOf)).size).toBe(100);

  // Share 0..49 moved whole to one live node, with a newer fencing token; the rest stayed put.
  const shares = await sharesOf(task.task_id);
  expect(shares.map((s) => [s.first, s.granted])).toEqual([
    [0, 50],
    [50, 50],
  ]);
  expect(shares[0]!.winner).not.toBe("bk-1");
  expect(shares[0]!.fencing).toBeGreaterThan(first.fencing_token!);
  const reaward = mesh.eventsOf(task.task_id, "leased").filter((e) => e.fencing_token === shares[0]!.fencing);
  expect(reaward).toEqual([
    expect.objectContaining({
      node_id: shares[0]!.winner,
      details: expect.stringContaining("re-award after bk-1") as unknown,
    }),
  ]);
  await waitFor(
    () => mesh.eventsOf(task.task_id, "deployed").find((e) => e.fencing_token === shares[0]!.fencing),
    {
      what: "the re-awarded share deployed",
    },
  );
  // The dead node never reported anything.
  expect(
    mesh.eventsOf(task.task_id).filter((e) => e.node_id === "bk-1" && e.sender.includes("/node/")),
  ).toEqual([]);
}, 45_000);
