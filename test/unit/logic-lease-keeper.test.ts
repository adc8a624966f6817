// Unit tables for the lease-keeper's pure logic: window, choice, award, renewals,
// expiry and re-award, failures, unschedulable backoff, several keepers racing.
import { fnv1a32, tieBreak } from "../../controllers/scheduler-bidder/logic/hash.js";
import {
  backoffMs,
  bestBid,
  collectReasons,
  LeaseKeeperLogic,
  LeaseKeeperOptionsError,
  parseLeaseKeeperOptions,
  rankBids,
  TaskLeaseMachine,
} from "../../controllers/lease-keeper/logic/index.js";
import type {
  KeeperAction,
  KeeperEvent,
  LeaseBid,
  LeaseTask,
  TaggedAction,
} from "../../controllers/lease-keeper/logic/index.js";

const TASK: LeaseTask = { task_id: "01TASK", priority: 10, attempt: 0 };
const settings = parseLeaseKeeperOptions();
const T0 = 1_000_000;

function bid(node_id: string, score: number, extra: Partial<LeaseBid> = {}): LeaseBid {
  return { task_id: TASK.task_id, node_id, score, fit: true, reasons: [], ...extra };
}

function machine(random = 0.5, expectedBids?: number, task: LeaseTask = TASK): TaskLeaseMachine {
  return new TaskLeaseMachine(task, settings, { random: () => random }, T0, expectedBids);
}

function awards(actions: KeeperAction[]): LeaseBid[] {
  return actions.flatMap((a) => (a.type === "award" ? [a.bid] : []));
}

function events(actions: KeeperAction[]): KeeperEvent[] {
  return actions.flatMap((a) => (a.type === "emit" ? [a.event] : []));
}

function schedules(actions: KeeperAction[]): number[] {
  return actions.flatMap((a) => (a.type === "schedule" ? [a.atMs] : []));
}

/** A machine that has awarded `winner` (revision 7) at T0+300 and holds the lease. */
function leased(bids: LeaseBid[]): TaskLeaseMachine {
  const m = machine();
  for (const b of bids) m.step({ type: "bid", bid: b, nowMs: T0 + 10 });
  m.step({ type: "tick", nowMs: T0 + 300 });
  m.step({ type: "awardResult", result: { ok: true, revision: 7 }, nowMs: T0 + 310 });
  return m;
}

describe("lease-keeper options", () => {
  it("defaults to DESIGN §3 numbers", () => {
    expect(settings).toMatchObject({
      windowMs: 250,
      windowJitterMs: 100,
      leaseTtlMs: 3000,
      unschedulableCapMs: 30_000,
    });
  });

  it.each([{ windowMs: 0 }, { windowJitterMs: 300 }, { reawardCapMs: 10, reawardBaseMs: 100 }])(
    "refuses %j",
    (o) => {
      expect(() => parseLeaseKeeperOptions(o)).toThrow(LeaseKeeperOptionsError);
    },
  );

  it.each([
    [1, 500],
    [2, 1000],
    [3, 2000],
    [7, 30_000],
    [100, 30_000],
  ])("unschedulable retry %i waits %i ms", (n, ms) => {
    expect(backoffMs(n, 500, 30_000)).toBe(ms);
  });
});

