// Local input/output types of the lease-keeper's pure logic, mirroring the
// wire schema's field names (protocol/schema: Task, Bid, Lease, Event).

export interface LeaseTask {
  task_id: string;
  priority: number;
  /** Republished tasks carry attempt + 1 (the dedup id of a republish must include it). */
  attempt: number;
  /** Replicas the task stands for (a batch, DESIGN §3.6); default 1. */
  replicas?: number;
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
  /** Replicas of the batch this node can take (default 1 for a usable bid). */
  offered?: number;
}

/** The lease as the KV watch shows it: who holds it and at which revision (the fencing token). */
export interface ObservedLease {
  winner_id: string;
  revision: number;
  /** Replicas the lease grants (default 1). */
  granted?: number;
  /** The award this revision belongs to (default: this revision, i.e. a fresh award). */
  fencing_token?: number;
}

export type NodeEventStatus = "deployed" | "failed" | "removed" | "preempted";

export type MachineInput =
  | { type: "bid"; bid: LeaseBid; nowMs: number }
  | { type: "tick"; nowMs: number }
  /** `first`: the share the award was for (default 0, the task's own key). */
  | { type: "awardResult"; result: AwardResult; first?: number; nowMs: number }
  | { type: "leaseObserved"; lease: ObservedLease; first?: number; nowMs: number }
  | { type: "leaseDeleted"; first?: number; nowMs: number }
  /** `fencing_token`: the award the node speaks about; without it, the node's first lease of the task. */
  | { type: "nodeEvent"; status: NodeEventStatus; node_id: string; fencing_token?: number; nowMs: number }
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
  /**
   * KV create when prevRevision is null, else update expecting prevRevision; then notify the winner.
   * A batch share names its replicas: `granted` of them from `first` (absent for a single-replica task).
   */
  | { type: "award"; bid: LeaseBid; prevRevision: number | null; first?: number; granted?: number }
  | { type: "emit"; event: KeeperEvent }
  /** Publish the task again with this attempt number (fresh bids). */
  | { type: "republish"; attempt: number }
  /** Call tick at (or after) this local monotonic time; replaces any earlier request for this task. */
  | { type: "schedule"; atMs: number };
