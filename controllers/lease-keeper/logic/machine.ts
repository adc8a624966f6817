// The leases of one task as a pure state machine (etcd-raft style: inputs in,
// actions out; time only as the nowMs passed in, randomness only through the
// injected `random`).
//
// A task stands for `replicas` replicas (a batch, DESIGN §3.6; a single-replica
// task is the batch of one). They are placed as shares: contiguous replica
// ranges, each with its own lease (key `task.<id>` for the share at replica 0,
// `task.<id>.<first>` after it), each living the life a single task's lease
// used to:
//
//   collecting --window closes / all probed nodes answered--> place
//   place: the best bids take shares of the unplaced replicas, one KV create at a time
//   nothing usable --> unschedulable --backoff--> (republish) collecting
//   share: awarding --ok--> leased;  --conflict--> leased (by whoever won)
//   share: leased --renewal seen--> leased (timer reset)
//   share: leased --no renewal for TTL / `failed` from the winner--> reawardWait --backoff--> awarding
//   share: reawardWait --no bid can take the whole share--> orphaned --(republish) fresh bids--> awarding
//   share: leased --`deployed` / `removed` / `preempted` from the winner, or lease deleted--> done
//   all replicas placed and every share done --> done
//
// Exactly-once per replica holds because shares never overlap: they are created
// in replica order, each starting where the previous one ends, and a KV create
// lets one write win per key; a keeper that loses a create reads what won and
// continues after it. A share keeps its range for good and is re-awarded whole
// (by CAS on its key), never split, so no two keepers can cut it differently.
//
// After `deployed` a share is the workload plane's business (watchdog or Raft
// sidecar heals it); keeping the lease-keeper on it too would clone twice.
// Several lease-keepers run the same machine on the same inputs: the KV CAS
// lets one award win, and the others follow the lease they observe.
import { backoffMs } from "./options.js";
import type { LeaseKeeperSettings } from "./options.js";
import { collectReasons, offeredBy, rankBids } from "./select.js";
import type {
  AwardResult,
  KeeperAction,
  KeeperEvent,
  LeaseBid,
  LeaseTask,
  MachineInput,
  NodeEventStatus,
  ObservedLease,
} from "./types.js";

export type DoneOutcome = "deployed" | "removed" | "preempted" | "deleted";

/** The life of one share's lease. */
export type ShareState =
  | { kind: "awarding"; bid: LeaseBid; prevRevision: number | null; previousWinner: string | null }
  | { kind: "leased"; winner: string; revision: number; fencing: number; lastRenewalMs: number }
  | { kind: "reawardWait"; untilMs: number; prevRevision: number | null; previousWinner: string | null }
  /** No bid could take the whole share: it waits for the fresh bids of a republish. */
  | { kind: "orphaned"; prevRevision: number | null; previousWinner: string | null }
  | { kind: "done"; outcome: DoneOutcome };

/** A share as the machine knows it: replicas first..first+count-1 under one lease. */
export interface ShareView {
  readonly first: number;
  readonly count: number;
  readonly state: Readonly<ShareState>;
}

/**
 * The state of a single-replica task as one value (what callers and tests of a
 * batch of one look at); a batch reads its shares through `shares()`.
 */
export type LeaseState =
  | { kind: "collecting"; deadlineMs: number }
  | { kind: "awarding"; bid: LeaseBid; prevRevision: number | null; previousWinner: string | null }
  | { kind: "leased"; winner: string; revision: number; fencing: number; lastRenewalMs: number }
  | { kind: "reawardWait"; untilMs: number; prevRevision: number | null; previousWinner: string | null }
  | { kind: "unschedulable"; untilMs: number }
  | { kind: "done"; outcome: DoneOutcome };

export interface MachineDeps {
  /** Uniform in [0, 1); drives the window jitter. */
  random: () => number;
}

interface Share {
  first: number;
  count: number;
  st: ShareState;
  /** Latest revision of this share's key seen or written. */
  lastRevision: number | null;
  reawards: number;
  /** The attempt whose bids the current winner was picked from (its offer is spent). */
  awardedInAttempt: number;
}

/** What the machine does for the replicas no share holds yet (and orphaned shares). */
type Phase =
  { kind: "idle" } | { kind: "collecting"; deadlineMs: number } | { kind: "unschedulable"; untilMs: number };

/** The next share of the chain: created strictly in replica order, one create at a time. */
type Chain =
  | { kind: "idle" }
  | { kind: "creating"; bid: LeaseBid; count: number }
  | { kind: "retryWait"; untilMs: number };

