// One watchdog replica as a pure state machine (DESIGN §4): inputs in,
// actions out, time only as the nowMs passed in (a local monotonic clock;
// only differences of it are used, so its origin does not matter).
//
// Every replica decides for itself, from what it has heard:
// - live peers: heartbeat received less than TTL ago on the local clock, healthy, not retiring;
// - leader: the lowest pod name among live peers and itself (no election);
// - the leader clones, one clone per missing replica, each behind a clone slot (README.md);
// - surplus and rollout retirement: a replica retires itself when it ranks among
//   the ones to go (newest first for surplus, oldest old-template first for a rollout);
// - a dying replica hands its slot to its replacement and retires at once;
// - time this replica ran behind its own schedule (a tick later than it asked
//   for, a gap between steps longer than the interval the driver promises) is
//   not counted against its peers (pause credit, a local-health awareness).
import { defaultSlotPrefix, effectiveStrategy, parseWatchdogOptions, slotKey } from "./options.js";
import type { WatchdogOptions, WatchdogSettings } from "./options.js";
import type {
  CloneUnbuiltReason,
  PendingClone,
  RetireReason,
  SlotOp,
  SlotOutcome,
  WatchdogAction,
  WatchdogHeartbeat,
  WatchdogIdentity,
  WatchdogInput,
  WatchdogSpec,
} from "./types.js";

export interface WatchdogDeps {
  /** A fresh unique claim (the clone's task id, a ULID in production). */
  newClaim: () => string;
}

/** A member as this replica sees it. */
export interface Member {
  pod: string;
  template_hash: string;
  ready: boolean;
  started_at: number;
  slot: number | null;
}

export interface ReplicaView {
  phase: Phase;
  healthy: boolean;
  ready: boolean;
  leader: string | null;
  live: string[];
  ownSlot: number | null;
  pending: number[];
  spec: WatchdogSpec | null | undefined;
}

type Phase = "running" | "handingOff" | "retired";

type OwnSlot =
  | { kind: "none" }
  | {
      kind: "seeking";
      /** Indices the store refused since the last full round. */
      refused: Set<number>;
      inflight: { index: number; claim: string; sentMs: number } | null;
      retryAtMs: number;
    }
  | {
      /** Handed a slot by a clone Task: moving it from the task's claim to our pod name. */
      kind: "adopting";
      index: number;
      from: string;
      sentMs: number | null;
      retryAtMs: number;
    }
  | {
      kind: "held";
      index: number;
      claim: string;
      lastOkSentMs: number;
      renewSentMs: number | null;
      nextRenewMs: number;
    };

interface PeerEntry {
  hb: WatchdogHeartbeat;
  receivedMs: number;
}

interface PendingEntry {
  claim: string;
  firstSeenMs: number;
}

/** Newest first: later start, then higher name (a fixed, shared order). */
export function newestFirst(a: Member, b: Member): number {
  if (a.started_at !== b.started_at) return b.started_at - a.started_at;
  return a.pod < b.pod ? 1 : a.pod > b.pod ? -1 : 0;
}

export function oldestFirst(a: Member, b: Member): number {
  return -newestFirst(a, b);
}

export class WatchdogReplica {
  private readonly s: WatchdogSettings;
  private readonly id: WatchdogIdentity;
  private readonly slotPrefix: string;
  private readonly startedMs: number;
  /** No cloning before this (the startup grace, moved on by pauses). */
  private graceEndsMs: number;
  /** The newest input's time, for the pause credit. */
  private lastStepMs: number;
  private creditedMs = 0;
  /** Lateness up to here is already credited. */
  private creditedUntilMs = -Infinity;
  private phase: Phase = "running";
  private spec: WatchdogSpec | null | undefined = undefined;
  private specRevision = 0;
  /** Newest spec revision a peer reported, and when we heard it. */
  private newerSpecHint: { revision: number; receivedMs: number } | null = null;
  private healthy = true;
  private ready = false;
  private liveFailures = 0;
  private readyStreak = 0;
  private unreadyStreak = 0;
  private own: OwnSlot = { kind: "none" };
  private readonly peers = new Map<string, PeerEntry>();
  private readonly pending = new Map<number, PendingEntry>();
  private readonly acquiring = new Map<number, string>();
  private readonly refusedUntil = new Map<number, number>();
  /**
   * Claims of clones this leader gave up before publishing them, until their
   * copies in peers' pending lists have expired: merging them back from the
   * peers' heartbeats would count a clone that will never come.
   */
  private readonly abandoned = new Map<string, number>();
  /** No new clone before this: the last one could not be built from the dispatch record. */
  private cloneRetryAtMs = -Infinity;
  private handoff: { index: number; claim: string; reason: RetireReason } | null = null;
  private nextHeartbeatMs: number;
  private nextPendingRenewMs: number;

