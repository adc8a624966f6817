// Unit tables for the watchdog replica's pure logic (controllers/watchdog/logic).
import {
  effectiveStrategy,
  parseWatchdogOptions,
  WatchdogOptionsError,
  WatchdogReplica,
} from "../../controllers/watchdog/logic/index.js";
import { InMemorySlotStore } from "../../controllers/watchdog/logic/sim.js";
import type {
  WatchdogAction,
  WatchdogHeartbeat,
  WatchdogIdentity,
  WatchdogOptions,
  WatchdogSpec,
} from "../../controllers/watchdog/logic/index.js";

const T0 = 5_000_000; // an arbitrary monotonic origin: only differences matter

const SPEC: WatchdogSpec = {
  replicas: 3,
  generation: 1,
  template_hash: "v1",
  max_surge: 1,
  max_unavailable: 0,
};

function identity(pod: string, extra: Partial<WatchdogIdentity> = {}): WatchdogIdentity {
  return {
    pod,
    node: `node-${pod}`,
    ns: "default",
    parent: "web",
    started_at: 1000,
    template_hash: "v1",
    generation: 1,
    ...extra,
  };
}

function hb(pod: string, extra: Partial<WatchdogHeartbeat> = {}): WatchdogHeartbeat {
  return {
    pod,
    node: `node-${pod}`,
    ns: "default",
    parent: "web",
    generation: 1,
    spec_revision: 1,
    healthy: true,
    ready: true,
    ts: 0,
    template_hash: "v1",
    started_at: 1000,
    slot: null,
    retiring: false,
    pending: [],
    ...extra,
  };
}

interface Harness {
  r: WatchdogReplica;
  step: (input: Parameters<WatchdogReplica["step"]>[0]) => WatchdogAction[];
}

/** A replica already holding slot `slot` under its pod name, with the spec observed. */
function replica(
  pod: string,
  opts: {
    options?: WatchdogOptions;
    spec?: WatchdogSpec | null;
    slot?: number | null;
    id?: Partial<WatchdogIdentity>;
  } = {},
): Harness {
  let n = 0;
  const r = new WatchdogReplica(
    identity(pod, opts.id),
    opts.options ?? {},
    { newClaim: () => `claim-${++n}` },
    T0,
  );
  const step = (input: Parameters<WatchdogReplica["step"]>[0]) => r.step(input);
  r.start();
  if (opts.spec !== undefined) step({ type: "spec", spec: opts.spec, revision: 1, nowMs: T0 });
  else step({ type: "spec", spec: SPEC, revision: 1, nowMs: T0 });
  const slot = opts.slot === undefined ? 0 : opts.slot;
  // The replica seeks the lowest free slot: refuse the ones below `slot`, grant `slot`.
  if (slot !== null) {
    for (let i = 0; i <= slot; i++) {
      step({
        type: "slotResult",
        op: "acquire",
        slot: i,
        claim: pod,
        outcome: i === slot ? "granted" : "denied",
        nowMs: T0,
      });
    }
  }
  return { r, step };
}

function ofType<K extends WatchdogAction["type"]>(
  actions: WatchdogAction[],
  type: K,
): Extract<WatchdogAction, { type: K }>[] {
  return actions.filter((a): a is Extract<WatchdogAction, { type: K }> => a.type === type);
}

/** Feed heartbeats from `peers` every second from T0 to T0+ms, ticking `h` too; returns all actions. */
function runWithPeers(
  h: Harness,
  peers: WatchdogHeartbeat[],
  fromMs: number,
  toMs: number,
): WatchdogAction[] {
  const out: WatchdogAction[] = [];
  for (let t = fromMs; t <= toMs; t += 500) {
    if ((t - fromMs) % 1000 === 0)
      for (const p of peers) out.push(...h.step({ type: "heartbeat", hb: p, nowMs: t }));
    out.push(...h.step({ type: "tick", nowMs: t }));
  }
  return out;
}

describe("watchdog options", () => {
  it("defaults to DESIGN §4 numbers", () => {
    const s = parseWatchdogOptions();
    expect(s.intervalMs).toBe(1000);
    expect(s.ttlIntervals).toBe(3);
    expect(s.startupGraceMs).toBe(3000);
  });

  it("waits for a lagging dispatch record one TTL by default, at most half the clone grace", () => {
    expect(parseWatchdogOptions().recordWaitMs).toBe(3000);
    expect(parseWatchdogOptions({ intervalMs: 300 }).recordWaitMs).toBe(900);
    expect(parseWatchdogOptions({ cloneGraceMs: 4000 }).recordWaitMs).toBe(2000);
    expect(parseWatchdogOptions({ recordWaitMs: 500 }).recordWaitMs).toBe(500);
  });

  it.each([
    [{ intervalMs: 0 }, /intervalMs/],
    [{ slotRenewMs: 6000, slotTtlMs: 10000 }, /at most half/],
    [{ strictFencing: true, fenceMarginMs: 9000 }, /fenceMarginMs/],
    [{ recordWaitMs: 0 }, /recordWaitMs must be a positive/],
    [{ recordWaitMs: 40_000 }, /recordWaitMs \(40000\) must be at most half of cloneGraceMs/],
  ])("refuses %j", (opts, message) => {
    expect(() => parseWatchdogOptions(opts)).toThrow(WatchdogOptionsError);
    expect(() => parseWatchdogOptions(opts)).toThrow(message);
  });

  it.each([
    [
      { max_surge: 0, max_unavailable: 0 },
      { surge: 1, unavailable: 0 },
    ],
    [
      { max_surge: 2, max_unavailable: 1 },
      { surge: 2, unavailable: 1 },
    ],
    [
      { max_surge: 0, max_unavailable: 1 },
      { surge: 0, unavailable: 1 },
    ],
  ])("strategy %j is used as %j", (spec, expected) => {
    expect(effectiveStrategy(spec)).toEqual(expected);
  });
});

