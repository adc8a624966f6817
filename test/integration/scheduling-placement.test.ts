// Scheduling end to end on a real nats-server (DESIGN §3): three node agents
// with their own node SVIDs bid for 300 tasks published by a dispatcher, a
// lease-keeper awards them, the winners deploy through the fake runtime.
// Capacity binds (3 x 110 pod slots for 300 tasks), so open bids' reservations
// and late bids after they expire are exercised too.
import type { FakeRuntime } from "../../controllers/scheduler-bidder/runtime/index.js";
import { SchedulingMesh, podTemplate } from "../helpers/scheduling-mesh.js";
import { waitFor } from "../helpers/wait.js";

const NODES = ["node-a", "node-b", "node-c"];
const TASKS = 300;
const PODS_PER_NODE = 110;

let mesh: SchedulingMesh;

beforeAll(async () => {
  mesh = await SchedulingMesh.start();
  await mesh.addKeeper("lk-1");
  for (const id of NODES) await mesh.addAgent(id, { fake: { capacity: { pods: PODS_PER_NODE } } });
});

afterAll(async () => {
  await mesh?.stop();
});

test("300 tasks on 3 nodes: each placed exactly once, none lost, no node over capacity", async () => {
  const ref = await mesh.putManifest(podTemplate("web"));
  const tasks = [];
  for (let i = 0; i < TASKS; i++) tasks.push(mesh.task(ref));
  const t0 = performance.now();
  await Promise.all(tasks.map((t) => mesh.publish(t)));

  const ids = new Set(tasks.map((t) => t.task_id));
  const deployedIds = () =>
    new Set(mesh.events.filter((e) => e.status === "deployed" && ids.has(e.task_id)).map((e) => e.task_id));
  await waitFor(() => deployedIds().size === TASKS, {
    timeoutMs: 45_000,
    intervalMs: 100,
    what: "every task deployed",
  });
  console.log(`scheduling-placement: ${TASKS} tasks deployed in ${Math.round(performance.now() - t0)} ms`);

  // Exactly one deployed event per task, from a node that holds its lease.
  const deployed = mesh.events.filter((e) => e.status === "deployed" && ids.has(e.task_id));
  expect(deployed).toHaveLength(TASKS);
  for (const e of deployed) expect(e.sender).toBe(`spiffe://beemesh.local/node/${e.node_id}`);

  // The runtimes run exactly one pod per task, and no node more than it has room for.
  const podsByTask = new Map<string, string[]>();
  for (const { nodeId, runtime, agent } of mesh.agents.values()) {
    const listing = await runtime.list();
    expect(listing.pods.length).toBeLessThanOrEqual(PODS_PER_NODE);
    expect((runtime as FakeRuntime).podCount).toBe(listing.pods.length);
    for (const p of listing.pods)
      podsByTask.set(p.identity.taskId, [...(podsByTask.get(p.identity.taskId) ?? []), nodeId]);
    const used = agent.used();
    const alloc = agent.allocatableResources;
    expect(used.pods).toBeLessThanOrEqual(alloc.pods);
    expect(used.cpu_millis).toBeLessThanOrEqual(alloc.cpu_millis);
    // The node the event names is the node that runs the pod.
    for (const p of agent.pods()) expect(deployed.find((e) => e.task_id === p.task_id)?.node_id).toBe(nodeId);
  }
  expect(podsByTask.size).toBe(TASKS);
  for (const nodes of podsByTask.values()) expect(nodes).toHaveLength(1);
  // Every node took a share (scores spread replicas of one parent).
  for (const { runtime } of mesh.agents.values())
    expect((runtime as FakeRuntime).podCount).toBeGreaterThan(0);

  // Exactly one lease per task in KV, held by the node that runs it, fenced with the award's revision.
  for (const t of tasks.slice(0, 30)) {
    const entry = await mesh.infra.buckets.leases.get(`task.${t.task_id}`);
    expect(entry?.operation).toBe("PUT");
    const lease = entry!.json<{ winner_id: string; fencing_token: number }>();
    expect(podsByTask.get(t.task_id)).toEqual([lease.winner_id]);
    const leased = mesh.eventsOf(t.task_id, "leased");
    expect(leased).toHaveLength(1);
    expect(lease.fencing_token).toBe(leased[0]!.fencing_token);
  }
}, 60_000);