describe("bid choice", () => {
  const h = fnv1a32;
  it("highest score first", () => {
    expect(bestBid([bid("a", 500), bid("b", 700), bid("c", 600)], TASK, h)?.node_id).toBe("b");
  });

  it("equal scores: lowest tie-break hash, then node id", () => {
    const tied = ["n1", "n2", "n3", "n4"].map((n) => bid(n, 500));
    const expected = [...tied].sort(
      (a, b) => tieBreak(TASK.task_id, a.node_id) - tieBreak(TASK.task_id, b.node_id),
    )[0];
    expect(bestBid(tied, TASK, h)?.node_id).toBe(expected?.node_id);
    expect(bestBid(tied, TASK, () => 1)?.node_id).toBe("n1");
  });

  it("a fitting bid beats any preempting one", () => {
    const victims = [{ ns: "d", pod: "p", task_id: "V", priority: 0 }];
    expect(bestBid([bid("a", 1000, { fit: false, victims }), bid("b", 1)], TASK, h)?.node_id).toBe("b");
  });

  it("preempts only victims of strictly lower priority, fewest and lowest first", () => {
    const v = (priority: number, n = 1) =>
      Array.from({ length: n }, (_, i) => ({
        ns: "d",
        pod: `p${priority}-${i}`,
        task_id: `V${priority}${i}`,
        priority,
      }));
    const bids = [
      bid("equal", 900, { fit: false, victims: v(10) }),
      bid("two", 800, { fit: false, victims: v(1, 2) }),
      bid("one-high", 700, { fit: false, victims: v(5) }),
      bid("one-low", 100, { fit: false, victims: v(1) }),
    ];
    expect(rankBids(bids, TASK, h).map((b) => b.node_id)).toEqual(["one-low", "two", "one-high"]);
    expect(bestBid([bids[0] as LeaseBid], TASK, h)).toBeNull();
  });

  it("skips excluded nodes and bids for other tasks", () => {
    expect(
      bestBid([bid("a", 900), bid("b", 100), { ...bid("c", 999), task_id: "OTHER" }], TASK, h, new Set(["a"]))
        ?.node_id,
    ).toBe("b");
  });

  it("explains why nothing was usable, per node", () => {
    const reasons = collectReasons(
      [
        bid("b", 0, { fit: false, reasons: ["InsufficientCPU: needs 500m cpu, 100m free"] }),
        bid("a", 0, {
          fit: false,
          victims: [{ ns: "d", pod: "p", task_id: "V", priority: 99 }],
          reasons: ["TooManyPods: x"],
        }),
        bid("c", 0),
      ],
      TASK,
      new Set(["c"]),
    );
    expect(reasons).toEqual([
      "a: preemption refused: a victim's priority is not below 10",
      "a: TooManyPods: x",
      "b: InsufficientCPU: needs 500m cpu, 100m free",
      "c: excluded after a failure or an expired lease",
    ]);
    expect(collectReasons([], TASK, new Set())).toEqual(["no bids received in the selection window"]);
  });
});

describe("selection window", () => {
  it.each([
    [0, 150],
    [0.5, 250],
    [0.999, 350],
  ])("random %f gives a %i ms window", (r, ms) => {
    const m = machine(r);
    expect(schedules(m.start())).toEqual([T0 + ms]);
  });

  it("collects until the deadline, then awards the best bid with a KV create", () => {
    const m = machine();
    expect(awards(m.step({ type: "bid", bid: bid("a", 400), nowMs: T0 + 10 }))).toEqual([]);
    m.step({ type: "bid", bid: bid("b", 800), nowMs: T0 + 20 });
    expect(awards(m.step({ type: "tick", nowMs: T0 + 249 }))).toEqual([]);
    const out = m.step({ type: "tick", nowMs: T0 + 250 });
    expect(out).toContainEqual({ type: "award", bid: bid("b", 800), prevRevision: null });
    expect(schedules(out)).toEqual([]); // waiting for the I/O layer's answer
  });

  it("closes early once every probed node has answered", () => {
    const m = machine(0.5, 3);
    m.step({ type: "bid", bid: bid("a", 1), nowMs: T0 + 1 });
    m.step({ type: "bid", bid: bid("b", 2), nowMs: T0 + 2 });
    m.step({ type: "bid", bid: bid("a", 3), nowMs: T0 + 3 }); // a re-bid replaces, does not count twice
    expect(m.state.kind).toBe("collecting");
    const out = m.step({ type: "bid", bid: bid("c", 3), nowMs: T0 + 4 });
    expect(awards(out).map((b) => b.node_id)).toEqual([
      [bid("a", 3), bid("c", 3)].sort(
        (x, y) => tieBreak(TASK.task_id, x.node_id) - tieBreak(TASK.task_id, y.node_id),
      )[0]?.node_id,
    ]);
  });
});

