// Whether the dispatcher must start a Deployment again because every replica
// is gone (DESIGN §4 leaves healing to the watchdogs; when none is left,
// nobody else would). Pure: the object, its dispatch record, what the mesh
// last said about its pods and a monotonic clock in; a decision out.
//
// A pod is live while its watchdog heartbeats (fresh, not a farewell), or
// while a node reports it starting or running and that node was not found
// gone (it did not answer a request). Heartbeats alone would judge a pod
// whose sidecar is stuck as dead; provider records alone keep a lost node's
// pods for the bucket TTL (60 s). A Deployment with replicas > 0, fully
// dispatched at its current generation and template, with no live pod for
// `graceMs`, gets its Tasks again under the next revival round.
//
// Armed: a revival needs a sign of life since the record's epoch (uid,
// generation, revival round) began, so Tasks still waiting for a node
// (unschedulable) are not published again and again. A dispatcher that starts
// and finds the record already there arms it (it cannot know what it missed),
// as does an unfinished revival (its publisher may have died): at most one
// extra round per dispatcher start.

export interface ReviveSettings {
  /** No live replica for this long before the Tasks go out again (default 10 s: a few watchdog TTLs). */
  graceMs: number;
  /** A node's answer counts this long; a pod on it is asked about again after that (default 1 s). */
  probeEveryMs: number;
}

const DEFAULT_REVIVE_SETTINGS: ReviveSettings = { graceMs: 10_000, probeEveryMs: 1000 };

export class ReviveSettingsError extends Error {
  override readonly name = "ReviveSettingsError";
  constructor(message: string) {
    super(`dispatcher-revive: ${message}`);
  }
}

export function parseReviveSettings(o: Partial<ReviveSettings> = {}): ReviveSettings {
  const s: ReviveSettings = {
    graceMs: o.graceMs ?? DEFAULT_REVIVE_SETTINGS.graceMs,
    probeEveryMs: o.probeEveryMs ?? DEFAULT_REVIVE_SETTINGS.probeEveryMs,
  };
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isFinite(v) || v <= 0)
      throw new ReviveSettingsError(`${k} must be a positive number, got ${v}`);
  }
  return s;
}

/** The object as the dispatcher last saw it. */
export interface ReviveTarget {
  uid: string;
  generation: number;
  replicas: number;
  templateHash: string;
  deleting: boolean;
}

/** A revival in the dispatch record: round `round` publishes `count` Tasks, [0, next) done. */
export interface RevivalProgress {
  round: number;
  count: number;
  next: number;
}

/** The part of the dispatch record the decision needs. */
export interface ReviveRecordView {
  uid: string;
  generation: number;
  template_hash: string;
  replicas: number;
  next: number;
  revival?: RevivalProgress;
}

/** One pod as the mesh last reported it. */
export interface PodEvidence {
  pod: string;
  /** fresh: a heartbeat younger than the watchdog TTL that is not a farewell. */
  heartbeat: "fresh" | "stale" | "none";
  /** The node of a fresh provider record that says starting or running; absent otherwise. */
  providerNode?: string;
}

/** What a node's answer (or its silence) said, and when (monotonic ms). */
export interface NodeVerdict {
  gone: boolean;
  atMs: number;
}

export interface ReviveInputs {
  nowMs: number;
  /** The dispatcher's NATS connection is up (otherwise every heartbeat looks stale). */
  connected: boolean;
  target: ReviveTarget | undefined;
  record: ReviveRecordView | undefined;
  pods: readonly PodEvidence[];
  nodes: ReadonlyMap<string, NodeVerdict>;
}

export interface ReviveState {
  /** uid/generation/round of the record this state is about. */
  epoch: string;
  armed: boolean;
  deadSinceMs: number | null;
}

export type ReviveVerdict =
  /** Nothing to do for this object (no replicas wanted, not dispatched yet, being deleted...). */
  | "ineligible"
  | "disconnected"
  | "alive"
  /** Only nodes' provider records speak for its pods, and some of those nodes are being asked. */
  | "unconfirmed"
  /** No live pod, but none seen since the last Tasks went out: they may still be waiting for a node. */
  | "waiting"
  | "dead"
  /** Dead for the grace period: publish. */
  | "due";