  constructor(
    identity: WatchdogIdentity,
    options: WatchdogOptions,
    private readonly deps: WatchdogDeps,
    nowMs: number,
    slotPrefix?: string,
  ) {
    this.s = parseWatchdogOptions(options);
    this.id = { ...identity };
    this.slotPrefix = slotPrefix ?? defaultSlotPrefix(identity.ns, identity.parent);
    this.startedMs = nowMs;
    this.graceEndsMs = nowMs + this.s.startupGraceMs;
    this.lastStepMs = nowMs;
    this.nextHeartbeatMs = nowMs;
    this.nextPendingRenewMs = nowMs;
    if (identity.slot !== undefined) {
      // The clone Task (or the dispatcher) handed us a slot. We hold it under our
      // own pod name, so a leader that gave up on the task's claim cannot release it.
      this.own = {
        kind: "adopting",
        index: identity.slot.index,
        from: identity.slot.claim,
        sentMs: null,
        retryAtMs: nowMs,
      };
    }
  }

  get pod(): string {
    return this.id.pod;
  }

  isRetired(): boolean {
    return this.phase === "retired";
  }

  /** First actions: a heartbeat and the confirmation of a handed-over slot. */
  start(): WatchdogAction[] {
    return this.step({ type: "tick", nowMs: this.startedMs });
  }

  /**
   * The next heartbeat or slot renewal. Other deadlines (peer TTLs, slot retries,
   * the startup grace, the clone grace) are judged on whatever tick comes first,
   * so the driver must also tick at least once per interval.
   */
  nextWakeMs(): number | null {
    if (this.phase === "retired") return null;
    let next = this.nextHeartbeatMs;
    // A renewal still awaiting its answer cannot be sent again yet: asking for a
    // wake at its (past) due time would make the driver spin until the answer.
    if (this.own.kind === "held" && this.own.renewSentMs === null)
      next = Math.min(next, this.own.nextRenewMs);
    if (this.own.kind === "adopting" && this.own.sentMs === null) next = Math.min(next, this.own.retryAtMs);
    return next;
  }

  step(input: WatchdogInput): WatchdogAction[] {
    if (this.phase === "retired") return [];
    const out: WatchdogAction[] = [];
    const now = input.nowMs;
    this.creditPause(input);
    switch (input.type) {
      case "tick":
        break;
      case "heartbeat":
        this.onHeartbeat(input.hb, now);
        break;
      case "spec":
        if (input.revision >= this.specRevision) {
          this.spec = input.spec === null ? null : { ...input.spec };
          this.specRevision = input.revision;
        }
        break;
      case "probe":
        this.onProbe(input.live, input.ready, now, out);
        break;
      case "appDied":
        this.beginHandoff("app-died", now, out);
        break;
      case "slotResult":
        this.onSlotResult(input.op, input.slot, input.claim, input.outcome, now, out);
        break;
      case "cloneUnbuilt":
        this.onCloneUnbuilt(input.slot, input.claim, input.reason, now, out);
        break;
    }
    this.reconcile(now, out);
    return out;
  }

  /** What this replica currently believes (for tests, the simulator and status pages). */
  view(nowMs: number): ReplicaView {
    const live = this.members(nowMs).map((m) => m.pod);
    return {
      phase: this.phase,
      healthy: this.healthy,
      ready: this.ready,
      leader: this.leader(nowMs),
      live: live.sort(),
      ownSlot: this.ownSlotIndex(),
      pending: [...this.pending.keys()].sort((a, b) => a - b),
      spec: this.spec,
    };
  }

  // ---- inputs ----

