// Unit tables for the node agent's placement logic: fit, score, preemption, ledger.
import {
  CapacityLedger,
  checkFit,
  evaluateTask,
  fnv1a32,
  MAX_SCORE,
  planPreemption,
  scoreTask,
  selectorMatches,
  tieBreak,
  tolerates,
} from "../../controllers/scheduler-bidder/logic/index.js";
import type {
  FitReasonCode,
  LabelSelector,
  NodeView,
  PlacementTask,
  PodOnNode,
  Taint,
  Toleration,
} from "../../controllers/scheduler-bidder/logic/index.js";
import { mulberry32 } from "../../controllers/watchdog/logic/sim.js";

const GiB = 1024 ** 3;

function task(extra: Partial<PlacementTask> = {}): PlacementTask {
  return {
    task_id: "01TASK",
    ns: "default",
    parent: "web",
    priority: 0,
    reqs: { cpu_millis: 500, memory_bytes: GiB, ports: [] },
    ...extra,
  };
}

function pod(name: string, extra: Partial<PodOnNode> = {}): PodOnNode {
  return {
    task_id: `T-${name}`,
    ns: "default",
    parent: "other",
    pod: name,
    priority: 0,
    labels: {},
    charge: { cpu_millis: 1000, memory_bytes: GiB, pods: 1 },
    ports: [],
    started_at_ms: 0,
    preemptible: true,
    ...extra,
  };
}

function node(extra: Partial<NodeView> = {}): NodeView {
  return {
    node_id: "n1",
    labels: {},
    taints: [],
    allocatable: { cpu_millis: 4000, memory_bytes: 8 * GiB, pods: 10 },
    pods: [],
    ...extra,
  };
}

function codes(t: PlacementTask, n: NodeView): FitReasonCode[] {
  return checkFit(t, n).reasons.map((r) => r.code);
}

describe("tolerations (Kubernetes semantics)", () => {
  const taint: Taint = { key: "gpu", value: "a100", effect: "NoSchedule" };
  const cases: [string, Toleration, Taint, boolean][] = [
    ["Equal with key and value", { key: "gpu", operator: "Equal", value: "a100" }, taint, true],
    ["absent operator means Equal", { key: "gpu", value: "a100" }, taint, true],
    ["Equal with another value", { key: "gpu", value: "t4" }, taint, false],
    ["Exists with the key", { key: "gpu", operator: "Exists" }, taint, true],
    ["Exists with another key", { key: "ssd", operator: "Exists" }, taint, false],
    ["empty key with Exists tolerates every taint", { operator: "Exists" }, taint, true],
    [
      "empty key with Exists and an effect matches that effect only",
      { operator: "Exists", effect: "NoExecute" },
      taint,
      false,
    ],
    ["matching effect", { key: "gpu", operator: "Exists", effect: "NoSchedule" }, taint, true],
    ["other effect", { key: "gpu", operator: "Exists", effect: "NoExecute" }, taint, false],
    [
      "Equal with a taint without value",
      { key: "dedicated", operator: "Equal" },
      { key: "dedicated", effect: "NoExecute" },
      true,
    ],
    ["empty key with Equal tolerates nothing", { operator: "Equal" }, taint, false],
  ];
  it.each(cases)("%s", (_name, toleration, t, expected) => {
    expect(tolerates(toleration, t)).toBe(expected);
  });
});

