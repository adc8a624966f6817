// The node's capacity ledger with batches (DESIGN §3.6): a bid offers as many
// replicas as fit and holds them; each awarded share binds one entry per pod,
// from the hold first; nothing ever charges past allocatable.
import { CapacityLedger, replicaKey } from "../../controllers/scheduler-bidder/logic/index.js";
import type { PlacementTask, Resources } from "../../controllers/scheduler-bidder/logic/index.js";

const MiB = 1024 ** 2;
const ALLOC: Resources = { cpu_millis: 1000, memory_bytes: 1024 * MiB, pods: 110 };

function ledger(allocatable: Resources = ALLOC): CapacityLedger {
  return new CapacityLedger({ node_id: "n1", labels: {}, taints: [], allocatable }, { bidHoldMs: 1000 });
}

function batch(id: string, cpu: number, extra: Partial<PlacementTask> = {}): PlacementTask {
  return {
    task_id: id,
    ns: "default",
    parent: "web",
    priority: 0,
    reqs: { cpu_millis: cpu, memory_bytes: 8 * MiB, ports: [] },
    ...extra,
  };
}

const pods = (id: string, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ key: replicaKey(id, from + i), pod: `web-${from + i}` }));

function within(l: CapacityLedger, a: Resources = ALLOC): boolean {
  const u = l.used();
  return u.cpu_millis <= a.cpu_millis && u.memory_bytes <= a.memory_bytes && u.pods <= a.pods;
}

describe("batch bids", () => {
  it("offers as many replicas as the tightest resource allows, and holds them", () => {
    const l = ledger();
    const d = l.bidBatch(batch("B1", 30), 300, 0);
    expect(d).toMatchObject({ fit: true, offered: 33 }); // 1000m / 30m
    expect(l.used()).toEqual({ cpu_millis: 990, memory_bytes: 33 * 8 * MiB, pods: 33 });
    // A second batch sees only what is left; a third nothing, with the reason.
    expect(l.bidBatch(batch("B2", 5), 300, 0).offered).toBe(2);
    const none = l.bidBatch(batch("B3", 5), 10, 0);
    expect(none).toMatchObject({ fit: false, offered: 0 });
    expect(none.reasons[0]).toMatch(/^InsufficientCPU/);
    expect(within(l)).toBe(true);
  });

  it("never offers more than asked, nor more pod slots than the node has", () => {
    expect(ledger().bidBatch(batch("B", 1), 7, 0).offered).toBe(7);
    expect(ledger().bidBatch(batch("B", 0), 1000, 0).offered).toBe(110);
  });

  it("host ports or an anti-affinity that repels its own replicas allow one per node", () => {
    expect(
      ledger().bidBatch(
        batch("P", 1, { reqs: { cpu_millis: 1, memory_bytes: 0, ports: [{ port: 80, protocol: "TCP" }] } }),
        50,
        0,
      ).offered,
    ).toBe(1);
    const spread = batch("S", 1, { anti_affinity: { matchLabels: { "beemesh.io/parent": "web" } } });
    expect(ledger().bidBatch(spread, 50, 0).offered).toBe(1);
    const other = batch("O", 1, { anti_affinity: { matchLabels: { app: "db" } } });
    expect(ledger().bidBatch(other, 50, 0, { labels: { app: "web" } }).offered).toBe(50);
  });

  it("the hold expires like a single bid's", () => {
    const l = ledger();
    l.bidBatch(batch("B", 10), 20, 0);
    expect(l.expire(999)).toEqual([]);
    expect(l.expire(1000)).toEqual(["B"]);
    expect(l.used().pods).toBe(0);
  });

  it("a republished attempt replaces the old hold instead of adding to it", () => {
    const l = ledger();
    l.bidBatch(batch("B", 10), 100, 0);
    expect(l.bidBatch(batch("B", 10), 100, 500).offered).toBe(100);
    expect(l.used().cpu_millis).toBe(1000);
  });
});

describe("binding shares", () => {
  it("binds each pod of a share from the hold; the rest of the hold waits for another share", () => {
    const l = ledger();
    l.bidBatch(batch("B", 10), 100, 0);
    expect(l.bindShare(batch("B", 10), pods("B", 0, 60), 10)).toEqual({ ok: true });
    expect(l.stateOf(replicaKey("B", 0))).toBe("bound");
    expect(l.stateOf("B")).toBe("reserved");
    expect(l.used().cpu_millis).toBe(1000); // 60 bound + 40 still held
    expect(l.bindShare(batch("B", 10), pods("B", 60, 40), 20)).toEqual({ ok: true });
    expect(l.has("B")).toBe(false);
    expect(l.expire(5000)).toEqual([]); // bound pods never expire
    expect(l.used()).toEqual({ cpu_millis: 1000, memory_bytes: 100 * 8 * MiB, pods: 100 });
  });

  it("a share larger than the hold takes free room for the rest, or is refused and changes nothing", () => {
    const l = ledger();
    l.bidBatch(batch("B", 10), 20, 0);
    expect(l.bindShare(batch("B", 10), pods("B", 0, 50), 10)).toEqual({ ok: true });
    const before = l.used();
    const refused = l.bindShare(batch("B", 10), pods("B", 50, 51), 10);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.reasons[0]).toMatch(/^InsufficientCPU/);
    expect(l.used()).toEqual(before);
    expect(l.has(replicaKey("B", 50))).toBe(false);
    expect(within(l)).toBe(true);
  });

  it("refuses a pod it already holds (a repeated award)", () => {
    const l = ledger();
    expect(l.bindShare(batch("B", 1), pods("B", 0, 2), 0).ok).toBe(true);
    expect(l.bindShare(batch("B", 1), pods("B", 1, 2), 0).ok).toBe(false);
    expect(l.used().pods).toBe(2);
  });

  it("one pod of a share goes alone; the others stay", () => {
    const l = ledger();
    l.bindShare(batch("B", 10), pods("B", 0, 3), 0);
    expect(l.release(replicaKey("B", 1))).toBe(true);
    expect(l.used().pods).toBe(2);
    expect(l.has(replicaKey("B", 0)) && l.has(replicaKey("B", 2))).toBe(true);
  });

  it("a batch pod can be a preemption victim, named by its own key", () => {
    const l = ledger({ cpu_millis: 100, memory_bytes: 1024 * MiB, pods: 110 });
    l.bindShare(batch("LOW", 50), pods("LOW", 0, 2), 0);
    const urgent: PlacementTask = { ...batch("HIGH", 50), priority: 100 };
    const d = l.bid(urgent, 10);
    // Equal priority and age: by pod name, so web-0 goes.
    expect(d.victims?.map((v) => [v.task_id, v.pod])).toEqual([["LOW", "web-0"]]);
    expect(d.victimKeys).toEqual([replicaKey("LOW", 0)]);
    const bound = l.bind("HIGH");
    expect(bound).toEqual({
      ok: true,
      evict: [{ ns: "default", pod: "web-0", task_id: "LOW", priority: 0 }],
    });
    expect(l.has(replicaKey("LOW", 0))).toBe(false);
    expect(l.has(replicaKey("LOW", 1))).toBe(true);
    expect(within(l, { cpu_millis: 100, memory_bytes: 1024 * MiB, pods: 110 })).toBe(true);
  });
});