  /**
   * Time credited so far as pauses (see creditPause); the driver credits its
   * slot store with the same amounts, so both judge expiry alike.
   */
  get pausedMs(): number {
    return this.creditedMs;
  }

  /**
   * Time this process ran behind its own schedule does not count against its
   * peers. Evidence: no step for longer than the interval the driver promises
   * to tick at (the process could not run: GC, a frozen container), or a tick
   * whose timer fired late (event-loop lag: CPU starvation or throttling).
   * Heartbeats sent meanwhile sit unread; counting that time would make a
   * replica waking from a pause find everyone dead, lead alone and clone over
   * live replicas (its slot store would judge their slots expired too).
   * Lateness within a quarter interval is timer noise. Its own slot is not
   * credited: the store's TTL ran on for everyone else.
   */
  private creditPause(input: WatchdogInput): void {
    const now = input.nowMs;
    const behindMs = Math.max(
      now - (this.lastStepMs + this.s.intervalMs),
      input.type === "tick" ? (input.lagMs ?? 0) : 0,
    );
    const fromMs = Math.max(now - behindMs + this.s.intervalMs / 4, this.creditedUntilMs);
    const pausedMs = now - fromMs;
    this.lastStepMs = Math.max(this.lastStepMs, now);
    if (!(pausedMs > 0)) return;
    this.creditedUntilMs = now;
    this.creditedMs += pausedMs;
    for (const e of this.peers.values()) e.receivedMs += pausedMs;
    for (const p of this.pending.values()) p.firstSeenMs += pausedMs;
    for (const [claim, untilMs] of this.abandoned) this.abandoned.set(claim, untilMs + pausedMs);
    if (this.newerSpecHint !== null) this.newerSpecHint.receivedMs += pausedMs;
    this.graceEndsMs += pausedMs;
  }

  private onHeartbeat(hb: WatchdogHeartbeat, now: number): void {
    if (hb.ns !== this.id.ns || hb.parent !== this.id.parent || hb.pod === this.id.pod) return;
    if (hb.spec_revision > this.specRevision) {
      this.newerSpecHint = { revision: hb.spec_revision, receivedMs: now };
    }
    if (hb.retiring) this.peers.delete(hb.pod);
    else this.peers.set(hb.pod, { hb, receivedMs: now });
    for (const p of hb.pending) this.mergePending(p, now);
  }

  private mergePending(p: PendingClone, now: number): void {
    if (this.ownSlotIndex() === p.slot || this.abandoned.has(p.claim)) return;
    const firstSeenMs = now - Math.max(0, p.age_ms);
    const known = this.pending.get(p.slot);
    if (known === undefined || (known.claim !== p.claim && firstSeenMs > known.firstSeenMs)) {
      this.pending.set(p.slot, { claim: p.claim, firstSeenMs });
    }
  }

  private onProbe(live: boolean, ready: boolean, now: number, out: WatchdogAction[]): void {
    // Hysteresis: a state flips only after a run of agreeing probes, so a
    // flapping app neither churns replicas nor flips readiness back and forth.
    this.liveFailures = live ? 0 : this.liveFailures + 1;
    if (ready) {
      this.readyStreak += 1;
      this.unreadyStreak = 0;
    } else {
      this.unreadyStreak += 1;
      this.readyStreak = 0;
    }
    if (!this.ready && this.readyStreak >= this.s.successThreshold) this.ready = true;
    if (this.ready && this.unreadyStreak >= this.s.failureThreshold) this.ready = false;
    if (this.healthy && this.liveFailures >= this.s.failureThreshold) {
      this.healthy = false;
      this.beginHandoff("unhealthy", now, out);
    }
  }