describe("lease life", () => {
  it("a won award emits leased with the revision as fencing token and watches the TTL", () => {
    const m = machine();
    m.step({ type: "bid", bid: bid("a", 1), nowMs: T0 });
    m.step({ type: "tick", nowMs: T0 + 250 });
    const out = m.step({ type: "awardResult", result: { ok: true, revision: 42 }, nowMs: T0 + 260 });
    expect(events(out)).toEqual([
      {
        status: "leased",
        task_id: TASK.task_id,
        node_id: "a",
        attempt: 0,
        fencing_token: 42,
        dedup_id: `${TASK.task_id}/leased/42`,
      },
    ]);
    expect(schedules(out)).toEqual([T0 + 260 + 3000]);
  });

  it("each new revision (a renewal) resets the expiry timer; stale ones do not", () => {
    const m = leased([bid("a", 9), bid("b", 1)]);
    expect(
      schedules(m.step({ type: "leaseObserved", lease: { winner_id: "a", revision: 8 }, nowMs: T0 + 1300 })),
    ).toEqual([T0 + 4300]);
    expect(
      schedules(m.step({ type: "leaseObserved", lease: { winner_id: "a", revision: 8 }, nowMs: T0 + 2300 })),
    ).toEqual([T0 + 4300]);
    expect(
      schedules(m.step({ type: "leaseObserved", lease: { winner_id: "a", revision: 9 }, nowMs: T0 + 2300 })),
    ).toEqual([T0 + 5300]);
    expect(m.step({ type: "tick", nowMs: T0 + 5299 }).filter((a) => a.type !== "schedule")).toEqual([]);
  });

  it("expiry: emits expired, waits the re-award backoff, awards the next best bid by CAS", () => {
    const m = leased([bid("a", 9), bid("b", 5), bid("c", 1)]);
    const expired = m.step({ type: "tick", nowMs: T0 + 3310 });
    expect(events(expired)).toEqual([
      expect.objectContaining({
        status: "expired",
        node_id: "a",
        fencing_token: 7,
        dedup_id: `${TASK.task_id}/expired/7`,
      }),
    ]);
    expect(schedules(expired)).toEqual([T0 + 3410]); // 100 ms
    expect(awards(m.step({ type: "tick", nowMs: T0 + 3409 }))).toEqual([]);
    expect(m.step({ type: "tick", nowMs: T0 + 3410 })).toContainEqual({
      type: "award",
      bid: bid("b", 5),
      prevRevision: 7,
    });
    const out = m.step({ type: "awardResult", result: { ok: true, revision: 8 }, nowMs: T0 + 3420 });
    expect(events(out)).toEqual([
      expect.objectContaining({ status: "leased", node_id: "b", details: "re-award after a" }),
    ]);
    // b dies too: the backoff doubles, then c.
    expect(schedules(m.step({ type: "tick", nowMs: T0 + 6420 }))).toEqual([T0 + 6620]);
    expect(awards(m.step({ type: "tick", nowMs: T0 + 6620 })).map((x) => x.node_id)).toEqual(["c"]);
  });

  it("a late renewal during the backoff cancels the re-award", () => {
    const m = leased([bid("a", 9), bid("b", 5)]);
    m.step({ type: "tick", nowMs: T0 + 3310 });
    m.step({ type: "leaseObserved", lease: { winner_id: "a", revision: 8 }, nowMs: T0 + 3350 });
    expect(m.state).toMatchObject({ kind: "leased", winner: "a", revision: 8 });
    expect(awards(m.step({ type: "tick", nowMs: T0 + 3410 }))).toEqual([]);
  });

  it("`failed` from the winner re-awards to the next best; from anyone else it is ignored", () => {
    const m = leased([bid("a", 9), bid("b", 5)]);
    m.step({ type: "nodeEvent", status: "failed", node_id: "b", nowMs: T0 + 400 });
    expect(m.state.kind).toBe("leased");
    const out = m.step({ type: "nodeEvent", status: "failed", node_id: "a", nowMs: T0 + 500 });
    expect(events(out)).toEqual([]);
    expect(schedules(out)).toEqual([T0 + 600]);
    expect(m.step({ type: "tick", nowMs: T0 + 600 })).toContainEqual({
      type: "award",
      bid: bid("b", 5),
      prevRevision: 7,
    });
  });

  it("`deployed` from the winner ends the machine", () => {
    const m = leased([bid("a", 9)]);
    m.step({ type: "nodeEvent", status: "deployed", node_id: "a", nowMs: T0 + 900 });
    expect(m.isDone()).toBe(true);
    expect(m.step({ type: "tick", nowMs: T0 + 99_999 })).toEqual([]);
  });

  it("losing the create race follows the winner's lease without emitting", () => {
    const m = machine();
    m.step({ type: "bid", bid: bid("a", 9), nowMs: T0 });
    m.step({ type: "tick", nowMs: T0 + 250 });
    const out = m.step({
      type: "awardResult",
      result: { ok: false, current: { winner_id: "b", revision: 3 } },
      nowMs: T0 + 260,
    });
    expect(events(out)).toEqual([]);
    expect(m.state).toMatchObject({ kind: "leased", winner: "b", revision: 3 });
  });

  it("with every bid used up, republishes the task with attempt + 1", () => {
    const m = leased([bid("a", 9)]);
    m.step({ type: "tick", nowMs: T0 + 3310 });
    const out = m.step({ type: "tick", nowMs: T0 + 3410 });
    expect(out).toContainEqual({ type: "republish", attempt: 1 });
    expect(m.state.kind).toBe("collecting");
    m.step({ type: "bid", bid: bid("a", 9), nowMs: T0 + 3500 }); // a may bid again on the new attempt
    expect(awards(m.step({ type: "tick", nowMs: T0 + 3660 }))).toEqual([bid("a", 9)]);
    expect(m.step({ type: "tick", nowMs: T0 + 3661 })).toEqual([]);
  });
});