describe("label selectors", () => {
  const labels = { app: "web", tier: "front" };
  const cases: [string, LabelSelector, boolean][] = [
    ["empty selector matches everything", {}, true],
    ["matchLabels hit", { matchLabels: { app: "web" } }, true],
    ["matchLabels miss", { matchLabels: { app: "db" } }, false],
    ["In", { matchExpressions: [{ key: "tier", operator: "In", values: ["front", "back"] }] }, true],
    ["In on a missing key", { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] }, false],
    ["NotIn", { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["back"] }] }, true],
    [
      "NotIn on a missing key matches",
      { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["a"] }] },
      true,
    ],
    ["Exists", { matchExpressions: [{ key: "app", operator: "Exists" }] }, true],
    ["DoesNotExist", { matchExpressions: [{ key: "app", operator: "DoesNotExist" }] }, false],
    [
      "terms are ANDed",
      { matchLabels: { app: "web" }, matchExpressions: [{ key: "tier", operator: "In", values: ["back"] }] },
      false,
    ],
  ];
  it.each(cases)("%s", (_name, selector, expected) => {
    expect(selectorMatches(selector, labels)).toBe(expected);
  });
});

describe("fit", () => {
  const cases: [string, PlacementTask, NodeView, FitReasonCode[]][] = [
    ["an empty node fits", task(), node(), []],
    [
      "exactly full still fits",
      task({ reqs: { cpu_millis: 4000, memory_bytes: 8 * GiB, ports: [] } }),
      node(),
      [],
    ],
    [
      "cpu short by one milli",
      task({ reqs: { cpu_millis: 3001, memory_bytes: 1, ports: [] } }),
      node({ pods: [pod("a")] }),
      ["InsufficientCPU"],
    ],
    [
      "memory short",
      task({ reqs: { cpu_millis: 1, memory_bytes: 8 * GiB, ports: [] } }),
      node({ pods: [pod("a")] }),
      ["InsufficientMemory"],
    ],
    [
      "pod count at its maximum",
      task({ reqs: { cpu_millis: 0, memory_bytes: 0, ports: [] } }),
      node({ allocatable: { cpu_millis: 4000, memory_bytes: 8 * GiB, pods: 1 }, pods: [pod("a")] }),
      ["TooManyPods"],
    ],
    [
      "host port taken (same protocol)",
      task({ reqs: { cpu_millis: 1, memory_bytes: 1, ports: [{ port: 8080, protocol: "TCP" }] } }),
      node({ pods: [pod("a", { ports: [{ port: 8080, protocol: "TCP" }] })] }),
      ["HostPortConflict"],
    ],
    [
      "same port, other protocol",
      task({ reqs: { cpu_millis: 1, memory_bytes: 1, ports: [{ port: 53, protocol: "UDP" }] } }),
      node({ pods: [pod("a", { ports: [{ port: 53, protocol: "TCP" }] })] }),
      [],
    ],
    [
      "node selector miss",
      task({ node_selector: { disk: "ssd" } }),
      node({ labels: { disk: "hdd" } }),
      ["NodeSelectorMismatch"],
    ],
    [
      "node selector hit",
      task({ node_selector: { disk: "ssd" } }),
      node({ labels: { disk: "ssd", zone: "a" } }),
      [],
    ],
    [
      "NoSchedule taint untolerated",
      task(),
      node({ taints: [{ key: "gpu", effect: "NoSchedule" }] }),
      ["UntoleratedTaint"],
    ],
    [
      "NoExecute taint untolerated",
      task(),
      node({ taints: [{ key: "drain", effect: "NoExecute" }] }),
      ["UntoleratedTaint"],
    ],
    [
      "PreferNoSchedule only lowers the score",
      task(),
      node({ taints: [{ key: "old", effect: "PreferNoSchedule" }] }),
      [],
    ],
    [
      "tolerated taint",
      task({ tolerations: [{ key: "gpu", operator: "Exists" }] }),
      node({ taints: [{ key: "gpu", effect: "NoSchedule" }] }),
      [],
    ],
    [
      "anti-affinity with replicas of the same parent",
      task({ anti_affinity: { matchLabels: { "beemesh.io/parent": "web" } } }),
      node({ pods: [pod("web-1", { parent: "web" })] }),
      ["PodAntiAffinity"],
    ],
    [
      "anti-affinity only within the namespace",
      task({ anti_affinity: { matchLabels: { "beemesh.io/parent": "web" } } }),
      node({ pods: [pod("web-1", { parent: "web", ns: "other" })] }),
      [],
    ],
    [
      "affinity without a matching pod",
      task({ affinity: { matchLabels: { app: "cache" } } }),
      node({ pods: [pod("a")] }),
      ["PodAffinity"],
    ],
    [
      "affinity with a matching pod",
      task({ affinity: { matchLabels: { app: "cache" } } }),
      node({ pods: [pod("a", { labels: { app: "cache" } })] }),
      [],
    ],
    [
      "all reasons at once",
      task({ reqs: { cpu_millis: 9000, memory_bytes: 9 * GiB, ports: [] }, node_selector: { x: "y" } }),
      node({ taints: [{ key: "k", effect: "NoSchedule" }] }),
      ["InsufficientCPU", "InsufficientMemory", "NodeSelectorMismatch", "UntoleratedTaint"],
    ],
    [
      "a port asked twice is an invalid request",
      task({
        reqs: {
          cpu_millis: 1,
          memory_bytes: 1,
          ports: [
            { port: 80, protocol: "TCP" },
            { port: 80, protocol: "TCP" },
          ],
        },
      }),
      node(),
      ["InvalidRequest"],
    ],
  ];
  it.each(cases)("%s", (_name, t, n, expected) => {
    expect(codes(t, n)).toEqual(expected);
    expect(checkFit(t, n).fit).toBe(expected.length === 0);
  });

  it("explains reasons with numbers", () => {
    const [reason] = checkFit(
      task({ reqs: { cpu_millis: 5000, memory_bytes: 1, ports: [] } }),
      node(),
    ).reasons;
    expect(reason?.message).toBe("needs 5000m cpu, 4000m free");
  });
});