describe("slot store semantics (the in-memory CAS used by the simulator)", () => {
  it("create refuses a held key, renew refreshes only the holder, keys vanish after the TTL", () => {
    const store = new InMemorySlotStore(1000);
    expect(store.acquire("k", "x", 0)).toBe(true);
    expect(store.acquire("k", "y", 10)).toBe(false);
    expect(store.renew("k", "y", 10)).toBe(false);
    expect(store.renew("k", "x", 900)).toBe(true);
    expect(store.holder("k", 1899)).toBe("x");
    expect(store.holder("k", 1900)).toBeUndefined();
    expect(store.acquire("k", "y", 1900)).toBe(true);
  });

  it("transfer moves a slot only from its holder, or takes it when absent", () => {
    const store = new InMemorySlotStore(1000);
    store.acquire("k", "x", 0);
    expect(store.transfer("k", "z", "y", 1)).toBe(false);
    expect(store.transfer("k", "x", "y", 1)).toBe(true);
    expect(store.holder("k", 2)).toBe("y");
    expect(store.transfer("absent", "q", "w", 2)).toBe(true);
    store.release("k", "x", 3); // not the holder any more: no effect
    expect(store.holder("k", 3)).toBe("y");
  });
});

describe("watchdog liveness and leader", () => {
  it("judges a peer alive by local receipt time, whatever its ts says", () => {
    const h = replica("b");
    h.step({ type: "heartbeat", hb: hb("a", { ts: 99_999_999_999 }), nowMs: T0 + 100 });
    expect(h.r.view(T0 + 100).live).toEqual(["a", "b"]);
    expect(h.r.view(T0 + 3099).live).toEqual(["a", "b"]);
    expect(h.r.view(T0 + 3100).live).toEqual(["b"]); // TTL = 3 intervals after receipt
  });

  it.each([
    ["lowest name among healthy live peers", [hb("a"), hb("c")], "a"],
    ["an unhealthy peer is not a candidate", [hb("a", { healthy: false }), hb("c")], "b"],
    ["self counts", [hb("c"), hb("d")], "b"],
  ])("leader: %s", (_name, peers, leader) => {
    const h = replica("b");
    for (const p of peers) h.step({ type: "heartbeat", hb: p, nowMs: T0 + 10 });
    expect(h.r.view(T0 + 10).leader).toBe(leader);
  });

  it("forgets a peer at once when its farewell arrives", () => {
    const h = replica("b");
    h.step({ type: "heartbeat", hb: hb("a"), nowMs: T0 + 10 });
    h.step({ type: "heartbeat", hb: hb("a", { retiring: true, healthy: false }), nowMs: T0 + 20 });
    expect(h.r.view(T0 + 20).live).toEqual(["b"]);
  });

  it("ignores heartbeats of other Deployments and its own echo", () => {
    const h = replica("b");
    h.step({ type: "heartbeat", hb: hb("a", { parent: "other" }), nowMs: T0 + 10 });
    h.step({ type: "heartbeat", hb: hb("b", { started_at: 0 }), nowMs: T0 + 10 });
    expect(h.r.view(T0 + 10).live).toEqual(["b"]);
  });
});