interface PendingReport {
  status: NodeEventStatus;
  node_id: string;
  fencing_token: number;
}

/** Node reports kept until the lease they are about is followed. */
const MAX_PENDING_REPORTS = 256;

export class TaskLeaseMachine {
  private readonly task: LeaseTask;
  private readonly replicas: number;
  private attempt: number;
  private expectedBids: number | null;
  private readonly bids = new Map<string, LeaseBid>();
  private readonly excluded = new Set<string>();
  private readonly byFirst = new Map<number, Share>();
  /** Replicas 0..placed-1 belong to shares; the rest wait for the chain. */
  private placed = 0;
  private chain: Chain = { kind: "idle" };
  /** Shares another keeper created beyond our chain's end, adopted when the chain gets there. */
  private readonly ahead = new Map<number, ObservedLease>();
  private readonly reports: PendingReport[] = [];
  private unschedulableCount = 0;
  /** The attempt whose empty window was already extended once. */
  private extendedAttempt = -1;
  private phase: Phase;

  constructor(
    task: LeaseTask,
    private readonly settings: LeaseKeeperSettings,
    private readonly deps: MachineDeps,
    nowMs: number,
    expectedBids?: number,
  ) {
    this.task = { ...task };
    this.replicas = Math.max(1, Math.floor(task.replicas ?? 1));
    this.attempt = task.attempt;
    this.expectedBids = expectedBids ?? null;
    this.phase = { kind: "collecting", deadlineMs: nowMs + this.drawWindow() };
  }

  get taskId(): string {
    return this.task.task_id;
  }

  get currentAttempt(): number {
    return this.attempt;
  }

  /** Replicas the task stands for. */
  get replicaCount(): number {
    return this.replicas;
  }

  /** The shares known so far, in replica order. */
  shares(): ShareView[] {
    return [...this.byFirst.values()]
      .sort((a, b) => a.first - b.first)
      .map((s) => ({ first: s.first, count: s.count, state: s.st }));
  }

  /** One state for the task: the collecting/unschedulable phase if it is in one, else its first live share's. */
  get state(): Readonly<LeaseState> {
    if (this.phase.kind !== "idle") return this.phase;
    if (this.chain.kind === "creating" && this.byFirst.size === 0)
      return { kind: "awarding", bid: this.chain.bid, prevRevision: null, previousWinner: null };
    const shares = this.sortedShares();
    const live = shares.find((s) => s.st.kind !== "done" && s.st.kind !== "orphaned");
    if (live !== undefined) return live.st as LeaseState;
    const first = shares[0];
    if (first !== undefined && first.st.kind === "done") return first.st;
    // Between a window and the next step (a chain retry): report the wait.
    return { kind: "reawardWait", untilMs: this.chainWake() ?? 0, prevRevision: null, previousWinner: null };
  }

  isDone(): boolean {
    if (this.placed < this.replicas || this.chain.kind !== "idle") return false;
    for (const s of this.byFirst.values()) if (s.st.kind !== "done") return false;
    return true;
  }

  /** The actions of the machine's creation (the first schedule). */
  start(): KeeperAction[] {
    return this.withSchedule([]);
  }

  /** Local monotonic time the machine wants its next tick, if any. */
  nextWakeMs(): number | null {
    if (this.isDone()) return null;
    let next: number | null = null;
    const consider = (at: number | null) => {
      if (at !== null && (next === null || at < next)) next = at;
    };
    if (this.phase.kind === "collecting") consider(this.phase.deadlineMs);
    if (this.phase.kind === "unschedulable") consider(this.phase.untilMs);
    consider(this.chainWake());
    for (const s of this.byFirst.values()) {
      if (s.st.kind === "leased") consider(s.st.lastRenewalMs + this.settings.leaseTtlMs);
      else if (s.st.kind === "reawardWait") consider(s.st.untilMs);
    }
    return next;
  }

  step(input: MachineInput): KeeperAction[] {
    if (this.isDone()) return [];
    const out: KeeperAction[] = [];
    switch (input.type) {
      case "bid":
        this.onBid(input.bid, input.nowMs, out);
        break;
      case "tick":
        this.onTick(input.nowMs, out);
        break;
      case "awardResult":
        this.onAwardResult(input.first ?? 0, input.result, input.nowMs, out);
        break;
      case "leaseObserved":
        this.onLeaseObserved(input.first ?? 0, input.lease, input.nowMs, out);
        break;
      case "leaseDeleted":
        this.onLeaseDeleted(input.first ?? 0);
        break;
      case "nodeEvent":
        this.onNodeEvent(input.status, input.node_id, input.fencing_token, input.nowMs);
        break;
      case "task":
        this.onTask(input.task, input.nowMs, input.expectedBids);
        break;
    }
    return this.withSchedule(out);
  }