  private onSlotResult(
    op: SlotOp,
    index: number,
    claim: string,
    outcome: SlotOutcome,
    now: number,
    out: WatchdogAction[],
  ): void {
    const adopting = this.own;
    if (
      op === "transfer" &&
      adopting.kind === "adopting" &&
      adopting.index === index &&
      claim === this.id.pod
    ) {
      const sentMs = adopting.sentMs ?? now;
      adopting.sentMs = null;
      if (outcome === "granted") {
        this.own = {
          kind: "held",
          index,
          claim: this.id.pod,
          lastOkSentMs: sentMs,
          renewSentMs: null,
          nextRenewMs: now + this.s.slotRenewMs,
        };
      } else if (outcome === "denied") {
        out.push({ type: "log", level: "warn", msg: `slot ${index} was given to another clone; retiring` });
        this.own = { kind: "none" };
        this.retireNow("slot-lost", now, out, false);
      } else {
        adopting.retryAtMs = now + this.s.slotRetryMs;
      }
      return;
    }
    if (op === "transfer") {
      const h = this.handoff;
      if (this.phase !== "handingOff" || h === null || h.index !== index || h.claim !== claim) return;
      if (outcome === "granted") {
        this.own = { kind: "none" }; // it is the replacement's now
        this.pending.set(index, { claim, firstSeenMs: now });
        out.push(this.cloneAction(index, claim));
        out.push({ type: "log", level: "info", msg: `handed slot ${index} to clone ${claim}` });
      }
      this.retireNow(h.reason, now, out, outcome !== "granted" && outcome !== "denied");
      return;
    }
    const own = this.own;
    if (
      op === "acquire" &&
      own.kind === "seeking" &&
      own.inflight?.index === index &&
      own.inflight.claim === claim
    ) {
      const sentMs = own.inflight.sentMs;
      own.inflight = null;
      if (outcome === "granted") {
        this.own = {
          kind: "held",
          index,
          claim,
          lastOkSentMs: sentMs,
          renewSentMs: null,
          nextRenewMs: now + this.s.slotRenewMs,
        };
      } else if (outcome === "denied") {
        own.refused.add(index);
      } else {
        own.retryAtMs = now + this.s.slotRetryMs;
      }
      return;
    }
    if (op === "acquire" && this.acquiring.get(index) === claim) {
      this.acquiring.delete(index);
      if (outcome !== "granted") {
        this.refusedUntil.set(index, now + this.s.slotRetryMs);
        return;
      }
      if (this.phase === "running" && this.leader(now) === this.id.pod && this.clonesWanted(now) > 0) {
        this.pending.set(index, { claim, firstSeenMs: now });
        out.push(this.cloneAction(index, claim));
        out.push({ type: "log", level: "info", msg: `clone ${claim} in slot ${index}` });
      } else {
        out.push({ type: "releaseSlot", slot: index, key: this.key(index), claim });
      }
      return;
    }
    if (op === "renew" && own.kind === "held" && own.index === index && own.claim === claim) {
      const sentMs = own.renewSentMs ?? now;
      own.renewSentMs = null;
      if (outcome === "granted") {
        own.lastOkSentMs = Math.max(own.lastOkSentMs, sentMs);
      } else if (outcome === "denied") {
        // Someone else holds our slot: we were presumed dead and replaced.
        out.push({ type: "log", level: "warn", msg: `slot ${index} is held by another claim; retiring` });
        this.own = { kind: "none" };
        this.retireNow("slot-lost", now, out, false);
      } else {
        out.push({ type: "log", level: "warn", msg: `slot ${index} renewal: store unreachable` });
      }
      return;
    }
    if (op === "renew" && outcome === "denied") {
      const p = this.pending.get(index);
      if (p !== undefined && p.claim === claim) this.pending.delete(index);
    }
  }

  /**
   * A clone of ours that was never published (its slot is still held, renewed
   * by us): free the slot now and try again after slotRetryMs, instead of
   * counting it as in flight for the whole cloneGraceMs.
   */
  private onCloneUnbuilt(
    index: number,
    claim: string,
    reason: CloneUnbuiltReason,
    now: number,
    out: WatchdogAction[],
  ): void {
    const p = this.pending.get(index);
    if (p === undefined || p.claim !== claim) return; // given up already, or the slot moved on
    this.pending.delete(index);
    // Peers learned the claim from our heartbeats and keep it until their grace ends.
    this.abandoned.set(claim, now + this.s.cloneGraceMs + this.ttlMs());
    this.cloneRetryAtMs = Math.max(this.cloneRetryAtMs, now + this.s.slotRetryMs);
    out.push({ type: "releaseSlot", slot: index, key: this.key(index), claim });
    out.push({
      type: "log",
      level: "warn",
      msg: `clone ${claim} not published (${reason}); slot ${index} released, retrying in ${this.s.slotRetryMs} ms`,
    });
  }