describe("watchdog health hysteresis", () => {
  const cases: { name: string; probes: [boolean, boolean][]; healthy: boolean; ready: boolean }[] = [
    {
      name: "two ready probes make it ready",
      probes: [
        [true, true],
        [true, true],
      ],
      healthy: true,
      ready: true,
    },
    { name: "one ready probe is not enough", probes: [[true, true]], healthy: true, ready: false },
    {
      name: "flapping readiness never turns ready",
      probes: [
        [true, true],
        [true, false],
        [true, true],
        [true, false],
        [true, true],
        [true, false],
      ],
      healthy: true,
      ready: false,
    },
    {
      name: "flapping liveness never turns unhealthy",
      probes: [
        [false, true],
        [true, true],
        [false, true],
        [true, true],
        [false, true],
        [false, true],
        [true, true],
      ],
      healthy: true,
      ready: true,
    },
    {
      name: "ready stays ready through two failures",
      probes: [
        [true, true],
        [true, true],
        [true, false],
        [true, false],
        [true, true],
      ],
      healthy: true,
      ready: true,
    },
    {
      name: "three failed readiness probes make it unready",
      probes: [
        [true, true],
        [true, true],
        [true, false],
        [true, false],
        [true, false],
      ],
      healthy: true,
      ready: false,
    },
  ];
  it.each(cases)("$name", ({ probes, healthy, ready }) => {
    const h = replica("b");
    let t = T0;
    for (const [live, rdy] of probes) h.step({ type: "probe", live, ready: rdy, nowMs: (t += 250) });
    expect(h.r.view(t).healthy).toBe(healthy);
    expect(h.r.view(t).ready).toBe(ready);
    expect(h.r.isRetired()).toBe(false);
  });

  it("three failed liveness probes in a row hand the slot over and retire", () => {
    const h = replica("b", { slot: 1 });
    const out: WatchdogAction[] = [];
    for (let i = 1; i <= 3; i++)
      out.push(...h.step({ type: "probe", live: false, ready: false, nowMs: T0 + i * 250 }));
    const [transfer] = ofType(out, "transferSlot");
    expect(transfer).toMatchObject({ slot: 1, from: "b" });
    expect(h.r.isRetired()).toBe(false);
    const done = h.step({
      type: "slotResult",
      op: "transfer",
      slot: 1,
      claim: transfer?.to ?? "",
      outcome: "granted",
      nowMs: T0 + 800,
    });
    expect(ofType(done, "clone")).toEqual([expect.objectContaining({ slot: 1, claim: transfer?.to })]);
    expect(ofType(done, "retire")).toEqual([{ type: "retire", reason: "unhealthy" }]);
    const farewell = ofType(done, "heartbeat")[0]?.hb;
    expect(farewell).toMatchObject({
      retiring: true,
      pending: [{ slot: 1, claim: transfer?.to, age_ms: 0 }],
    });
    expect(ofType(done, "releaseSlot")).toEqual([]); // the slot is the replacement's now
  });
});

describe("watchdog app death", () => {
  it("hands over at once, without a TTL wait", () => {
    const h = replica("c", { slot: 2 });
    const out = h.step({ type: "appDied", nowMs: T0 + 10 });
    expect(ofType(out, "transferSlot")).toEqual([
      { type: "transferSlot", slot: 2, key: "default/web/slot-2", from: "c", to: "claim-1" },
    ]);
    // Still counted by peers until the farewell (so nobody clones a second replacement).
    expect(ofType(h.step({ type: "tick", nowMs: T0 + 1000 }), "heartbeat")[0]?.hb.healthy).toBe(true);
  });

  it("retires without cloning when the slot was taken meanwhile", () => {
    const h = replica("c", { slot: 2 });
    h.step({ type: "appDied", nowMs: T0 + 10 });
    const out = h.step({
      type: "slotResult",
      op: "transfer",
      slot: 2,
      claim: "claim-1",
      outcome: "denied",
      nowMs: T0 + 20,
    });
    expect(ofType(out, "clone")).toEqual([]);
    expect(ofType(out, "retire")).toEqual([{ type: "retire", reason: "app-died" }]);
  });

  it("with no slot yet, retires at once and leaves the clone to the leader", () => {
    const h = replica("c", { slot: null });
    const out = h.step({ type: "appDied", nowMs: T0 + 10 });
    expect(ofType(out, "transferSlot")).toEqual([]);
    expect(ofType(out, "retire")).toHaveLength(1);
  });
});