  // ------------------------------------------------------------- inputs ---

  private withSchedule(out: KeeperAction[]): KeeperAction[] {
    const at = this.nextWakeMs();
    if (at !== null) out.push({ type: "schedule", atMs: at });
    return out;
  }

  private drawWindow(): number {
    const r = Math.min(Math.max(this.deps.random(), 0), 1);
    return Math.round(this.settings.windowMs + (2 * r - 1) * this.settings.windowJitterMs);
  }

  private onTask(task: LeaseTask, nowMs: number, expectedBids?: number): void {
    // Another keeper republished: follow its attempt with a fresh window, if anything still needs bids.
    if (task.attempt <= this.attempt || !this.needsBids()) return;
    this.attempt = task.attempt;
    this.expectedBids = expectedBids ?? this.expectedBids;
    this.bids.clear();
    this.excluded.clear();
    this.phase = { kind: "collecting", deadlineMs: nowMs + this.drawWindow() };
  }

  private onBid(bid: LeaseBid, nowMs: number, out: KeeperAction[]): void {
    if (bid.task_id !== this.task.task_id) return;
    this.bids.set(bid.node_id, bid);
    if (this.phase.kind === "collecting") {
      if (this.expectedBids !== null && this.bids.size >= this.expectedBids) this.closeWindow(nowMs, out);
    } else if (this.phase.kind === "unschedulable") {
      // A late usable bid cures the wait at once.
      if (this.hasRoom(1)) {
        this.phase = { kind: "idle" };
        this.place(nowMs, out);
      }
    }
  }

  private onTick(nowMs: number, out: KeeperAction[]): void {
    const phase = this.phase;
    if (phase.kind === "collecting" && nowMs >= phase.deadlineMs) this.closeWindow(nowMs, out);
    else if (phase.kind === "unschedulable" && nowMs >= phase.untilMs) this.republish(nowMs, out);
    if (this.chain.kind === "retryWait" && nowMs >= this.chain.untilMs) {
      this.chain = { kind: "idle" };
      if (this.phase.kind === "idle") this.place(nowMs, out);
    }
    for (const s of this.sortedShares()) {
      const st = s.st;
      if (st.kind === "leased" && nowMs >= st.lastRenewalMs + this.settings.leaseTtlMs) {
        this.excluded.add(st.winner);
        out.push(
          this.emit("expired", s, {
            node_id: st.winner,
            fencing_token: st.fencing,
            details: `no renewal seen for ${nowMs - st.lastRenewalMs} ms`,
            dedup: `expired/${st.revision}`,
          }),
        );
        this.waitReaward(s, nowMs, st.revision, st.winner);
      } else if (st.kind === "reawardWait" && nowMs >= st.untilMs) {
        const best = this.bestFor(s.count);
        if (best !== null) this.awardShare(s, best, st.previousWinner, st.prevRevision, out);
        else {
          s.st = { kind: "orphaned", prevRevision: st.prevRevision, previousWinner: st.previousWinner };
          if (this.phase.kind === "idle") this.republish(nowMs, out);
        }
      }
    }
  }

  private onAwardResult(first: number, result: AwardResult, nowMs: number, out: KeeperAction[]): void {
    const chain = this.chain;
    if (chain.kind === "creating" && first === this.placed && !this.byFirst.has(first)) {
      this.onChainResult(chain, result, nowMs, out);
      return;
    }
    const s = this.byFirst.get(first);
    if (s === undefined || s.st.kind !== "awarding") return;
    const st = s.st;
    if (result.ok) {
      this.noteRevision(s, result.revision);
      s.st = {
        kind: "leased",
        winner: st.bid.node_id,
        revision: result.revision,
        fencing: result.revision,
        lastRenewalMs: nowMs,
      };
      out.push(this.leasedEvent(s, st.bid, result.revision, st.previousWinner));
      this.deliverReports(s, nowMs);
      return;
    }
    if (result.current !== null) {
      this.followLease(s, result.current, nowMs);
    } else {
      // The key vanished under us: try again with a create after a short wait.
      s.lastRevision = null;
      this.waitReaward(s, nowMs, null, st.previousWinner, false);
    }
  }