  // ---- reconcile ----

  private reconcile(now: number, out: WatchdogAction[]): void {
    if (this.phase === "retired") return;
    if (this.phase === "running") {
      this.prune(now, out);
      if (this.spec === null) {
        this.retireNow("deleted", now, out, true);
        return;
      }
      this.maintainOwnSlot(now, out);
      if (this.phase !== "running") return;
      if (this.spec !== undefined && !this.specIsStale(now)) {
        const reason = this.retirementDue(now, this.spec);
        if (reason !== null) {
          this.retireNow(reason, now, out, true);
          return;
        }
        this.leaderDuties(now, this.spec, out);
      }
    }
    if (now >= this.nextHeartbeatMs) {
      out.push({ type: "heartbeat", hb: this.heartbeat(now, false) });
      this.nextHeartbeatMs = now + this.s.intervalMs;
    }
  }

  private prune(now: number, out: WatchdogAction[]): void {
    const forgetAfter = 10 * this.ttlMs();
    for (const [pod, e] of this.peers) if (now - e.receivedMs >= forgetAfter) this.peers.delete(pod);
    for (const [claim, untilMs] of this.abandoned) if (now >= untilMs) this.abandoned.delete(claim);
    const heldByLive = new Set(this.alivePeers(now).map((e) => e.hb.slot));
    const isLeader = this.leader(now) === this.id.pod;
    for (const [index, p] of [...this.pending]) {
      if (heldByLive.has(index)) {
        this.pending.delete(index);
      } else if (now - p.firstSeenMs > this.s.cloneGraceMs) {
        this.pending.delete(index);
        if (isLeader) {
          out.push({ type: "releaseSlot", slot: index, key: this.key(index), claim: p.claim });
          out.push({
            type: "log",
            level: "warn",
            msg: `clone ${p.claim} never showed up; slot ${index} released`,
          });
        }
      }
    }
  }

  private maintainOwnSlot(now: number, out: WatchdogAction[]): void {
    const own = this.own;
    if (own.kind === "adopting") {
      if (own.sentMs === null && now >= own.retryAtMs) {
        own.sentMs = now;
        out.push({
          type: "transferSlot",
          slot: own.index,
          key: this.key(own.index),
          from: own.from,
          to: this.id.pod,
        });
      }
      return;
    }
    if (own.kind === "held") {
      if (own.renewSentMs !== null && now - own.renewSentMs > this.s.slotRenewMs) own.renewSentMs = null;
      if (this.s.strictFencing && now - own.lastOkSentMs >= this.s.slotTtlMs - this.s.fenceMarginMs) {
        out.push({ type: "log", level: "warn", msg: `slot ${own.index} not renewed in time; fencing` });
        this.retireNow("slot-lost", now, out, false);
        return;
      }
      if (now >= own.nextRenewMs && own.renewSentMs === null) {
        own.renewSentMs = now;
        own.nextRenewMs = now + this.s.slotRenewMs;
        out.push({ type: "renewSlot", slot: own.index, key: this.key(own.index), claim: own.claim });
      }
      return;
    }
    if (this.spec == null) return;
    if (own.kind === "none") {
      this.own = { kind: "seeking", refused: new Set(), inflight: null, retryAtMs: now };
    }
    const seeking = this.own;
    if (seeking.kind !== "seeking" || seeking.inflight !== null || now < seeking.retryAtMs) return;
    const bound = this.slotBound(this.spec);
    const taken = new Set<number>([
      ...this.alivePeerSlots(now),
      ...this.pending.keys(),
      ...this.acquiring.keys(),
    ]);
    for (let i = 0; i < bound; i++) {
      if (taken.has(i) || seeking.refused.has(i)) continue;
      const claim = this.id.pod;
      seeking.inflight = { index: i, claim, sentMs: now };
      out.push({ type: "acquireSlot", slot: i, key: this.key(i), claim });
      return;
    }
    // Every index refused or taken. If live peers hold all of them we are surplus by
    // construction; otherwise some holder may be dead and its slot expiring: retry later.
    if (this.alivePeerSlots(now).filter((i) => i < bound).length >= bound) {
      this.retireNow("no-slot", now, out, false);
      return;
    }
    seeking.refused.clear();
    seeking.retryAtMs = now + this.s.slotRetryMs;
  }