describe("watchdog slots of its own", () => {
  it("a clone moves its slot from the task's claim to its pod name first", () => {
    let n = 0;
    const r = new WatchdogReplica(
      identity("n1", { slot: { index: 4, claim: "task-claim" } }),
      {},
      { newClaim: () => `c${++n}` },
      T0,
    );
    const out = r.start();
    expect(ofType(out, "transferSlot")).toEqual([
      { type: "transferSlot", slot: 4, key: "default/web/slot-4", from: "task-claim", to: "n1" },
    ]);
    expect(ofType(out, "heartbeat")[0]?.hb.slot).toBe(4);
    const denied = r.step({
      type: "slotResult",
      op: "transfer",
      slot: 4,
      claim: "n1",
      outcome: "denied",
      nowMs: T0 + 5,
    });
    expect(ofType(denied, "retire")).toEqual([{ type: "retire", reason: "slot-lost" }]);
  });

  it("renews every slotRenewMs and retires when the store says another claim holds it", () => {
    const h = replica("b", { slot: 1 });
    const renewals = ofType(runWithPeers(h, [], T0 + 500, T0 + 4500), "renewSlot");
    expect(renewals.map((a) => a.slot)).toEqual([1, 1]);
    const out = h.step({
      type: "slotResult",
      op: "renew",
      slot: 1,
      claim: "b",
      outcome: "denied",
      nowMs: T0 + 4600,
    });
    expect(ofType(out, "retire")).toEqual([{ type: "retire", reason: "slot-lost" }]);
    expect(ofType(out, "releaseSlot")).toEqual([]); // not ours any more
  });

  it("keeps running on an unreachable store unless strict fencing is on", () => {
    for (const strict of [false, true]) {
      const h = replica("b", { slot: 1, options: { strictFencing: strict } });
      const out: WatchdogAction[] = [];
      for (let t = T0 + 500; t <= T0 + 12_000; t += 500) {
        const acts = h.step({ type: "tick", nowMs: t });
        out.push(...acts);
        for (const a of ofType(acts, "renewSlot")) {
          out.push(
            ...h.step({
              type: "slotResult",
              op: "renew",
              slot: a.slot,
              claim: a.claim,
              outcome: "unreachable",
              nowMs: t,
            }),
          );
        }
      }
      expect(h.r.isRetired()).toBe(strict);
      if (strict) expect(ofType(out, "retire")).toEqual([{ type: "retire", reason: "slot-lost" }]);
    }
  });

  it("seeks the lowest free slot, skipping the ones live peers hold", () => {
    let n = 0;
    const r = new WatchdogReplica(identity("d"), {}, { newClaim: () => `c${++n}` }, T0);
    r.start();
    r.step({ type: "heartbeat", hb: hb("a", { slot: 0 }), nowMs: T0 });
    const out = r.step({ type: "spec", spec: SPEC, revision: 1, nowMs: T0 });
    expect(ofType(out, "acquireSlot")).toEqual([
      { type: "acquireSlot", slot: 1, key: "default/web/slot-1", claim: "d" },
    ]);
  });

  it("retires as surplus when live peers hold every slot", () => {
    let n = 0;
    const r = new WatchdogReplica(identity("z"), {}, { newClaim: () => `c${++n}` }, T0);
    r.start();
    for (const [i, p] of ["a", "b", "c", "d"].entries())
      r.step({ type: "heartbeat", hb: hb(p, { slot: i }), nowMs: T0 });
    const out = r.step({ type: "spec", spec: SPEC, revision: 1, nowMs: T0 });
    expect(ofType(out, "retire")).toEqual([{ type: "retire", reason: "no-slot" }]);
  });
});

