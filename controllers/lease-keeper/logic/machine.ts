// The lease of one task as a pure state machine (etcd-raft style: inputs in,
// actions out; time only as the nowMs passed in, randomness only through the
// injected `random`).
//
//   collecting --window closes / all probed nodes answered--> awarding
//   collecting --no usable bid--> unschedulable --backoff--> (republish) collecting
//   awarding --ok--> leased;  --conflict--> leased (by whoever won)
//   leased --renewal seen--> leased (timer reset)
//   leased --no renewal for TTL / `failed` from the winner--> reawardWait --backoff--> awarding
//   reawardWait --no bids left--> (republish) collecting
//   leased --`deployed` / `removed` / `preempted` from the winner, or lease deleted--> done
//
// After `deployed` the task is the workload plane's business (watchdog or
// Raft sidecar heals it); keeping the lease-keeper on it too would clone twice.
// Several lease-keepers run the same machine on the same inputs: the KV CAS
// lets one award win, and the others follow the lease they observe.
import { backoffMs } from "./options.js";
import type { LeaseKeeperSettings } from "./options.js";
import { bestBid, collectReasons } from "./select.js";
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

export type LeaseState =
  | { kind: "collecting"; deadlineMs: number }
  | { kind: "awarding"; bid: LeaseBid; prevRevision: number | null; previousWinner: string | null }
  | { kind: "leased"; winner: string; revision: number; lastRenewalMs: number }
  | { kind: "reawardWait"; untilMs: number; prevRevision: number | null; previousWinner: string | null }
  | { kind: "unschedulable"; untilMs: number }
  | { kind: "done"; outcome: "deployed" | "removed" | "preempted" | "deleted" };

export interface MachineDeps {
  /** Uniform in [0, 1); drives the window jitter. */
  random: () => number;
}

export class TaskLeaseMachine {
  private readonly task: LeaseTask;
  private attempt: number;
  private expectedBids: number | null;
  private readonly bids = new Map<string, LeaseBid>();
  private readonly excluded = new Set<string>();
  private lastRevision: number | null = null;
  private reawards = 0;
  private unschedulableCount = 0;
  private st: LeaseState;

  constructor(
    task: LeaseTask,
    private readonly settings: LeaseKeeperSettings,
    private readonly deps: MachineDeps,
    nowMs: number,
    expectedBids?: number,
  ) {
    this.task = { ...task };
    this.attempt = task.attempt;
    this.expectedBids = expectedBids ?? null;
    this.st = { kind: "collecting", deadlineMs: nowMs + this.drawWindow() };
  }

  get taskId(): string {
    return this.task.task_id;
  }

  get state(): Readonly<LeaseState> {
    return this.st;
  }

  get currentAttempt(): number {
    return this.attempt;
  }

  isDone(): boolean {
    return this.st.kind === "done";
  }

  /** The actions of the machine's creation (the first schedule). */
  start(): KeeperAction[] {
    return this.withSchedule([]);
  }

  /** Local monotonic time the machine wants its next tick, if any. */
  nextWakeMs(): number | null {
    switch (this.st.kind) {
      case "collecting":
        return this.st.deadlineMs;
      case "leased":
        return this.st.lastRenewalMs + this.settings.leaseTtlMs;
      case "reawardWait":
      case "unschedulable":
        return this.st.untilMs;
      case "awarding":
      case "done":
        return null;
    }
  }