  private onChainResult(
    chain: Extract<Chain, { kind: "creating" }>,
    result: AwardResult,
    nowMs: number,
    out: KeeperAction[],
  ): void {
    this.chain = { kind: "idle" };
    const first = this.placed;
    if (result.ok) {
      const s = this.addShare(first, chain.count, {
        kind: "leased",
        winner: chain.bid.node_id,
        revision: result.revision,
        fencing: result.revision,
        lastRenewalMs: nowMs,
      });
      s.lastRevision = result.revision;
      out.push(this.leasedEvent(s, chain.bid, result.revision, null));
      this.deliverReports(s, nowMs);
    } else if (result.current !== null) {
      // Another keeper's create won: its share (whatever its size) is the chain from here.
      const s = this.addShare(first, result.current.granted ?? 1, {
        kind: "orphaned",
        prevRevision: null,
        previousWinner: null,
      });
      this.followLease(s, result.current, nowMs);
    } else {
      // Refused, yet nothing is there: try again after a short wait, with the same rules.
      this.chain = { kind: "retryWait", untilMs: nowMs + this.settings.reawardBaseMs };
      return;
    }
    this.place(nowMs, out);
  }

  private onLeaseObserved(first: number, lease: ObservedLease, nowMs: number, out: KeeperAction[]): void {
    const s = this.byFirst.get(first);
    if (s !== undefined) {
      if (s.lastRevision !== null && lease.revision <= s.lastRevision) return;
      // Our write will be refused or has landed; the award result decides.
      if (s.st.kind === "awarding") return;
      this.followLease(s, lease, nowMs);
      return;
    }
    if (first < this.placed) return; // inside a share we know: not a key of this task's chain
    if (first > this.placed || this.chain.kind === "creating") {
      // Beyond our chain's end, or our own create there is in flight: adopt it when the chain gets there.
      const known = this.ahead.get(first);
      if (known === undefined || lease.revision > known.revision) this.ahead.set(first, lease);
      return;
    }
    this.chain = { kind: "idle" };
    this.ahead.set(first, lease);
    this.adoptAhead(nowMs);
    if (this.phase.kind === "idle") this.place(nowMs, out);
  }

  private onLeaseDeleted(first: number): void {
    const s = this.byFirst.get(first);
    if (s !== undefined) {
      if (s.st.kind !== "awarding") s.st = { kind: "done", outcome: "deleted" };
      return;
    }
    // A single-replica task whose lease went away before this keeper saw it: it is over.
    if (this.replicas === 1 && first === 0 && this.chain.kind !== "creating") {
      this.addShare(0, 1, { kind: "done", outcome: "deleted" });
      this.placed = 1;
      this.phase = { kind: "idle" };
      this.chain = { kind: "idle" };
    }
  }

  private onNodeEvent(
    status: NodeEventStatus,
    nodeId: string,
    fencingToken: number | undefined,
    nowMs: number,
  ): void {
    const s = this.sortedShares().find(
      (x) =>
        x.st.kind === "leased" &&
        x.st.winner === nodeId &&
        (fencingToken === undefined || x.st.fencing === fencingToken),
    );
    if (s === undefined) {
      // A report can overtake the lease it is about (this keeper still awarding, or
      // not yet following that award): keep it until the machine follows it.
      if (fencingToken !== undefined) {
        if (this.reports.length >= MAX_PENDING_REPORTS) this.reports.shift();
        this.reports.push({ status, node_id: nodeId, fencing_token: fencingToken });
      }
      return;
    }
    this.applyReport(s, status, nodeId, nowMs);
  }

  private applyReport(s: Share, status: NodeEventStatus, nodeId: string, nowMs: number): void {
    const st = s.st;
    if (st.kind !== "leased") return;
    if (status === "failed") {
      this.excluded.add(nodeId);
      this.waitReaward(s, nowMs, st.revision, nodeId);
      return;
    }
    s.st = { kind: "done", outcome: status };
  }

  private deliverReports(s: Share, nowMs: number): void {
    const st = s.st;
    if (st.kind !== "leased" || this.reports.length === 0) return;
    const i = this.reports.findIndex((r) => r.node_id === st.winner && r.fencing_token === st.fencing);
    if (i < 0) return;
    const [report] = this.reports.splice(i, 1);
    if (report !== undefined) this.applyReport(s, report.status, report.node_id, nowMs);
  }

  // ---------------------------------------------------------- placement ---