describe("watchdog surplus and rollout retirement", () => {
  // Spec: 3 replicas. Members: self + peers; who retires?
  const surplus: {
    name: string;
    self: Partial<WatchdogIdentity>;
    peers: Partial<WatchdogHeartbeat>[];
    retires: boolean;
  }[] = [
    {
      name: "exactly replicas: nobody",
      self: { started_at: 5 },
      peers: [{ started_at: 1 }, { started_at: 2 }],
      retires: false,
    },
    {
      name: "one extra: the newest retires",
      self: { started_at: 5 },
      peers: [{ started_at: 1 }, { started_at: 2 }, { started_at: 3 }],
      retires: true,
    },
    {
      name: "one extra: an older one stays",
      self: { started_at: 2 },
      peers: [{ started_at: 1 }, { started_at: 3 }, { started_at: 5 }],
      retires: false,
    },
    {
      name: "equal start times: the higher name is newer",
      self: { started_at: 1 },
      peers: [{ started_at: 1 }, { started_at: 1 }, { started_at: 1 }],
      retires: true, // self is "m", peers are "a".."c"
    },
    {
      name: "unhealthy peers are not counted",
      self: { started_at: 5 },
      peers: [{ started_at: 1 }, { started_at: 2 }, { started_at: 3, healthy: false }],
      retires: false,
    },
  ];
  it.each(surplus)("$name", ({ self, peers, retires }) => {
    const h = replica("m", { id: self, slot: 3 });
    const beats = peers.map((p, i) => hb(String.fromCharCode(97 + i), { slot: i, ...p }));
    const out = runWithPeers(h, beats, T0 + 100, T0 + 1100);
    expect(ofType(out, "retire").length > 0).toBe(retires);
    if (retires)
      expect(ofType(out, "releaseSlot")).toEqual([expect.objectContaining({ slot: 3, claim: "m" })]);
  });

  const v2: WatchdogSpec = { ...SPEC, generation: 2, template_hash: "v2" };
  const rollout: {
    name: string;
    unavailable: number;
    selfStart: number;
    peers: Partial<WatchdogHeartbeat>[];
    retires: boolean;
  }[] = [
    {
      name: "maxUnavailable 0: the oldest old one waits for a ready new one",
      unavailable: 0,
      selfStart: 1,
      peers: [{ started_at: 2 }, { started_at: 3 }, { template_hash: "v2", ready: false, started_at: 9 }],
      retires: false,
    },
    {
      name: "maxUnavailable 0: the oldest old one goes once a new one is ready",
      unavailable: 0,
      selfStart: 1,
      peers: [{ started_at: 2 }, { started_at: 3 }, { template_hash: "v2", started_at: 9 }],
      retires: true,
    },
    {
      name: "maxUnavailable 0: not the second oldest",
      unavailable: 0,
      selfStart: 2,
      peers: [{ started_at: 1 }, { started_at: 3 }, { template_hash: "v2", started_at: 9 }],
      retires: false,
    },
    {
      name: "maxUnavailable 1: the oldest goes before any new one exists",
      unavailable: 1,
      selfStart: 1,
      peers: [{ started_at: 2 }, { started_at: 3 }],
      retires: true,
    },
  ];
  it.each(rollout)("$name", ({ unavailable, selfStart, peers, retires }) => {
    const h = replica("m", {
      id: { started_at: selfStart },
      slot: 3,
      spec: { ...v2, max_unavailable: unavailable },
    });
    for (let i = 1; i <= 2; i++) h.step({ type: "probe", live: true, ready: true, nowMs: T0 + i });
    const beats = peers.map((p, i) => hb(String.fromCharCode(97 + i), { slot: i, spec_revision: 1, ...p }));
    const out = runWithPeers(h, beats, T0 + 100, T0 + 1100);
    expect(ofType(out, "retire")).toEqual(retires ? [{ type: "retire", reason: "rollout" }] : []);
  });

  it("defers while a peer has seen a newer spec", () => {
    const h = replica("m", { id: { started_at: 5 }, slot: 3 });
    const beats = [1, 2, 3].map((s, i) =>
      hb(String.fromCharCode(97 + i), { slot: i, started_at: s, spec_revision: 2 }),
    );
    expect(ofType(runWithPeers(h, beats, T0 + 100, T0 + 1100), "retire")).toEqual([]);
    // Our KV watch catches up with a spec of 4 replicas: no surplus after all.
    h.step({ type: "spec", spec: { ...SPEC, replicas: 4, generation: 2 }, revision: 2, nowMs: T0 + 1200 });
    expect(ofType(runWithPeers(h, beats, T0 + 1300, T0 + 2300), "retire")).toEqual([]);
  });

  it("a deleted Deployment retires everyone, releasing the slot", () => {
    const h = replica("m", { slot: 3 });
    const out = h.step({ type: "spec", spec: null, revision: 2, nowMs: T0 + 10 });
    expect(ofType(out, "retire")).toEqual([{ type: "retire", reason: "deleted" }]);
    expect(ofType(out, "releaseSlot")).toEqual([expect.objectContaining({ slot: 3 })]);
    expect(ofType(out, "heartbeat")[0]?.hb.retiring).toBe(true);
    expect(h.step({ type: "tick", nowMs: T0 + 5000 })).toEqual([]);
  });
});