describe("score", () => {
  it("follows the documented formula", () => {
    // L = 0.5 (half of cpu and memory left), S = 1/2 (one sibling), H = 1/2 (one of two hints),
    // T = 1/2 (one soft taint): round(1000 * (4*0.5 + 3*0.5 + 2*0.5 + 1*0.5) / 10) = 500
    const t = task({
      reqs: { cpu_millis: 2000, memory_bytes: 4 * GiB, ports: [] },
      hints: { "node-label/zone": "a", node: "elsewhere", unrelated: "x" },
    });
    const n = node({
      labels: { zone: "a" },
      taints: [{ key: "old", effect: "PreferNoSchedule" }],
      pods: [pod("w", { parent: "web", charge: { cpu_millis: 0, memory_bytes: 0, pods: 1 } })],
    });
    expect(scoreTask(t, n)).toEqual({
      score: 500,
      leastAllocated: 0.5,
      spread: 0.5,
      hints: 0.5,
      taints: 0.5,
    });
    // Empty node, no hints, no taints: round(1000 * (4*0.5 + 3 + 2 + 1) / 10) = 800
    expect(scoreTask(task({ reqs: t.reqs }), node()).score).toBe(800);
  });

  it("is deterministic and within [0, 1000]", () => {
    const rnd = mulberry32(42);
    for (let i = 0; i < 500; i++) {
      const n = node({
        pods: Array.from({ length: Math.floor(rnd() * 5) }, (_, j) =>
          pod(`p${j}`, {
            parent: rnd() < 0.5 ? "web" : "db",
            charge: { cpu_millis: rnd() * 900, memory_bytes: rnd() * GiB, pods: 1 },
          }),
        ),
        taints: rnd() < 0.3 ? [{ key: "x", effect: "PreferNoSchedule" }] : [],
      });
      const t = task({ reqs: { cpu_millis: rnd() * 5000, memory_bytes: rnd() * 10 * GiB, ports: [] } });
      const a = scoreTask(t, n).score;
      expect(a).toBe(scoreTask(t, structuredClone(n)).score);
      expect(Number.isInteger(a)).toBe(true);
      expect(a).toBeGreaterThanOrEqual(0);
      expect(a).toBeLessThanOrEqual(MAX_SCORE);
    }
  });

  it.each([
    [
      "an emptier node",
      node(),
      node({ pods: [pod("a", { charge: { cpu_millis: 2000, memory_bytes: 4 * GiB, pods: 1 } })] }),
    ],
    [
      "a node without siblings",
      node({ pods: [pod("x", { parent: "db" })] }),
      node({ pods: [pod("x", { parent: "web" })] }),
    ],
    ["a node matching the hints", node({ labels: { zone: "a" } }), node({ labels: { zone: "b" } })],
    ["a node without soft taints", node(), node({ taints: [{ key: "old", effect: "PreferNoSchedule" }] })],
  ])("prefers %s", (_name, better, worse) => {
    const t = task({ hints: { "node-label/zone": "a" } });
    expect(scoreTask(t, better).score).toBeGreaterThan(scoreTask(t, worse).score);
  });

  it("penalizes each further sibling", () => {
    const withSiblings = (k: number) =>
      node({
        pods: Array.from({ length: k }, (_, i) =>
          pod(`w${i}`, { parent: "web", charge: { cpu_millis: 0, memory_bytes: 0, pods: 1 } }),
        ),
      });
    const scores = [0, 1, 2, 3].map((k) => scoreTask(task(), withSiblings(k)).score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
    expect(new Set(scores).size).toBe(4);
  });

  it("tie-breaks with FNV-1a 32 of task_id/node_id", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
    expect(tieBreak("T1", "n1")).toBe(fnv1a32("T1/n1"));
    expect(tieBreak("T1", "n1")).not.toBe(tieBreak("T1", "n2"));
    expect(tieBreak("T1", "n1", () => 7)).toBe(7);
  });
});