  private closeWindow(nowMs: number, out: KeeperAction[]): void {
    if (this.bids.size === 0 && (this.expectedBids ?? 0) > 0 && this.extendedAttempt !== this.attempt) {
      // Nodes probe this shard, yet none answered: late (a busy keeper or node), not gone. Wait
      // one more window before calling it unschedulable and asking them all again.
      this.extendedAttempt = this.attempt;
      this.phase = { kind: "collecting", deadlineMs: nowMs + this.settings.windowMs };
      return;
    }
    this.phase = { kind: "idle" };
    this.place(nowMs, out);
  }

  /**
   * Orphaned shares first (each to one bid that can take it whole), then the
   * chain: the best bid with room takes the next share of the unplaced
   * replicas. When nothing more can move and replicas still wait: unschedulable.
   */
  private place(nowMs: number, out: KeeperAction[]): void {
    for (const s of this.sortedShares()) {
      if (s.st.kind !== "orphaned") continue;
      const best = this.bestFor(s.count);
      if (best !== null) this.awardShare(s, best, s.st.previousWinner, s.st.prevRevision, out);
    }
    if (this.chain.kind === "idle" && this.placed < this.replicas) {
      const best = this.bestFor(1);
      if (best !== null) {
        const count = Math.min(
          this.roomOf(best),
          this.replicas - this.placed,
          this.settings.maxShareReplicas,
        );
        this.chain = { kind: "creating", bid: best, count };
        out.push(this.awardAction(best, null, this.placed, count));
      }
    }
    if (this.chain.kind !== "idle") return; // the chain goes on when its create answers
    const orphaned = this.sortedShares().filter((s) => s.st.kind === "orphaned");
    const unplaced = this.replicas - this.placed;
    if (unplaced === 0 && orphaned.length === 0) return;
    this.unschedulableCount += 1;
    const wait = backoffMs(
      this.unschedulableCount,
      this.settings.unschedulableBaseMs,
      this.settings.unschedulableCapMs,
    );
    const waiting = unplaced + orphaned.reduce((n, s) => n + s.count, 0);
    const reasons = collectReasons(this.bids.values(), this.task, this.excluded);
    out.push(
      this.emit("unschedulable", null, {
        reasons,
        details:
          this.replicas > 1
            ? `${waiting} of ${this.replicas} replicas not placed; retry in ${wait} ms`
            : `retry in ${wait} ms`,
        dedup: `unschedulable/${this.attempt}`,
      }),
    );
    this.phase = { kind: "unschedulable", untilMs: nowMs + wait };
  }

  private awardShare(
    s: Share,
    bid: LeaseBid,
    previousWinner: string | null,
    prevRevision: number | null,
    out: KeeperAction[],
  ): void {
    const prev = prevRevision ?? s.lastRevision;
    s.st = { kind: "awarding", bid, prevRevision: prev, previousWinner };
    s.awardedInAttempt = this.attempt;
    out.push(this.awardAction(bid, prev, s.first, s.count));
  }

  private awardAction(
    bid: LeaseBid,
    prevRevision: number | null,
    first: number,
    count: number,
  ): KeeperAction {
    return this.replicas === 1
      ? { type: "award", bid, prevRevision }
      : { type: "award", bid, prevRevision, first, granted: count };
  }

  /** The best usable bid with room for `count` more replicas. */
  private bestFor(count: number): LeaseBid | null {
    for (const b of rankBids(this.bids.values(), this.task, this.settings.hash, this.excluded)) {
      if (this.roomOf(b) >= count) return b;
    }
    return null;
  }

  private hasRoom(count: number): boolean {
    return this.bestFor(count) !== null;
  }

  /** What a bid offered, less what this attempt already gave its node. */
  private roomOf(bid: LeaseBid): number {
    let used = 0;
    for (const s of this.byFirst.values()) {
      if (s.awardedInAttempt !== this.attempt) continue;
      const holder =
        s.st.kind === "awarding" ? s.st.bid.node_id : s.st.kind === "leased" ? s.st.winner : undefined;
      if (holder === bid.node_id) used += s.count;
    }
    if (this.chain.kind === "creating" && this.chain.bid.node_id === bid.node_id) used += this.chain.count;
    return offeredBy(bid) - used;
  }

  private needsBids(): boolean {
    if (this.placed < this.replicas) return true;
    for (const s of this.byFirst.values()) if (s.st.kind === "orphaned") return true;
    return false;
  }

  // ------------------------------------------------------------- shares ---