  step(input: MachineInput): KeeperAction[] {
    if (this.st.kind === "done") return [];
    const out: KeeperAction[] = [];
    switch (input.type) {
      case "bid":
        this.onBid(input.bid, input.nowMs, out);
        break;
      case "tick":
        this.onTick(input.nowMs, out);
        break;
      case "awardResult":
        this.onAwardResult(input.result, input.nowMs, out);
        break;
      case "leaseObserved":
        this.onLeaseObserved(input.lease, input.nowMs);
        break;
      case "leaseDeleted":
        if (this.st.kind !== "awarding") this.st = { kind: "done", outcome: "deleted" };
        break;
      case "nodeEvent":
        this.onNodeEvent(input.status, input.node_id, input.nowMs);
        break;
      case "task":
        this.onTask(input.task, input.nowMs, input.expectedBids);
        break;
    }
    return this.withSchedule(out);
  }

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
    // Another keeper republished: follow its attempt with a fresh window.
    if (task.attempt <= this.attempt || this.st.kind === "leased" || this.st.kind === "awarding") return;
    this.attempt = task.attempt;
    this.expectedBids = expectedBids ?? this.expectedBids;
    this.bids.clear();
    this.excluded.clear();
    this.st = { kind: "collecting", deadlineMs: nowMs + this.drawWindow() };
  }

  private onBid(bid: LeaseBid, nowMs: number, out: KeeperAction[]): void {
    if (bid.task_id !== this.task.task_id) return;
    this.bids.set(bid.node_id, bid);
    if (this.st.kind === "collecting") {
      if (this.expectedBids !== null && this.bids.size >= this.expectedBids) this.closeWindow(nowMs, out);
    } else if (this.st.kind === "unschedulable") {
      // A late usable bid cures the wait at once.
      const best = bestBid(this.bids.values(), this.task, this.settings.hash, this.excluded);
      if (best !== null) this.award(best, null, out);
    }
  }

  private onTick(nowMs: number, out: KeeperAction[]): void {
    const st = this.st;
    switch (st.kind) {
      case "collecting":
        if (nowMs >= st.deadlineMs) this.closeWindow(nowMs, out);
        return;
      case "unschedulable":
        if (nowMs >= st.untilMs) this.republish(nowMs, out);
        return;
      case "reawardWait":
        if (nowMs >= st.untilMs) {
          const best = bestBid(this.bids.values(), this.task, this.settings.hash, this.excluded);
          if (best !== null) this.award(best, st.previousWinner, out, st.prevRevision);
          else this.republish(nowMs, out);
        }
        return;
      case "leased":
        if (nowMs >= st.lastRenewalMs + this.settings.leaseTtlMs) {
          this.excluded.add(st.winner);
          out.push(
            this.emit("expired", {
              node_id: st.winner,
              fencing_token: st.revision,
              details: `no renewal seen for ${nowMs - st.lastRenewalMs} ms`,
              dedup: `expired/${st.revision}`,
            }),
          );
          this.waitReaward(nowMs, st.revision, st.winner);
        }
        return;
      case "awarding":
      case "done":
        return;
    }
  }

  private onAwardResult(result: AwardResult, nowMs: number, out: KeeperAction[]): void {
    const st = this.st;
    if (st.kind !== "awarding") return;
    if (result.ok) {
      this.noteRevision(result.revision);
      this.st = { kind: "leased", winner: st.bid.node_id, revision: result.revision, lastRenewalMs: nowMs };
      const preempting = (st.bid.victims?.length ?? 0) > 0;
      const details = [
        st.previousWinner !== null ? `re-award after ${st.previousWinner}` : "",
        preempting ? `preempting ${(st.bid.victims ?? []).map((v) => `${v.ns}/${v.pod}`).join(", ")}` : "",
      ]
        .filter((s) => s !== "")
        .join("; ");
      out.push(
        this.emit("leased", {
          node_id: st.bid.node_id,
          fencing_token: result.revision,
          dedup: `leased/${result.revision}`,
          ...(details !== "" ? { details } : {}),
        }),
      );
      return;
    }
    if (result.current !== null) {
      this.followLease(result.current, nowMs);
    } else {
      // The key vanished under us: try again with a create after a short wait.
      this.lastRevision = null;
      this.waitReaward(nowMs, null, st.previousWinner, false);
    }
  }

  private onLeaseObserved(lease: ObservedLease, nowMs: number): void {
    if (this.lastRevision !== null && lease.revision <= this.lastRevision) return;
    if (this.st.kind === "awarding") {
      // Our write will be refused or has landed; the award result decides.
      return;
    }
    this.followLease(lease, nowMs);
  }

  private onNodeEvent(status: NodeEventStatus, nodeId: string, nowMs: number): void {
    const st = this.st;
    if (st.kind !== "leased" || st.winner !== nodeId) return; // a stale winner is fenced elsewhere
    if (status === "failed") {
      this.excluded.add(nodeId);
      this.waitReaward(nowMs, st.revision, nodeId);
      return;
    }
    this.st = { kind: "done", outcome: status };
  }

  private followLease(lease: ObservedLease, nowMs: number): void {
    this.noteRevision(lease.revision);
    this.excluded.delete(lease.winner_id); // it renews, so it is alive
    this.st = { kind: "leased", winner: lease.winner_id, revision: lease.revision, lastRenewalMs: nowMs };
  }

  private noteRevision(revision: number): void {
    if (this.lastRevision === null || revision > this.lastRevision) this.lastRevision = revision;
  }

  private closeWindow(nowMs: number, out: KeeperAction[]): void {
    const best = bestBid(this.bids.values(), this.task, this.settings.hash, this.excluded);
    if (best !== null) {
      this.award(best, null, out);
      return;
    }
    this.unschedulableCount += 1;
    const wait = backoffMs(
      this.unschedulableCount,
      this.settings.unschedulableBaseMs,
      this.settings.unschedulableCapMs,
    );
    out.push(
      this.emit("unschedulable", {
        reasons: collectReasons(this.bids.values(), this.task, this.excluded),
        details: `retry in ${wait} ms`,
        dedup: `unschedulable/${this.attempt}`,
      }),
    );
    this.st = { kind: "unschedulable", untilMs: nowMs + wait };
  }

  private award(
    bid: LeaseBid,
    previousWinner: string | null,
    out: KeeperAction[],
    prevRevision?: number | null,
  ): void {
    const prev = prevRevision !== undefined ? prevRevision : this.lastRevision;
    this.st = { kind: "awarding", bid, prevRevision: prev, previousWinner };
    out.push({ type: "award", bid, prevRevision: prev });
  }

  private waitReaward(
    nowMs: number,
    prevRevision: number | null,
    previousWinner: string | null,
    count = true,
  ): void {
    if (count) this.reawards += 1;
    const wait = backoffMs(
      Math.max(1, this.reawards),
      this.settings.reawardBaseMs,
      this.settings.reawardCapMs,
    );
    this.st = { kind: "reawardWait", untilMs: nowMs + wait, prevRevision, previousWinner };
  }

  private republish(nowMs: number, out: KeeperAction[]): void {
    this.attempt += 1;
    this.bids.clear();
    this.excluded.clear();
    out.push({ type: "republish", attempt: this.attempt });
    this.st = { kind: "collecting", deadlineMs: nowMs + this.drawWindow() };
  }

  private emit(
    status: KeeperEvent["status"],
    fields: { node_id?: string; fencing_token?: number; reasons?: string[]; details?: string; dedup: string },
  ): KeeperAction {
    const { dedup, ...rest } = fields;
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