describe("preemption planning", () => {
  const small = { cpu_millis: 1000, memory_bytes: GiB, pods: 1 };
  const full = (pods: PodOnNode[]) =>
    node({ allocatable: { cpu_millis: 3000, memory_bytes: 8 * GiB, pods: 10 }, pods });
  const big = task({ priority: 100, reqs: { cpu_millis: 1000, memory_bytes: GiB, ports: [] } });

  it("returns null when the task fits already", () => {
    expect(planPreemption(big, node())).toBeNull();
  });

  it("evicts the lowest priority first, then the newest", () => {
    const n = full([
      pod("old-low", { priority: 1, started_at_ms: 1, charge: small }),
      pod("new-low", { priority: 1, started_at_ms: 9, charge: small }),
      pod("lowest", { priority: 0, started_at_ms: 5, charge: small }),
    ]);
    expect(planPreemption(big, n)?.map((p) => p.pod)).toEqual(["lowest"]);
    const twice = task({ priority: 100, reqs: { cpu_millis: 2000, memory_bytes: GiB, ports: [] } });
    expect(planPreemption(twice, n)?.map((p) => p.pod)).toEqual(["lowest", "new-low"]);
  });

  it("never names a victim of equal or higher priority", () => {
    const n = full([
      pod("same", { priority: 100, charge: small }),
      pod("higher", { priority: 200, charge: small }),
      pod("low", { priority: 5, charge: small }),
    ]);
    expect(
      planPreemption(task({ priority: 100, reqs: { cpu_millis: 2000, memory_bytes: 1, ports: [] } }), n),
    ).toBeNull();
    expect(planPreemption(big, n)?.map((p) => p.pod)).toEqual(["low"]);
  });

  it("spares a victim that turns out unnecessary (irreducible set)", () => {
    // Greedy takes the tiny lowest-priority pod first, but the big one alone suffices.
    const n = full([
      pod("tiny", { priority: 0, charge: { cpu_millis: 100, memory_bytes: 1, pods: 1 } }),
      pod("big", { priority: 1, charge: { cpu_millis: 2900, memory_bytes: 1, pods: 1 } }),
    ]);
    const t = task({ priority: 10, reqs: { cpu_millis: 2000, memory_bytes: 1, ports: [] } });
    expect(planPreemption(t, n)?.map((p) => p.pod)).toEqual(["big"]);
  });

  it("frees a host port by evicting its holder", () => {
    const n = node({
      pods: [
        pod("holder", { priority: 0, ports: [{ port: 443, protocol: "TCP" }] }),
        pod("other", { priority: 0 }),
      ],
    });
    const t = task({
      priority: 9,
      reqs: { cpu_millis: 1, memory_bytes: 1, ports: [{ port: 443, protocol: "TCP" }] },
    });
    expect(planPreemption(t, n)?.map((p) => p.pod)).toEqual(["holder"]);
  });

  it.each([
    ["a node selector mismatch", task({ priority: 9, node_selector: { a: "b" } })],
    ["an untolerated taint", task({ priority: 9, reqs: { cpu_millis: 5000, memory_bytes: 1, ports: [] } })],
  ])("cannot cure %s", (_name, t) => {
    const n = full([pod("low", { priority: 0, charge: small })]);
    const tainted = { ...n, taints: [{ key: "k", effect: "NoSchedule" as const }] };
    expect(planPreemption(t, t.node_selector !== undefined ? n : tainted)).toBeNull();
  });

  it("skips pods that are not preemptible and gives up when evicting all would not do", () => {
    const n = full([
      pod("reserved", { priority: 0, charge: small, preemptible: false }),
      pod("a", { priority: 0, charge: small }),
      pod("b", { priority: 0, charge: small }),
    ]);
    const t = task({ priority: 9, reqs: { cpu_millis: 3000, memory_bytes: 1, ports: [] } });
    expect(planPreemption(t, n)).toBeNull();
  });

  it("a preempting bid names its victims and scores the node as if they were gone", () => {
    const n = full([pod("low", { priority: 0, charge: { cpu_millis: 3000, memory_bytes: GiB, pods: 1 } })]);
    const d = evaluateTask(big, n);
    expect(d.fit).toBe(false);
    expect(d.victims).toEqual([{ ns: "default", pod: "low", task_id: "T-low", priority: 0 }]);
    expect(d.score).toBe(scoreTask(big, { ...n, pods: [] }).score);
    expect(d.reasons[0]).toMatch(/^InsufficientCPU: /);
    expect(evaluateTask(big, n, { preemption: false }).victims).toBeUndefined();
  });
});

