// The revival decision as a pure function of the object, its dispatch record,
// the pods' evidence and a clock: sequences over time, with the state carried
// from one step to the next the way the monitor carries it.
import {
  decideRevival,
  initialReviveState,
  parseReviveSettings,
  ReviveSettingsError,
  type NodeVerdict,
  type PodEvidence,
  type ReviveDecision,
  type ReviveRecordView,
  type ReviveState,
  type ReviveTarget,
} from "../../controllers/dispatcher/logic/index.js";

const SETTINGS = { graceMs: 10_000, probeEveryMs: 1000 };

const target = (over: Partial<ReviveTarget> = {}): ReviveTarget => ({
  uid: "uid-1",
  generation: 3,
  replicas: 2,
  templateHash: "h1",
  deleting: false,
  ...over,
});

const record = (over: Partial<ReviveRecordView> = {}): ReviveRecordView => ({
  uid: "uid-1",
  generation: 3,
  template_hash: "h1",
  replicas: 2,
  next: 2,
  ...over,
});

const beating = (...pods: string[]): PodEvidence[] => pods.map((pod) => ({ pod, heartbeat: "fresh" }));
/** Heartbeats stopped; each pod still reported running on its node. */
const silentOn = (...nodes: string[]): PodEvidence[] =>
  nodes.map((node, i) => ({ pod: `web-${i}`, heartbeat: "stale", providerNode: node }));
const nothing: PodEvidence[] = [];

/** Steps the decision through time, keeping the state and the node verdicts. */
class Run {
  state: ReviveState | undefined;
  nodes = new Map<string, NodeVerdict>();
  rec: ReviveRecordView = record();
  tgt: ReviveTarget | undefined = target();
  connected = true;
  readonly revived: Array<{ atMs: number; round: number }> = [];

  constructor(state?: ReviveState) {
    this.state = state;
  }

  at(nowMs: number, pods: readonly PodEvidence[]): ReviveDecision {
    const d = decideRevival(
      this.state,
      { nowMs, connected: this.connected, target: this.tgt, record: this.rec, pods, nodes: this.nodes },
      SETTINGS,
    );
    this.state = d.state;
    if (d.revive) this.revived.push({ atMs: nowMs, round: d.revive.round });
    return d;
  }

  /** The monitor asked these nodes; they answered at `atMs`. */
  answer(atMs: number, gone: boolean, ...nodes: string[]): void {
    for (const n of nodes) this.nodes.set(n, { gone, atMs });
  }

  /** Ticks every 500 ms over [from, to) with the same evidence; returns the verdicts seen. */
  span(from: number, to: number, pods: readonly PodEvidence[]): string[] {
    const seen: string[] = [];
    for (let t = from; t < to; t += 500) seen.push(this.at(t, pods).verdict);
    return seen;
  }
}

