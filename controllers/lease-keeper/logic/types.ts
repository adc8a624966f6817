// Local input/output types of the lease-keeper's pure logic, mirroring the
// wire schema's field names (protocol/schema: Task, Bid, Lease, Event).

export interface LeaseTask {
  task_id: string;
  priority: number;
  /** Republished tasks carry attempt + 1 (the dedup id of a republish must include it). */
  attempt: number;
}

export interface BidVictim {
  ns: string;
  pod: string;
  task_id: string;
  priority: number;
}

export interface LeaseBid {
  task_id: string;
  node_id: string;
  score: number;
  fit: boolean;
  reasons: string[];
  victims?: BidVictim[];
}

/** The lease as the KV watch shows it: who holds it and at which revision (the fencing token). */
export interface ObservedLease {
  winner_id: string;
  revision: number;
}

export type NodeEventStatus = "deployed" | "failed" | "removed" | "preempted";

export type MachineInput =
  | { type: "bid"; bid: LeaseBid; nowMs: number }
  | { type: "tick"; nowMs: number }
  | { type: "awardResult"; result: AwardResult; nowMs: number }
  | { type: "leaseObserved"; lease: ObservedLease; nowMs: number }
  | { type: "leaseDeleted"; nowMs: number }
  | { type: "nodeEvent"; status: NodeEventStatus; node_id: string; nowMs: number }
  | { type: "task"; task: LeaseTask; expectedBids?: number; nowMs: number };

/** What the I/O layer reports after trying the KV create / CAS update of an award. */
export type AwardResult =
  | { ok: true; revision: number }
  /** Someone else wrote first; `current` is the lease now in KV (null if the key is gone). */
  | { ok: false; current: ObservedLease | null };

export type KeeperEventStatus = "leased" | "expired" | "unschedulable";

export interface KeeperEvent {
  status: KeeperEventStatus;
  task_id: string;
  node_id?: string;
  attempt: number;
  fencing_token?: number;
  reasons?: string[];
  details?: string;
  /**
   * Same on every lease-keeper that emits the same fact, so JetStream's
   * Nats-Msg-Id dedup keeps one copy when several keepers judge it.
   */
  dedup_id: string;
}

export type KeeperAction =
  /** KV create when prevRevision is null, else update expecting prevRevision; then notify the winner. */
  | { type: "award"; bid: LeaseBid; prevRevision: number | null }
  | { type: "emit"; event: KeeperEvent }
  /** Publish the task again with this attempt number (fresh bids). */
  | { type: "republish"; attempt: number }
  /** Call tick at (or after) this local monotonic time; replaces any earlier request for this task. */
  | { type: "schedule"; atMs: number };