  private addShare(first: number, count: number, st: ShareState): Share {
    const s: Share = { first, count, st, lastRevision: null, reawards: 0, awardedInAttempt: this.attempt };
    this.byFirst.set(first, s);
    this.placed = Math.max(this.placed, Math.min(this.replicas, first + count));
    return s;
  }

  /** Shares another keeper created where our chain now stands become ours to follow. */
  private adoptAhead(nowMs: number): void {
    for (let lease = this.ahead.get(this.placed); lease !== undefined; lease = this.ahead.get(this.placed)) {
      this.ahead.delete(this.placed);
      const s = this.addShare(this.placed, lease.granted ?? 1, {
        kind: "orphaned",
        prevRevision: null,
        previousWinner: null,
      });
      this.followLease(s, lease, nowMs);
    }
  }

  private followLease(s: Share, lease: ObservedLease, nowMs: number): void {
    this.noteRevision(s, lease.revision);
    this.excluded.delete(lease.winner_id); // it renews, so it is alive
    const sameAward = s.st.kind === "leased" && s.st.winner === lease.winner_id;
    const fencing =
      lease.fencing_token ?? (sameAward && s.st.kind === "leased" ? s.st.fencing : lease.revision);
    if (!sameAward) s.awardedInAttempt = this.attempt;
    s.st = {
      kind: "leased",
      winner: lease.winner_id,
      revision: lease.revision,
      fencing,
      lastRenewalMs: nowMs,
    };
    if (this.placed === s.first + s.count) this.adoptAhead(nowMs);
    // Everything is placed by someone: no window or wait of ours is needed any more.
    if (this.phase.kind !== "idle" && !this.needsBids() && this.chain.kind === "idle")
      this.phase = { kind: "idle" };
    this.deliverReports(s, nowMs);
  }

  private noteRevision(s: Share, revision: number): void {
    if (s.lastRevision === null || revision > s.lastRevision) s.lastRevision = revision;
  }

  private waitReaward(
    s: Share,
    nowMs: number,
    prevRevision: number | null,
    previousWinner: string | null,
    count = true,
  ): void {
    if (count) s.reawards += 1;
    const wait = backoffMs(Math.max(1, s.reawards), this.settings.reawardBaseMs, this.settings.reawardCapMs);
    s.st = { kind: "reawardWait", untilMs: nowMs + wait, prevRevision, previousWinner };
  }

  private republish(nowMs: number, out: KeeperAction[]): void {
    this.attempt += 1;
    this.bids.clear();
    this.excluded.clear();
    out.push({ type: "republish", attempt: this.attempt });
    this.phase = { kind: "collecting", deadlineMs: nowMs + this.drawWindow() };
  }

  private chainWake(): number | null {
    return this.chain.kind === "retryWait" ? this.chain.untilMs : null;
  }

  private sortedShares(): Share[] {
    return this.byFirst.size <= 1
      ? [...this.byFirst.values()]
      : [...this.byFirst.values()].sort((a, b) => a.first - b.first);
  }

  // ------------------------------------------------------------- events ---

  private leasedEvent(
    s: Share,
    bid: LeaseBid,
    revision: number,
    previousWinner: string | null,
  ): KeeperAction {
    const preempting = (bid.victims?.length ?? 0) > 0;
    const details = [
      this.replicas > 1 ? this.rangeText(s) : "",
      previousWinner !== null ? `re-award after ${previousWinner}` : "",
      preempting ? `preempting ${(bid.victims ?? []).map((v) => `${v.ns}/${v.pod}`).join(", ")}` : "",
    ]
      .filter((x) => x !== "")
      .join("; ");
    return this.emit("leased", s, {
      node_id: bid.node_id,
      fencing_token: revision,
      dedup: `leased/${revision}`,
      ...(details !== "" ? { details } : {}),
    });
  }

  private rangeText(s: Share): string {
    return `replicas ${s.first}..${s.first + s.count - 1} (${s.count} of ${this.replicas})`;
  }

  private emit(
    status: KeeperEvent["status"],
    share: Share | null,
    fields: { node_id?: string; fencing_token?: number; reasons?: string[]; details?: string; dedup: string },
  ): KeeperAction {
    const { dedup, ...rest } = fields;
    if (share !== null && this.replicas > 1 && status === "expired" && rest.details !== undefined)
      rest.details = `${this.rangeText(share)}; ${rest.details}`;
    return {
      type: "emit",
      event: {
        status,
        task_id: this.task.task_id,
        attempt: this.attempt,
        ...rest,
        dedup_id: `${this.task.task_id}/${dedup}`,
      },
    };
  }
}
