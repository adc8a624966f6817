// A task no node bid on is republished by the lease-keeper (DESIGN §3 step 4)
// on a real nats-server with the mesh's per-role permissions: the lease-keeper
// role may publish on the tasks subjects, every receiver's bus accepts a
// lease-keeper's Task (attempt >= 1) by the default authorization table, and a
// node that joins later places it. A lease-keeper still cannot publish a first
// attempt, and a node cannot publish tasks at all.
import { memoryLogger } from "../../controllers/common/log.js";
import { parseTask, subjects, type Task } from "../../protocol/index.js";
import { SchedulingMesh, podTemplate } from "../helpers/scheduling-mesh.js";
import { busAs } from "../helpers/bus.js";
import { waitFor } from "../helpers/wait.js";

let mesh: SchedulingMesh;

beforeAll(async () => {
  mesh = await SchedulingMesh.start();
}, 30_000);

afterAll(async () => {
  await mesh?.stop();
});

test("a task nobody bid on is republished by a lease-keeper and placed by a node that came later", async () => {
  const keeperLog = memoryLogger("keeper-lk-1");
  await mesh.addKeeper("lk-1", {
    logger: keeperLog,
    logic: { windowMs: 100, windowJitterMs: 0, unschedulableBaseMs: 300, unschedulableCapMs: 300 },
  });
  // A node identity watches the tasks: what it receives passed its bus's default authorization.
  const watcher = await busAs(mesh.nats, "scheduler-bidder", ["node", "watcher"]);
  const seen: Array<{ task: Task; sender: string }> = [];
  const sub = watcher.bus.subscribe(subjects().allTasks, { type: "Task", parse: parseTask });
  void (async () => {
    for await (const m of sub) seen.push({ task: m.payload, sender: m.sender.toString() });
  })();
  await watcher.bus.nc.flush();

  const ref = await mesh.putManifest(podTemplate("late"));
  const task = await mesh.publish(mesh.task(ref, { parent: "late" }));
  await mesh.waitForEvent(task.task_id, "unschedulable");

  const republished = await waitFor(
    () => seen.find((s) => s.task.task_id === task.task_id && s.task.attempt >= 1),
    { timeoutMs: 10_000, what: "the republished task at a node" },
  );
  expect(republished.sender).toBe("spiffe://beemesh.local/controller/lease-keeper/lk-1");
  expect(keeperLog.lines.filter((l) => l["msg"] === "task not republished")).toEqual([]);
  expect(await watcher.rejected("unauthorized")).toBe(0);

  // A node joins; the next republish reaches it and it places the task.
  await mesh.addAgent("late-node");
  const deployed = await mesh.waitForEvent(task.task_id, "deployed", 15_000);
  expect(deployed.node_id).toBe("late-node");

  sub.unsubscribe();
  await watcher.bus.close();
}, 45_000);

test("a lease-keeper may not publish a first attempt; a node may not publish tasks", async () => {
  const keeperBus = await busAs(mesh.nats, "lease-keeper", ["controller", "lease-keeper", "lk-x"]);
  const nodeBus = await busAs(mesh.nats, "scheduler-bidder", ["node", "forger"]);
  const watcher = await busAs(mesh.nats, "scheduler-bidder", ["node", "watcher-2"]);
  const sub = watcher.bus.subscribe(subjects().allTasks, { type: "Task", parse: parseTask });
  const got: Task[] = [];
  void (async () => {
    for await (const m of sub) got.push(m.payload);
  })();
  await watcher.bus.nc.flush();
  const ref = await mesh.putManifest(podTemplate("forged"));

  // Attempt 0 from a lease-keeper: NATS lets it through, the receivers' authorization drops it.
  keeperBus.bus.publish(subjects().tasks(0), "Task", mesh.task(ref, { parent: "forged" }));
  await keeperBus.bus.nc.flush();
  await waitFor(async () => (await watcher.rejected("unauthorized")) >= 1, {
    what: "the first-attempt task dropped as unauthorized",
  });
  // A node's publish on the tasks subjects is a NATS permissions violation: nothing arrives.
  nodeBus.bus.publish(subjects().tasks(0), "Task", mesh.task(ref, { parent: "forged", attempt: 1 }));
  await nodeBus.bus.nc.flush().catch(() => undefined);
  // A marker from the dispatcher shows the watcher is caught up past both.
  const marker = await mesh.publish(mesh.task(ref, { parent: "forged-marker" }));
  await waitFor(() => got.some((t) => t.task_id === marker.task_id), { what: "the marker task" });
  expect(got.map((t) => t.parent)).toEqual(["forged-marker"]);

  sub.unsubscribe();
  for (const b of [keeperBus, nodeBus, watcher]) await b.bus.close().catch(() => undefined);
}, 30_000);