  /** Surplus and rollout retirement, decided by each replica for itself. */
  private retirementDue(now: number, spec: WatchdogSpec): RetireReason | null {
    if (!this.healthy) return null;
    const { unavailable } = effectiveStrategy(spec);
    const members = this.members(now);
    const me = members.find((m) => m.pod === this.id.pod);
    if (me === undefined) return null;
    const R = spec.replicas;
    if (me.template_hash === spec.template_hash) {
      const current = members.filter((m) => m.template_hash === spec.template_hash).sort(newestFirst);
      const excess = current.length - R;
      return excess > 0 && current.indexOf(me) < excess ? "surplus" : null;
    }
    // Old template: unready old replicas serve nothing and go first whenever the
    // total is above spec; ready ones go oldest first while enough stay ready.
    const old = members.filter((m) => m.template_hash !== spec.template_hash);
    if (!me.ready) {
      const unreadyOld = old.filter((m) => !m.ready).sort(oldestFirst);
      const allowed = members.length - R;
      return allowed > 0 && unreadyOld.indexOf(me) < allowed ? "rollout" : null;
    }
    const readyOld = old.filter((m) => m.ready).sort(oldestFirst);
    const readyTotal = members.filter((m) => m.ready).length;
    const allowed = readyTotal - (R - unavailable);
    return allowed > 0 && readyOld.indexOf(me) < allowed ? "rollout" : null;
  }

  /**
   * Clones the leader still has to start: enough to bring the current template
   * to `replicas`, without the total exceeding replicas + maxSurge, counting
   * clones already pending or being acquired.
   */
  private clonesWanted(now: number): number {
    const spec = this.spec;
    if (spec == null) return 0;
    const { surge } = effectiveStrategy(spec);
    const members = this.members(now);
    const current = members.filter((m) => m.template_hash === spec.template_hash).length;
    const inFlight = this.unmatchedPending(now) + this.acquiring.size;
    return Math.max(
      0,
      Math.min(spec.replicas - current - inFlight, spec.replicas + surge - members.length - inFlight),
    );
  }

  private leaderDuties(now: number, spec: WatchdogSpec, out: WatchdogAction[]): void {
    if (this.leader(now) !== this.id.pod) return;
    if (now < this.graceEndsMs) return;
    if (now >= this.nextPendingRenewMs) {
      // Keep the slots of clones in flight alive until their pods renew them.
      this.nextPendingRenewMs = now + this.s.slotRenewMs;
      for (const [index, p] of this.pending) {
        out.push({ type: "renewSlot", slot: index, key: this.key(index), claim: p.claim });
      }
    }
    if (now < this.cloneRetryAtMs) return;
    let wanted = this.clonesWanted(now);
    if (wanted <= 0) return;
    const bound = this.slotBound(spec);
    const taken = new Set<number>([
      ...this.alivePeerSlots(now),
      ...this.pending.keys(),
      ...this.acquiring.keys(),
    ]);
    const mine = this.ownSlotIndex();
    if (mine !== null) taken.add(mine);
    for (let i = 0; i < bound && wanted > 0; i++) {
      if (taken.has(i) || (this.refusedUntil.get(i) ?? -Infinity) > now) continue;
      const claim = this.deps.newClaim();
      this.acquiring.set(i, claim);
      out.push({ type: "acquireSlot", slot: i, key: this.key(i), claim });
      wanted -= 1;
    }
  }

  private beginHandoff(reason: RetireReason, now: number, out: WatchdogAction[]): void {
    if (this.phase !== "running") return;
    this.healthy = false;
    const own = this.own;
    if (own.kind !== "held") {
      // No slot to hand over: the leader clones once our farewell is heard.
      this.retireNow(reason, now, out, false);
      return;
    }
    // Peers keep counting us until the farewell, which names the replacement as
    // pending; announcing "unhealthy" first would make the leader clone a second one.
    const claim = this.deps.newClaim();
    this.phase = "handingOff";
    this.handoff = { index: own.index, claim, reason };
    out.push({ type: "transferSlot", slot: own.index, key: this.key(own.index), from: own.claim, to: claim });
  }