describe("unschedulable", () => {
  it("emits the reasons and retries with capped exponential backoff", () => {
    const m = machine();
    m.step({ type: "bid", bid: bid("a", 0, { fit: false, reasons: ["InsufficientCPU: x"] }), nowMs: T0 });
    let now = T0 + 250;
    const first = m.step({ type: "tick", nowMs: now });
    expect(events(first)).toEqual([
      expect.objectContaining({
        status: "unschedulable",
        reasons: ["a: InsufficientCPU: x"],
        attempt: 0,
        details: "retry in 500 ms",
      }),
    ]);
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      const until = (m.state as { untilMs: number }).untilMs;
      waits.push(until - now);
      expect(m.step({ type: "tick", nowMs: until })).toContainEqual({ type: "republish", attempt: i + 1 });
      now = until + 250;
      m.step({ type: "tick", nowMs: now }); // window closes empty again
    }
    expect(waits).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it("a fitting bid arriving during the wait is awarded at once", () => {
    const m = machine();
    m.step({ type: "tick", nowMs: T0 + 250 });
    expect(m.state.kind).toBe("unschedulable");
    expect(awards(m.step({ type: "bid", bid: bid("late", 10), nowMs: T0 + 400 }))).toEqual([bid("late", 10)]);
  });

  it("a preempting bid with a victim of equal priority is not usable", () => {
    const m = machine();
    m.step({
      type: "bid",
      bid: bid("a", 900, { fit: false, victims: [{ ns: "d", pod: "p", task_id: "V", priority: 10 }] }),
      nowMs: T0,
    });
    expect(events(m.step({ type: "tick", nowMs: T0 + 250 }))[0]?.status).toBe("unschedulable");
  });
});

describe("several lease-keepers racing on one KV", () => {
  /** The lease bucket: create refuses an existing key, update needs the last revision. */
  class Kv {
    revision = 0;
    lease: { winner_id: string; revision: number } | null = null;
    write(
      winner: string,
      prev: number | null,
    ):
      | { ok: true; revision: number }
      | { ok: false; current: { winner_id: string; revision: number } | null } {
      const matches = prev === null ? this.lease === null : this.lease?.revision === prev;
      if (!matches) return { ok: false, current: this.lease };
      this.lease = { winner_id: winner, revision: ++this.revision };
      return { ok: true, revision: this.revision };
    }
  }

  it("exactly one award succeeds, every keeper ends up following the same winner, and re-awards once", () => {
    const kv = new Kv();
    const keepers = [0.1, 0.5, 0.9].map((r) => new LeaseKeeperLogic({}, { random: () => r }));
    const emitted: KeeperEvent[] = [];
    const handle = (k: LeaseKeeperLogic, out: TaggedAction[], now: number) => {
      for (const { task_id, action } of out) {
        if (action.type === "emit") emitted.push(action.event);
        if (action.type === "award") {
          const result = kv.write(action.bid.node_id, action.prevRevision);
          handle(k, k.step({ type: "awardResult", task_id, result, nowMs: now }), now);
          if (result.ok)
            for (const other of keepers) {
              handle(
                other,
                other.step({
                  type: "leaseObserved",
                  task_id,
                  lease: { winner_id: action.bid.node_id, revision: result.revision },
                  nowMs: now,
                }),
                now,
              );
            }
        }
      }
    };
    for (const k of keepers) {
      handle(k, k.step({ type: "task", task: TASK, nowMs: T0 }), T0);
      for (const b of [bid("a", 9), bid("b", 5)])
        handle(k, k.step({ type: "bid", bid: b, nowMs: T0 + 5 }), T0 + 5);
    }
    for (let t = T0; t <= T0 + 8000; t += 10) {
      if (t <= T0 + 2000 && (t - T0) % 1000 === 0 && kv.lease !== null && kv.lease.winner_id === "a") {
        // a renews for two seconds, then dies.
        kv.lease = { winner_id: "a", revision: ++kv.revision };
        for (const k of keepers)
          handle(k, k.step({ type: "leaseObserved", task_id: TASK.task_id, lease: kv.lease, nowMs: t }), t);
      }
      for (const k of keepers) handle(k, k.step({ type: "tick", nowMs: t }), t);
    }
    const leasedEvents = emitted.filter((e) => e.status === "leased");
    expect(leasedEvents.map((e) => e.node_id)).toEqual(["a", "b"]);
    expect(new Set(emitted.filter((e) => e.status === "expired").map((e) => e.dedup_id)).size).toBe(1);
    expect(kv.lease?.winner_id).toBe("b");
    for (const k of keepers)
      expect(k.machine(TASK.task_id)?.state).toMatchObject({ kind: "leased", winner: "b" });
  });
});

describe("lease-keeper multiplexer", () => {
  it("buffers bids that overtake their task", () => {
    const k = new LeaseKeeperLogic({}, { random: () => 0.5 }, { orphanBidTtlMs: 1000 });
    expect(k.step({ type: "bid", bid: bid("a", 5), nowMs: T0 })).toEqual([]);
    const out = k.step({ type: "task", task: TASK, expectedBids: 1, nowMs: T0 + 10 });
    expect(out.map((a) => a.action)).toContainEqual({ type: "award", bid: bid("a", 5), prevRevision: null });
  });

  it("drops stale orphans and forgets finished tasks", () => {
    const k = new LeaseKeeperLogic({}, { random: () => 0.5 }, { orphanBidTtlMs: 1000 });
    k.step({ type: "bid", bid: bid("a", 5), nowMs: T0 });
    expect(k.nextWakeMs()).toBe(T0 + 1000);
    k.step({ type: "tick", nowMs: T0 + 1000 });
    k.step({ type: "task", task: TASK, expectedBids: 1, nowMs: T0 + 1010 });
    expect(k.machine(TASK.task_id)?.state.kind).toBe("collecting");
    k.step({ type: "bid", bid: bid("a", 5), nowMs: T0 + 1020 });
    k.step({
      type: "awardResult",
      task_id: TASK.task_id,
      result: { ok: true, revision: 1 },
      nowMs: T0 + 1030,
    });
    k.step({ type: "nodeEvent", task_id: TASK.task_id, status: "deployed", node_id: "a", nowMs: T0 + 1040 });
    expect(k.activeTasks()).toBe(0);
    expect(k.wasFinished(TASK.task_id)).toBe(true);
    expect(k.step({ type: "task", task: { ...TASK, attempt: 1 }, nowMs: T0 + 2000 })).toEqual([]);
  });

  it("follows a republish by another keeper", () => {
    const k = new LeaseKeeperLogic({}, { random: () => 0.5 });
    k.step({ type: "task", task: TASK, nowMs: T0 });
    k.step({ type: "tick", nowMs: T0 + 250 }); // no bids: unschedulable, waiting 500 ms
    k.step({ type: "task", task: { ...TASK, attempt: 1 }, nowMs: T0 + 300 });
    expect(k.machine(TASK.task_id)?.state).toEqual({ kind: "collecting", deadlineMs: T0 + 550 });
    expect(k.machine(TASK.task_id)?.currentAttempt).toBe(1);
  });
});