describe("watchdog leader cloning", () => {
  it("waits for the startup grace, then asks one slot per missing replica", () => {
    const h = replica("a", { slot: 0 });
    // Spec 3 replicas, only self and b alive: one missing.
    const early = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 100, T0 + 2900);
    expect(ofType(early, "acquireSlot")).toEqual([]);
    const later = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 3000, T0 + 5000);
    expect(ofType(later, "acquireSlot")).toEqual([
      { type: "acquireSlot", slot: 2, key: "default/web/slot-2", claim: "claim-1" },
    ]);
  });

  it("clones on a granted slot, retries a refused one later, and never exceeds replicas + surge", () => {
    const h = replica("a", { slot: 0, spec: { ...SPEC, replicas: 4 } });
    const acquires = ofType(runWithPeers(h, [], T0 + 100, T0 + 3100), "acquireSlot");
    // Alone: 3 missing, slots 1..4 free (bound 5); 3 acquisitions, lowest first.
    expect(acquires.map((a) => a.slot)).toEqual([1, 2, 3]);
    const [one, two, three] = acquires;
    if (one === undefined || two === undefined || three === undefined)
      throw new Error("expected three acquisitions");
    const granted = h.step({
      type: "slotResult",
      op: "acquire",
      slot: 1,
      claim: one.claim,
      outcome: "granted",
      nowMs: T0 + 3110,
    });
    expect(ofType(granted, "clone")).toEqual([
      expect.objectContaining({ slot: 1, claim: one.claim, template_hash: "v1" }),
    ]);
    const afterRefusals = [
      ...h.step({
        type: "slotResult",
        op: "acquire",
        slot: 2,
        claim: two.claim,
        outcome: "denied",
        nowMs: T0 + 3110,
      }),
      ...h.step({
        type: "slotResult",
        op: "acquire",
        slot: 3,
        claim: three.claim,
        outcome: "denied",
        nowMs: T0 + 3110,
      }),
    ];
    // Two still missing: slot 4 at once, slots 2 and 3 only after slotRetryMs.
    const next = ofType(afterRefusals, "acquireSlot");
    expect(next.map((a) => a.slot)).toEqual([4]);
    h.step({
      type: "slotResult",
      op: "acquire",
      slot: 4,
      claim: next[0]?.claim ?? "",
      outcome: "denied",
      nowMs: T0 + 3210,
    });
    expect(ofType(h.step({ type: "tick", nowMs: T0 + 3500 }), "acquireSlot")).toEqual([]);
    expect(ofType(h.step({ type: "tick", nowMs: T0 + 4150 }), "acquireSlot").map((a) => a.slot)).toEqual([
      2, 3,
    ]);
  });

  it("releases a slot granted after the deficit is gone", () => {
    const h = replica("a", { slot: 0 });
    const [acq] = ofType(runWithPeers(h, [hb("b", { slot: 1 })], T0 + 100, T0 + 3100), "acquireSlot");
    h.step({ type: "heartbeat", hb: hb("c", { slot: 5 }), nowMs: T0 + 3105 });
    const out = h.step({
      type: "slotResult",
      op: "acquire",
      slot: 2,
      claim: acq?.claim ?? "",
      outcome: "granted",
      nowMs: T0 + 3110,
    });
    expect(ofType(out, "clone")).toEqual([]);
    expect(ofType(out, "releaseSlot")).toEqual([expect.objectContaining({ slot: 2, claim: acq?.claim })]);
  });

  it("counts a handed-over clone as pending, renews its slot, and gives it up after the grace", () => {
    const h = replica("a", { slot: 0, options: { cloneGraceMs: 10_000 } });
    h.step({ type: "heartbeat", hb: hb("b", { slot: 1 }), nowMs: T0 + 100 });
    // c dies and hands its slot 2 to claim "k9".
    h.step({
      type: "heartbeat",
      hb: hb("c", { retiring: true, healthy: false, pending: [{ slot: 2, claim: "k9", age_ms: 0 }] }),
      nowMs: T0 + 200,
    });
    const out = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 1000, T0 + 9000);
    expect(ofType(out, "acquireSlot")).toEqual([]); // the pending clone fills the gap
    expect(ofType(out, "renewSlot").filter((a) => a.claim === "k9").length).toBeGreaterThanOrEqual(2);
    expect(ofType(out, "heartbeat").at(-1)?.hb.pending).toEqual([
      expect.objectContaining({ slot: 2, claim: "k9" }),
    ]);
    const late = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 10_000, T0 + 11_000);
    expect(ofType(late, "releaseSlot")).toEqual([expect.objectContaining({ slot: 2, claim: "k9" })]);
    expect(ofType(late, "acquireSlot").length).toBe(1);
  });

  it("stops counting a pending clone once a live peer holds its slot", () => {
    const h = replica("a", { slot: 0 });
    h.step({
      type: "heartbeat",
      hb: hb("c", { retiring: true, pending: [{ slot: 2, claim: "k9", age_ms: 0 }] }),
      nowMs: T0 + 10,
    });
    expect(h.r.view(T0 + 10).pending).toEqual([2]);
    runWithPeers(h, [hb("b", { slot: 1 }), hb("n1", { slot: 2 })], T0 + 100, T0 + 600);
    expect(h.r.view(T0 + 600).pending).toEqual([]);
  });

  it("does not clone on a stale spec", () => {
    const h = replica("a", { slot: 0 });
    const out = runWithPeers(h, [hb("b", { slot: 1, spec_revision: 7 })], T0 + 100, T0 + 5000);
    expect(ofType(out, "acquireSlot")).toEqual([]);
  });

  it("a new lower-named leader learns the clones the old leader has in flight", () => {
    const spec = { ...SPEC, replicas: 4 };
    const b = replica("b", { slot: 0, spec });
    const d = hb("d", { slot: 1 });
    const acquired = ofType(runWithPeers(b, [d], T0 + 100, T0 + 3100), "acquireSlot");
    expect(acquired.map((x) => x.slot)).toEqual([2, 3]);
    for (const x of acquired)
      b.step({
        type: "slotResult",
        op: "acquire",
        slot: x.slot,
        claim: x.claim,
        outcome: "granted",
        nowMs: T0 + 3150,
      });
    // The clone of slot 3 starts as "a", the lowest name; the clone of slot 2 is still on its way.
    const a = new WatchdogReplica(
      identity("a", { slot: { index: 3, claim: acquired[1]?.claim ?? "" } }),
      {},
      { newClaim: () => "a-claim" },
      T0 + 3200,
    );
    const fromA: WatchdogAction[] = [...a.start()];
    a.step({ type: "spec", spec, revision: 1, nowMs: T0 + 3200 });
    a.step({ type: "slotResult", op: "transfer", slot: 3, claim: "a", outcome: "granted", nowMs: T0 + 3210 });
    const beats = (xs: WatchdogAction[]) => ofType(xs, "heartbeat").map((x) => ({ ...x.hb, ts: 0 }));
    for (let t = T0 + 3250; t <= T0 + 9000; t += 250) {
      // Each hears the other (and d) at once: b hears a before a hears b's next heartbeat.
      const fromB = [
        ...beats(fromA.splice(0)).flatMap((x) => b.step({ type: "heartbeat", hb: x, nowMs: t })),
      ];
      fromB.push(...b.step({ type: "tick", nowMs: t }));
      for (const x of beats(fromB)) fromA.push(...a.step({ type: "heartbeat", hb: x, nowMs: t }));
      if ((t - T0) % 1000 === 0) {
        fromA.push(...a.step({ type: "heartbeat", hb: d, nowMs: t }));
        b.step({ type: "heartbeat", hb: d, nowMs: t });
      }
      fromA.push(...a.step({ type: "tick", nowMs: t }));
      expect(ofType(fromA, "acquireSlot")).toEqual([]);
    }
    expect(a.view(T0 + 9000).leader).toBe("a");
    expect(a.view(T0 + 9000).pending).toEqual([2]);
  });

  /** Leader "a" (slot 0) beside "b" (slot 1), spec 3: slot 2 granted to claim-1 and cloned at T0+3110. */
  function leaderWithClone(): Harness {
    const h = replica("a", { slot: 0 });
    const [acq] = ofType(runWithPeers(h, [hb("b", { slot: 1 })], T0 + 100, T0 + 3100), "acquireSlot");
    expect(acq).toMatchObject({ slot: 2, claim: "claim-1" });
    const granted = h.step({
      type: "slotResult",
      op: "acquire",
      slot: 2,
      claim: "claim-1",
      outcome: "granted",
      nowMs: T0 + 3110,
    });
    expect(ofType(granted, "clone")).toEqual([expect.objectContaining({ slot: 2, claim: "claim-1" })]);
    return h;
  }

  it("frees the slot of a clone the dispatch record could not serve and tries again after slotRetryMs", () => {
    const h = leaderWithClone();
    const out = h.step({
      type: "cloneUnbuilt",
      slot: 2,
      claim: "claim-1",
      reason: "record-behind",
      nowMs: T0 + 4000,
    });
    expect(ofType(out, "releaseSlot")).toEqual([
      { type: "releaseSlot", slot: 2, key: "default/web/slot-2", claim: "claim-1" },
    ]);
    expect(ofType(out, "acquireSlot")).toEqual([]);
    expect(h.r.view(T0 + 4000).pending).toEqual([]);
    // b passed the clone on in its heartbeats (as followers do) and keeps it until its own grace ends.
    const gossip = hb("b", { slot: 1, pending: [{ slot: 2, claim: "claim-1", age_ms: 900 }] });
    const waiting = runWithPeers(h, [gossip], T0 + 4500, T0 + 4900);
    expect(ofType(waiting, "acquireSlot")).toEqual([]);
    expect(ofType(waiting, "renewSlot").filter((a) => a.claim === "claim-1")).toEqual([]);
    // slotRetryMs (1 s) later: a new claim for the free slot, long before cloneGraceMs (60 s).
    const retry = runWithPeers(h, [gossip], T0 + 5000, T0 + 5500);
    expect(ofType(retry, "acquireSlot")).toEqual([
      { type: "acquireSlot", slot: 2, key: "default/web/slot-2", claim: "claim-2" },
    ]);
    expect(h.r.view(T0 + 5500).pending).toEqual([]);
  });

  it("keeps counting a clone the record did not hold up (no report: the old cloneGraceMs path)", () => {
    const h = leaderWithClone();
    const out = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 4000, T0 + 12_000);
    expect(ofType(out, "acquireSlot")).toEqual([]);
    expect(ofType(out, "releaseSlot")).toEqual([]);
    expect(h.r.view(T0 + 12_000).pending).toEqual([2]);
  });

  it.each([
    ["another claim in the slot", { slot: 2, claim: "claim-9" }],
    ["a slot with no clone pending", { slot: 3, claim: "claim-1" }],
  ])("ignores a report about %s", (_what, report) => {
    const h = leaderWithClone();
    const out = h.step({ type: "cloneUnbuilt", ...report, reason: "record-behind", nowMs: T0 + 4000 });
    expect(ofType(out, "releaseSlot")).toEqual([]);
    expect(h.r.view(T0 + 4000).pending).toEqual([2]);
  });

  it("a report after the clone grace gave the slot up changes nothing", () => {
    const h = replica("a", { slot: 0, options: { cloneGraceMs: 4000 } });
    runWithPeers(h, [hb("b", { slot: 1 })], T0 + 100, T0 + 3100);
    h.step({
      type: "slotResult",
      op: "acquire",
      slot: 2,
      claim: "claim-1",
      outcome: "granted",
      nowMs: T0 + 3110,
    });
    const expired = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 3500, T0 + 7500);
    expect(ofType(expired, "releaseSlot")).toEqual([expect.objectContaining({ slot: 2, claim: "claim-1" })]);
    const late = h.step({
      type: "cloneUnbuilt",
      slot: 2,
      claim: "claim-1",
      reason: "record-behind",
      nowMs: T0 + 7600,
    });
    expect(ofType(late, "releaseSlot")).toEqual([]);
  });

  it("a follower never clones", () => {
    const h = replica("b", { slot: 1 });
    const out = runWithPeers(h, [hb("a", { slot: 0 })], T0 + 100, T0 + 6000);
    expect(ofType(out, "acquireSlot")).toEqual([]);
    expect(ofType(out, "heartbeat").every((a) => a.hb.pending.length === 0)).toBe(true);
  });
});