  private retireNow(reason: RetireReason, now: number, out: WatchdogAction[], releaseOwn: boolean): void {
    out.push({ type: "heartbeat", hb: this.heartbeat(now, true) });
    if (releaseOwn && this.own.kind === "held") {
      out.push({
        type: "releaseSlot",
        slot: this.own.index,
        key: this.key(this.own.index),
        claim: this.own.claim,
      });
    }
    out.push({ type: "log", level: "info", msg: `retiring: ${reason}` });
    out.push({ type: "retire", reason });
    this.phase = "retired";
  }

  /**
   * A peer has seen a newer spec than ours (heard within the TTL): our counts are
   * judged against a stale spec, so cloning and retiring wait for our KV watch.
   */
  private specIsStale(now: number): boolean {
    const hint = this.newerSpecHint;
    return hint !== null && hint.revision > this.specRevision && now - hint.receivedMs < this.ttlMs();
  }

  // ---- views ----

  private ownSlotIndex(): number | null {
    return this.own.kind === "held" || this.own.kind === "adopting" ? this.own.index : null;
  }

  private ttlMs(): number {
    return this.s.ttlIntervals * this.s.intervalMs;
  }

  private alivePeers(now: number): PeerEntry[] {
    const ttl = this.ttlMs();
    return [...this.peers.values()].filter((e) => now - e.receivedMs < ttl);
  }

  private alivePeerSlots(now: number): number[] {
    return this.alivePeers(now)
      .map((e) => e.hb.slot)
      .filter((s): s is number => s !== null);
  }

  private unmatchedPending(now: number): number {
    const held = new Set(this.alivePeerSlots(now));
    return [...this.pending.keys()].filter((i) => !held.has(i)).length;
  }

  /** Live, healthy, non-retiring members including this replica when it is one. */
  private members(now: number): Member[] {
    const members: Member[] = this.alivePeers(now)
      .filter((e) => e.hb.healthy)
      .map((e) => ({
        pod: e.hb.pod,
        template_hash: e.hb.template_hash,
        ready: e.hb.ready,
        started_at: e.hb.started_at,
        slot: e.hb.slot,
      }));
    if (this.phase === "running" && this.healthy) {
      members.push({
        pod: this.id.pod,
        template_hash: this.id.template_hash,
        ready: this.ready,
        started_at: this.id.started_at,
        slot: this.ownSlotIndex(),
      });
    }
    return members;
  }

  private leader(now: number): string | null {
    let best: string | null = null;
    for (const m of this.members(now)) if (best === null || m.pod < best) best = m.pod;
    return best;
  }

  private slotBound(spec: WatchdogSpec): number {
    return spec.replicas + effectiveStrategy(spec).surge;
  }

  private key(index: number): string {
    return slotKey(this.slotPrefix, index);
  }

  private cloneAction(index: number, claim: string): WatchdogAction {
    const spec = this.spec;
    return {
      type: "clone",
      slot: index,
      key: this.key(index),
      claim,
      generation: spec?.generation ?? this.id.generation,
      template_hash: spec?.template_hash ?? this.id.template_hash,
    };
  }

  private heartbeat(now: number, retiring: boolean): Omit<WatchdogHeartbeat, "ts"> {
    // Every replica passes on the clones it knows to be in flight, not only the
    // leader: a new lower-named replica becomes leader as soon as the old one
    // hears it, and must not clone again what the old leader already cloned.
    const shareP = retiring || this.pending.size > 0;
    return {
      pod: this.id.pod,
      node: this.id.node,
      ns: this.id.ns,
      parent: this.id.parent,
      generation: this.id.generation,
      spec_revision: this.specRevision,
      healthy: !retiring && (this.phase === "handingOff" || (this.healthy && this.phase === "running")),
      ready: this.ready && this.phase === "running" && !retiring,
      template_hash: this.id.template_hash,
      started_at: this.id.started_at,
      slot: this.ownSlotIndex() !== null && !retiring ? this.ownSlotIndex() : null,
      retiring,
      pending: shareP
        ? [...this.pending].map(([slot, p]) => ({
            slot,
            claim: p.claim,
            age_ms: Math.max(0, now - p.firstSeenMs),
          }))
        : [],
    };
  }
}