export interface ReviveDecision {
  state: ReviveState | undefined;
  verdict: ReviveVerdict;
  live: number;
  /** Nodes to ask whether they are still there. */
  probe: string[];
  /** Publish the Tasks again; `round` is the record's current round (0: none yet). */
  revive?: { round: number };
  /** When the grace of a dead Deployment ends. */
  wakeAtMs?: number;
}

function epochOf(r: Pick<ReviveRecordView, "uid" | "generation" | "revival">): string {
  return `${r.uid}/${r.generation}/${r.revival?.round ?? 0}`;
}

export function revivalUnfinished(r: Pick<ReviveRecordView, "revival">): boolean {
  return r.revival !== undefined && r.revival.next < r.revival.count;
}

/**
 * The state for a record first seen. `existedAtStart`: it was there when this
 * dispatcher began watching (armed, see the header).
 */
export function initialReviveState(record: ReviveRecordView, existedAtStart: boolean): ReviveState {
  return { epoch: epochOf(record), armed: existedAtStart || revivalUnfinished(record), deadSinceMs: null };
}

/** The record is the complete fan-out of the object as it stands now, which is what a revival republishes. */
export function revivalEligible(t: ReviveTarget | undefined, r: ReviveRecordView): t is ReviveTarget {
  return (
    t !== undefined &&
    !t.deleting &&
    t.replicas > 0 &&
    r.uid === t.uid &&
    r.generation === t.generation &&
    r.template_hash === t.templateHash &&
    r.replicas === t.replicas &&
    r.next >= r.replicas
  );
}

export function decideRevival(
  previous: ReviveState | undefined,
  input: ReviveInputs,
  settings: ReviveSettings,
): ReviveDecision {
  const { record, nowMs } = input;
  if (record === undefined) return { state: undefined, verdict: "ineligible", live: 0, probe: [] };
  const epoch = epochOf(record);
  const state: ReviveState =
    previous === undefined || previous.epoch !== epoch
      ? { epoch, armed: revivalUnfinished(record), deadSinceMs: null }
      : { ...previous };
  const quiet = (verdict: ReviveVerdict, live = 0, probe: string[] = []): ReviveDecision => {
    state.deadSinceMs = null;
    return { state, verdict, live, probe };
  };
  if (!revivalEligible(input.target, record)) return quiet("ineligible");
  // Disconnected, every heartbeat looks stale: judge nothing until the feeds run again.
  if (!input.connected) return quiet("disconnected");

  const beating = input.pods.filter((p) => p.heartbeat === "fresh").length;
  if (beating > 0) {
    state.armed = true;
    return quiet("alive", beating);
  }
  const verdictOf = (node: string) => input.nodes.get(node);
  const stale = (node: string) => {
    const v = verdictOf(node);
    return v === undefined || nowMs - v.atMs >= settings.probeEveryMs;
  };
  const reported = input.pods.filter((p) => p.providerNode !== undefined);
  // A node not asked yet counts as there: only its silence is evidence.
  const running = reported.filter((p) => verdictOf(p.providerNode!)?.gone !== true);
  const probe = [...new Set(reported.map((p) => p.providerNode!).filter(stale))].sort();
  if (running.length > 0) {
    state.armed = true;
    const unconfirmed = running.some((p) => stale(p.providerNode!));
    return quiet(unconfirmed ? "unconfirmed" : "alive", running.length, probe);
  }
  if (!state.armed) return quiet("waiting", 0, probe);
  state.deadSinceMs ??= nowMs;
  const dueAtMs = state.deadSinceMs + settings.graceMs;
  if (nowMs < dueAtMs) return { state, verdict: "dead", live: 0, probe, wakeAtMs: dueAtMs };
  // The grace starts over: the new round's record (or a failed attempt) shows up well within it.
  state.deadSinceMs = nowMs;
  return {
    state,
    verdict: "due",
    live: 0,
    probe,
    revive: { round: record.revival?.round ?? 0 },
    wakeAtMs: nowMs + settings.graceMs,
  };
}