describe("revival decision", () => {
  it("all die: probes the nodes their records name, then revives once the grace has passed", () => {
    const r = new Run();
    expect(r.at(0, beating("web-0", "web-1"))).toMatchObject({ verdict: "alive", live: 2, probe: [] });
    // Heartbeats stop; the provider records still say running (the nodes died with their pods).
    const d = r.at(4000, silentOn("node-1", "node-2"));
    expect(d).toMatchObject({ verdict: "unconfirmed", live: 2, probe: ["node-1", "node-2"] });
    r.answer(4100, true, "node-1", "node-2");
    expect(r.at(4500, silentOn("node-1", "node-2"))).toMatchObject({
      verdict: "dead",
      live: 0,
      wakeAtMs: 14_500,
    });
    expect(r.span(5000, 14_500, silentOn("node-1", "node-2")).every((v) => v === "dead")).toBe(true);
    expect(r.revived).toEqual([]);
    expect(r.at(14_500, silentOn("node-1", "node-2"))).toMatchObject({
      verdict: "due",
      revive: { round: 0 },
    });
    // The grace starts over: nothing more while the new round's record is on its way.
    expect(r.span(15_000, 24_500, silentOn("node-1", "node-2")).includes("due")).toBe(false);
    expect(r.revived).toEqual([{ atMs: 14_500, round: 0 }]);
  });

  it("all die and their records are gone: dead at once, revived after the grace", () => {
    const r = new Run();
    r.at(0, beating("web-0"));
    expect(r.at(1000, nothing).verdict).toBe("dead");
    expect(r.at(10_999, nothing).verdict).toBe("dead");
    expect(r.at(11_000, nothing)).toMatchObject({ verdict: "due", revive: { round: 0 } });
  });

  it("one survives: never revives", () => {
    const r = new Run();
    r.at(0, beating("web-0", "web-1"));
    const oneLeft = [...beating("web-1"), ...silentOn("node-1")];
    expect(r.span(500, 60_000, oneLeft).every((v) => v === "alive")).toBe(true);
    expect(r.revived).toEqual([]);
  });

  it("heartbeats resume during the grace: nothing, and a later death waits a whole grace again", () => {
    const r = new Run();
    r.at(0, beating("web-0"));
    expect(r.at(1000, nothing).verdict).toBe("dead");
    expect(r.at(9000, beating("web-0")).verdict).toBe("alive");
    expect(r.at(11_000, nothing).verdict).toBe("dead");
    expect(r.span(11_500, 21_000, nothing).includes("due")).toBe(false);
    expect(r.at(21_000, nothing).verdict).toBe("due");
    expect(r.revived).toEqual([{ atMs: 21_000, round: 0 }]);
  });

  it("a pod whose sidecar went quiet on a node that still answers counts as live", () => {
    const r = new Run();
    r.at(0, beating("web-0"));
    expect(r.at(4000, silentOn("node-1"))).toMatchObject({ verdict: "unconfirmed", probe: ["node-1"] });
    r.answer(4100, false, "node-1");
    expect(r.at(4500, silentOn("node-1"))).toMatchObject({ verdict: "alive", live: 1, probe: [] });
    // The answer ages: the node is asked again, and counts as there meanwhile.
    expect(r.at(5200, silentOn("node-1"))).toMatchObject({ verdict: "unconfirmed", probe: ["node-1"] });
    r.answer(5300, false, "node-1");
    for (let t = 5500; t < 40_000; t += 500) {
      if (r.at(t, silentOn("node-1")).probe.length > 0) r.answer(t + 50, false, "node-1");
    }
    expect(r.revived).toEqual([]);
    // Then the node goes: dead, and the grace runs from there.
    r.answer(40_000, true, "node-1");
    expect(r.at(40_100, silentOn("node-1")).verdict).toBe("dead");
    expect(r.at(50_100, silentOn("node-1")).verdict).toBe("due");
  });

  it("a gone node's verdict is asked again after it ages, and a node that is back counts again", () => {
    const r = new Run();
    r.at(0, beating("web-0"));
    r.answer(500, true, "node-1");
    expect(r.at(1000, silentOn("node-1"))).toMatchObject({ verdict: "dead", probe: [] });
    expect(r.at(1600, silentOn("node-1"))).toMatchObject({ verdict: "dead", probe: ["node-1"] });
    r.answer(1700, false, "node-1");
    expect(r.at(2000, silentOn("node-1"))).toMatchObject({ verdict: "alive", live: 1 });
  });

  it("a dispatcher restarted mid-grace waits a whole grace from its start, and revives once", () => {
    const before = new Run();
    before.at(0, beating("web-0", "web-1"));
    expect(before.at(1000, nothing).verdict).toBe("dead");
    expect(before.at(6000, nothing).verdict).toBe("dead");
    // The process restarts at 6 s (monotonic clocks of the new process start anywhere).
    const after = new Run(initialReviveState(record(), true));
    expect(after.at(100_000, nothing).verdict).toBe("dead");
    expect(after.span(100_500, 110_000, nothing).includes("due")).toBe(false);
    expect(after.at(110_000, nothing)).toMatchObject({ verdict: "due", revive: { round: 0 } });
    expect(after.span(110_500, 119_500, nothing).includes("due")).toBe(false);
    expect(after.revived).toHaveLength(1);
  });

  it("a record that appears while the dispatcher runs waits for a sign of life: pending Tasks are not republished", () => {
    const r = new Run(initialReviveState(record(), false));
    expect(r.span(0, 120_000, nothing).every((v) => v === "waiting")).toBe(true);
    // A starting pod reported by its node is life: from then on a death is revived.
    expect(r.at(120_000, [{ pod: "web-0", heartbeat: "none", providerNode: "node-1" }]).verdict).toBe(
      "unconfirmed",
    );
    r.answer(120_100, true, "node-1");
    expect(r.at(120_500, [{ pod: "web-0", heartbeat: "none", providerNode: "node-1" }]).verdict).toBe("dead");
    expect(r.at(130_500, nothing).verdict).toBe("due");
  });

  it("after a round is recorded (by anyone) it waits for that round's pods before another", () => {
    const r = new Run();
    r.at(0, beating("web-0"));
    r.at(1000, nothing);
    expect(r.at(11_000, nothing).revive).toEqual({ round: 0 });
    r.rec = record({ revival: { round: 1, count: 2, next: 2 } });
    expect(r.span(11_500, 60_000, nothing).every((v) => v === "waiting")).toBe(true);
    r.at(60_000, beating("web-x"));
    r.at(61_000, nothing);
    expect(r.at(71_000, nothing)).toMatchObject({ verdict: "due", revive: { round: 1 } });
  });

  it("an unfinished round (its publisher died) is armed: due after the grace, for that same round", () => {
    const r = new Run();
    r.at(0, beating("web-0"));
    r.rec = record({ revival: { round: 4, count: 2, next: 1 } });
    expect(r.at(1000, nothing).verdict).toBe("dead");
    expect(r.at(11_000, nothing)).toMatchObject({ verdict: "due", revive: { round: 4 } });
  });

  it("disconnected: judges nothing, and the grace starts over once connected", () => {
    const r = new Run();
    r.at(0, beating("web-0"));
    expect(r.at(1000, nothing).verdict).toBe("dead");
    r.connected = false;
    expect(r.span(1500, 30_000, nothing).every((v) => v === "disconnected")).toBe(true);
    r.connected = true;
    expect(r.at(30_000, nothing).verdict).toBe("dead");
    expect(r.at(39_500, nothing).verdict).toBe("dead");
    expect(r.at(40_000, nothing).verdict).toBe("due");
  });

  it.each<[string, Partial<ReviveTarget> | undefined, Partial<ReviveRecordView>]>([
    ["scaled to zero", { replicas: 0 }, { replicas: 0 }],
    ["being deleted", { deleting: true }, {}],
    ["the object is gone", undefined, {}],
    ["the record is of an older generation", { generation: 4 }, {}],
    ["the record is of another object", {}, { uid: "uid-0" }],
    ["the record is at another template", {}, { template_hash: "h0" }],
    ["the fan-out is not finished", {}, { next: 1 }],
  ])("ineligible when %s", (_, tgt, rec) => {
    const r = new Run();
    r.at(0, beating("web-0"));
    r.tgt = tgt === undefined ? undefined : target(tgt);
    r.rec = record(rec);
    expect(r.span(1000, 60_000, nothing).every((v) => v === "ineligible")).toBe(true);
    expect(r.revived).toEqual([]);
  });

  it("no record: no state", () => {
    const d = decideRevival(
      undefined,
      { nowMs: 0, connected: true, target: target(), record: undefined, pods: nothing, nodes: new Map() },
      SETTINGS,
    );
    expect(d).toEqual({ state: undefined, verdict: "ineligible", live: 0, probe: [] });
  });

  it("settings: defaults, and refuses what is not positive", () => {
    expect(parseReviveSettings()).toEqual({ graceMs: 10_000, probeEveryMs: 1000 });
    expect(parseReviveSettings({ graceMs: 2000 })).toEqual({ graceMs: 2000, probeEveryMs: 1000 });
    expect(() => parseReviveSettings({ graceMs: 0 })).toThrow(ReviveSettingsError);
    expect(() => parseReviveSettings({ probeEveryMs: Number.NaN })).toThrow(ReviveSettingsError);
  });
});