describe("capacity ledger", () => {
  const alloc = { cpu_millis: 2000, memory_bytes: 4 * GiB, pods: 3 };
  const ledger = () =>
    new CapacityLedger({ node_id: "n1", labels: {}, taints: [], allocatable: alloc }, { bidHoldMs: 1000 });
  const t = (id: string, cpu: number, priority = 0) =>
    task({ task_id: id, priority, reqs: { cpu_millis: cpu, memory_bytes: GiB, ports: [] } });

  it("reserves on bid, refuses what would overcommit, releases on loss", () => {
    const l = ledger();
    expect(l.bid(t("a", 1500), 0).fit).toBe(true);
    const second = l.bid(t("b", 1000), 0);
    expect(second.fit).toBe(false);
    expect(second.reasons[0]).toMatch(/InsufficientCPU/);
    expect(l.release("a")).toBe(true);
    expect(l.bid(t("b", 1000), 0).fit).toBe(true);
    expect(l.used()).toEqual({ cpu_millis: 1000, memory_bytes: GiB, pods: 1 });
  });

  it("binds on award; bound pods do not expire, unawarded reservations do", () => {
    const l = ledger();
    l.bid(t("a", 500), 0);
    l.bid(t("b", 500), 0);
    expect(l.bind("a")).toEqual({ ok: true, evict: [] });
    expect(l.nextExpiryMs()).toBe(1000);
    expect(l.expire(999)).toEqual([]);
    expect(l.expire(1000)).toEqual(["b"]);
    expect(l.stateOf("a")).toBe("bound");
    expect(l.has("b")).toBe(false);
    expect(l.bind("b")).toEqual({ ok: false, reason: "no reservation for b" });
  });

  it("a repeated task keeps its hold and is evaluated without itself", () => {
    const l = ledger();
    l.bid(t("a", 2000), 0);
    expect(l.bid(t("a", 2000), 10).fit).toBe(true);
    expect(l.used().cpu_millis).toBe(2000);
  });

  it("preempting reservation: victims stay charged until the award, then go", () => {
    const l = ledger();
    l.addRunning(
      {
        task_id: "low",
        ns: "default",
        parent: "x",
        pod: "low-0",
        priority: 0,
        reqs: { cpu_millis: 1500, memory_bytes: GiB, ports: [] },
      },
      0,
    );
    const d = l.bid(t("hi", 1800, 10), 5);
    expect(d.victims?.map((v) => v.pod)).toEqual(["low-0"]);
    // The low pod still runs and counts; the reservation holds only the excess (300m).
    expect(l.used().cpu_millis).toBe(1800);
    // Another bid cannot take the room the award will need.
    expect(l.bid(t("other", 300), 6).fit).toBe(false);
    const bound = l.bind("hi");
    expect(bound).toEqual({
      ok: true,
      evict: [{ ns: "default", pod: "low-0", task_id: "low", priority: 0 }],
    });
    expect(l.used().cpu_millis).toBe(1800);
    expect(l.has("low")).toBe(false);
  });

  it("a lost preempting bid gives its victims back", () => {
    const l = ledger();
    l.addRunning(
      {
        task_id: "low",
        ns: "default",
        parent: "x",
        pod: "low-0",
        priority: 0,
        reqs: { cpu_millis: 1500, memory_bytes: GiB, ports: [] },
      },
      0,
    );
    l.bid(t("hi", 1800, 10), 5);
    expect(l.view().pods.find((p) => p.task_id === "low")?.preemptible).toBe(false);
    l.release("hi");
    expect(l.view().pods.find((p) => p.task_id === "low")?.preemptible).toBe(true);
    expect(l.used().cpu_millis).toBe(1500);
  });

  it("refuses victims that are not lower-priority bound pods", () => {
    const l = ledger();
    l.addRunning(
      {
        task_id: "peer",
        ns: "default",
        parent: "x",
        pod: "p",
        priority: 10,
        reqs: { cpu_millis: 1500, memory_bytes: 1, ports: [] },
      },
      0,
    );
    expect(l.reserve(t("hi", 1800, 10), 0, {}, ["peer"])).toEqual({
      ok: false,
      reasons: ["InvalidVictim: peer is not a preemptible pod of lower priority here"],
    });
    expect(l.reserve(t("hi", 1800, 10), 0, {}, ["nope"]).ok).toBe(false);
  });

  it("never goes over allocatable under any sequence of bids, awards, losses and expiries", () => {
    const rnd = mulberry32(2024);
    for (let run = 0; run < 40; run++) {
      const l = ledger();
      const ids: string[] = [];
      for (let step = 0; step < 200; step++) {
        const r = rnd();
        const now = step * 100;
        if (r < 0.45) {
          const id = `t${run}-${step}`;
          ids.push(id);
          l.bid(t(id, Math.floor(rnd() * 1500), Math.floor(rnd() * 4)), now);
        } else if (r < 0.65) {
          const id = ids[Math.floor(rnd() * ids.length)];
          if (id !== undefined) l.bind(id);
        } else if (r < 0.85) {
          const id = ids[Math.floor(rnd() * ids.length)];
          if (id !== undefined) l.release(id);
        } else {
          l.expire(now);
        }
        const used = l.used();
        expect(used.cpu_millis).toBeLessThanOrEqual(alloc.cpu_millis);
        expect(used.memory_bytes).toBeLessThanOrEqual(alloc.memory_bytes);
        expect(used.pods).toBeLessThanOrEqual(alloc.pods);
      }
    }
  });
});