describe("watchdog pauses (time this replica could not run)", () => {
  // The integration flake behind this: under CPU load the process stalled for
  // longer than the TTL; on waking, each watchdog's tick ran before the queued
  // heartbeats were read, so each found its peers dead, led alone, and took the
  // live replicas' clone slots, which then retired as "slot-lost".
  const peers = [hb("b", { slot: 1 }), hb("c", { slot: 2 })];

  it("does not find its peers dead when it wakes after more than a TTL", () => {
    const h = replica("a", { slot: 0 });
    const before = runWithPeers(h, peers, T0 + 100, T0 + 5100);
    expect(ofType(before, "acquireSlot")).toEqual([]);
    // Stalled 4 s (TTL 3 s): the tick fires first, the heartbeats sent meanwhile come after it.
    const woke = h.step({ type: "tick", nowMs: T0 + 9100 });
    expect(h.r.view(T0 + 9100).live).toEqual(["a", "b", "c"]);
    expect(ofType(woke, "acquireSlot")).toEqual([]);
    const queued = peers.flatMap((p) => h.step({ type: "heartbeat", hb: p, nowMs: T0 + 9100 }));
    expect(ofType(queued, "acquireSlot")).toEqual([]);
  });

  it("still finds a peer that died meanwhile dead, one TTL after waking", () => {
    const h = replica("a", { slot: 0 });
    runWithPeers(h, peers, T0 + 100, T0 + 5100);
    h.step({ type: "tick", nowMs: T0 + 9100 });
    // Only b speaks after the wake-up: c is judged by the time a has been running since.
    const soon = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 9500, T0 + 10_500);
    expect(ofType(soon, "acquireSlot")).toEqual([]);
    const later = runWithPeers(h, [hb("b", { slot: 1 })], T0 + 11_000, T0 + 13_000);
    expect(h.r.view(T0 + 13_000).live).toEqual(["a", "b"]);
    expect(ofType(later, "acquireSlot")).toEqual([
      { type: "acquireSlot", slot: 2, key: "default/web/slot-2", claim: "claim-1" },
    ]);
  });

  it("discounts the lag of its own timers: a starved loop reads heartbeats late", () => {
    // The loop falls 3.5 s behind yet still handles a stale message now and then
    // (so no gap between steps exceeds the interval); then the tick fires 3.5 s
    // late, ahead of the heartbeats queued meanwhile. Its reported lag is credited.
    const run = (lagMs: number | undefined) => {
      const h = replica("a", { slot: 0 });
      runWithPeers(h, peers, T0 + 100, T0 + 5100);
      const other = hb("x", { parent: "other" });
      h.step({ type: "heartbeat", hb: other, nowMs: T0 + 6300 });
      h.step({ type: "heartbeat", hb: other, nowMs: T0 + 7500 });
      const tick = h.step({ type: "tick", nowMs: T0 + 8600, ...(lagMs !== undefined ? { lagMs } : {}) });
      const queued = peers.flatMap((p) => h.step({ type: "heartbeat", hb: p, nowMs: T0 + 8600 }));
      return [...tick, ...queued];
    };
    expect(ofType(run(undefined), "acquireSlot").length).toBeGreaterThan(0); // the lag unreported
    expect(ofType(run(3500), "acquireSlot")).toEqual([]);
  });

  it("reports what it credited, so the driver's slot store can credit the same", () => {
    const h = replica("a", { slot: 0 });
    runWithPeers(h, peers, T0 + 100, T0 + 5100);
    expect(h.r.pausedMs).toBe(0);
    h.step({ type: "tick", nowMs: T0 + 9100 }); // 4 s without a step: 3 s over the interval
    expect(h.r.pausedMs).toBe(2750); // less the quarter interval of timer noise
    h.step({ type: "tick", nowMs: T0 + 9200, lagMs: 3000 }); // the same lag, reported again
    expect(h.r.pausedMs).toBe(2850); // only the 100 ms not credited yet
  });

  it("does not spend the startup grace while it could not run", () => {
    const h = replica("a", { slot: 0 });
    // Paused right after starting, before any heartbeat was read: alone on waking.
    const woke = h.step({ type: "tick", nowMs: T0 + 4000 });
    expect(ofType(woke, "acquireSlot")).toEqual([]);
    const queued = peers.flatMap((p) => h.step({ type: "heartbeat", hb: p, nowMs: T0 + 4000 }));
    expect(ofType(queued, "acquireSlot")).toEqual([]);
    expect(h.r.view(T0 + 4000).live).toEqual(["a", "b", "c"]);
  });
});
