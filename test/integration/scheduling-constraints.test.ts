// Placement constraints on the wire (DESIGN §3 steps 2 and 5): node
// selectors, taints and tolerations, pod anti-affinity, `unschedulable` with
// every node's reasons, and preemption that evicts only lower priorities.
import { FAVOURITE_WINDOW, SchedulingMesh, podTemplate } from "../helpers/scheduling-mesh.js";
import { waitFor } from "../helpers/wait.js";
import type { ManifestRef, Task } from "../../protocol/index.js";

describe("selectors, taints, anti-affinity", () => {
  let mesh: SchedulingMesh;
  let ref: ManifestRef;

  beforeAll(async () => {
    mesh = await SchedulingMesh.start();
    await mesh.addKeeper("lk-1", FAVOURITE_WINDOW);
    await mesh.addAgent("zone-a-ssd", { labels: { zone: "a", disk: "ssd" } });
    await mesh.addAgent("zone-b", { labels: { zone: "b" } });
    await mesh.addAgent("zone-b-gpu", {
      labels: { zone: "b" },
      taints: [{ key: "dedicated", value: "gpu", effect: "NoSchedule" }],
    });
    ref = await mesh.putManifest(podTemplate("web"));
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  async function placeAll(tasks: Task[]): Promise<string[]> {
    await Promise.all(tasks.map((t) => mesh.publish(t)));
    const nodes: string[] = [];
    for (const t of tasks) nodes.push((await mesh.waitForEvent(t.task_id, "deployed")).node_id!);
    return nodes;
  }

  test("a node selector places only on matching nodes", async () => {
    const nodes = await placeAll(
      Array.from({ length: 5 }, () => mesh.task(ref, { node_selector: { disk: "ssd" } })),
    );
    expect(nodes).toEqual(Array(5).fill("zone-a-ssd"));
  });

  test("an untolerated NoSchedule taint keeps tasks away; a toleration lets them in", async () => {
    const plain = await placeAll(
      Array.from({ length: 6 }, () => mesh.task(ref, { node_selector: { zone: "b" } })),
    );
    expect(plain).toEqual(Array(6).fill("zone-b"));
    const tolerant = await placeAll(
      Array.from({ length: 3 }, () =>
        mesh.task(ref, {
          node_selector: { zone: "b" },
          tolerations: [{ key: "dedicated", operator: "Equal", value: "gpu", effect: "NoSchedule" }],
          hints: { node: "zone-b-gpu" },
        }),
      ),
    );
    expect(tolerant).toEqual(Array(3).fill("zone-b-gpu"));
  });

  test("no node fits: unschedulable, with every node's reasons", async () => {
    const task = await mesh.publish(mesh.task(ref, { node_selector: { zone: "c" } }));
    const e = await mesh.waitForEvent(task.task_id, "unschedulable");
    for (const node of ["zone-a-ssd", "zone-b", "zone-b-gpu"]) {
      expect(e.reasons).toEqual(
        expect.arrayContaining([expect.stringMatching(new RegExp(`^${node}: NodeSelectorMismatch`))]),
      );
    }
    expect(e.reasons).toEqual(
      expect.arrayContaining([expect.stringMatching(/^zone-b-gpu: .*UntoleratedTaint/)]),
    );
    expect(mesh.eventsOf(task.task_id, "leased")).toEqual([]);
  });

  test("anti-affinity spreads replicas one per node, and the fourth is unschedulable", async () => {
    const dbRef = await mesh.putManifest(podTemplate("db"));
    const db = (i: number) =>
      mesh.task(dbRef, {
        kind: "StatefulSet",
        parent: "db",
        ordinal: i,
        anti_affinity: { matchLabels: { "beemesh.io/parent": "db" } },
        tolerations: [{ key: "dedicated", operator: "Exists" }],
      });
    const nodes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const t = await mesh.publish(db(i));
      const e = await mesh.waitForEvent(t.task_id, "deployed");
      expect(e.pod).toBe(`db-${i}`);
      nodes.push(e.node_id!);
    }
    expect(new Set(nodes).size).toBe(3);
    const fourth = await mesh.publish(db(3));
    const e = await mesh.waitForEvent(fourth.task_id, "unschedulable");
    expect(e.reasons?.filter((r) => /PodAntiAffinity/.test(r))).toHaveLength(3);
    expect(mesh.eventsOf(fourth.task_id, "leased")).toEqual([]);
  });
});

describe("preemption", () => {
  let mesh: SchedulingMesh;
  let ref: ManifestRef;
  let urgentRef: ManifestRef;
  // One pod slot's worth: every node has room for two of these.
  const half = { cpu_millis: 500, memory_bytes: 1 << 20, ports: [] };

  beforeAll(async () => {
    mesh = await SchedulingMesh.start();
    await mesh.addKeeper("lk-1", FAVOURITE_WINDOW);
    for (const id of ["p-1", "p-2"]) {
      await mesh.addAgent(id, {
        fake: { capacity: { cpuMillis: 1000 } },
        labels: { "kubernetes.io/hostname": id },
      });
    }
    ref = await mesh.putManifest(podTemplate("job"));
    urgentRef = await mesh.putManifest(podTemplate("urgent"));
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  test("a higher priority task evicts only lower-priority pods, the lowest first", async () => {
    // p-1 runs two priority-0 pods, p-2 a priority-5 and a priority-10 pod.
    const fill: Array<[string, number]> = [
      ["p-1", 0],
      ["p-1", 0],
      ["p-2", 5],
      ["p-2", 10],
    ];
    const filled: Task[] = [];
    for (const [node, priority] of fill) {
      const t = await mesh.publish(
        mesh.task(ref, {
          parent: "job",
          priority,
          reqs: half,
          node_selector: { "kubernetes.io/hostname": node },
        }),
      );
      expect((await mesh.waitForEvent(t.task_id, "deployed")).node_id).toBe(node);
      filled.push(t);
    }
    const low = filled.slice(0, 2).map((t) => t.task_id);

    // Priority 7 fits nowhere; p-1 can make room by evicting a priority-0 pod, p-2 only a priority-5 one.
    const urgent = await mesh.publish(mesh.task(urgentRef, { parent: "urgent", priority: 7, reqs: half }));
    const placed = await mesh.waitForEvent(urgent.task_id, "deployed");
    expect(placed.node_id).toBe("p-1");
    const preempted = await waitFor(() => mesh.events.filter((e) => e.status === "preempted"), {
      what: "a preemption",
    });
    expect(preempted).toHaveLength(1);
    expect(low).toContain(preempted[0]!.task_id);
    expect(preempted[0]!.node_id).toBe("p-1");
    expect(preempted[0]!.details).toMatch(new RegExp(urgent.task_id));

    // Priority 3: only the remaining priority-0 pod is below it.
    const second = await mesh.publish(mesh.task(urgentRef, { parent: "urgent", priority: 3, reqs: half }));
    expect((await mesh.waitForEvent(second.task_id, "deployed")).node_id).toBe("p-1");
    await waitFor(() => mesh.events.filter((e) => e.status === "preempted").length === 2, {
      what: "the second preemption",
    });
    expect(new Set(mesh.events.filter((e) => e.status === "preempted").map((e) => e.task_id))).toEqual(
      new Set(low),
    );

    // Another priority 3: nothing below it is left anywhere; nothing is evicted.
    const third = await mesh.publish(mesh.task(urgentRef, { parent: "urgent", priority: 3, reqs: half }));
    await mesh.waitForEvent(third.task_id, "unschedulable");
    expect(mesh.events.filter((e) => e.status === "preempted")).toHaveLength(2);

    // What runs: p-1 the two urgent pods, p-2 untouched.
    const running = async (node: string) =>
      (await mesh.agents.get(node)!.runtime.list()).pods.map((p) => p.identity.taskId).sort();
    expect(await running("p-1")).toEqual([urgent.task_id, second.task_id].sort());
    expect(await running("p-2")).toEqual([filled[2]!.task_id, filled[3]!.task_id].sort());
  });
});
