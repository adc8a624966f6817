// Local input/output types of the watchdog's pure logic. Field names follow
// the wire Heartbeat (protocol/schema/messages.ts) plus the fields this logic
// needs that the schema does not carry yet: template_hash, slot, retiring,
// pending (see README.md in this folder).

/** The Deployment's spec as read from KV (DESIGN §4). */
export interface WatchdogSpec {
  replicas: number;
  generation: number;
  template_hash: string;
  max_surge: number;
  max_unavailable: number;
}

/** A clone whose slot is held but whose pod has not heartbeated yet. */
export interface PendingClone {
  slot: number;
  claim: string;
  /** How long the sender has known it (relative, so clock skew does not matter). */
  age_ms: number;
}

export interface WatchdogHeartbeat {
  pod: string;
  node: string;
  ns: string;
  parent: string;
  generation: number;
  /**
   * KV revision of the Deployment object the sender has last observed (a
   * delete is a revision too). A receiver that is behind defers its decisions.
   */
  spec_revision: number;
  healthy: boolean;
  ready: boolean;
  /** Sender's wall clock; carried for humans, never used for liveness. */
  ts: number;
  template_hash: string;
  /** Sender's start time (its wall clock); orders "newest" for surplus retirement. */
  started_at: number;
  /** Clone slot the sender holds, null while it has none. */
  slot: number | null;
  /** A farewell: the sender is retiring and must not be counted from now on. */
  retiring: boolean;
  /** Clones the sender (leader, or a retiring replica handing off) is waiting for. */
  pending: PendingClone[];
}

export interface SlotClaim {
  index: number;
  /** Holder id written in the slot by whoever handed it over (the clone's task id, or the pod name). */
  claim: string;
}

export interface WatchdogIdentity {
  pod: string;
  node: string;
  ns: string;
  parent: string;
  /** Wall clock at start (ordering only). */
  started_at: number;
  template_hash: string;
  generation: number;
  /** Slot handed over by the clone Task (env), if any. */
  slot?: SlotClaim;
}

export type SlotOp = "acquire" | "renew" | "transfer";
/** `unreachable`: the store did not answer (timeout, no connection) — different from a refusal. */
export type SlotOutcome = "granted" | "denied" | "unreachable";

export type WatchdogInput =
  /**
   * Time passes. `lagMs`: how late the driver's timer fired (event-loop lag),
   * time this process ran behind its schedule; see WatchdogReplica's pause credit.
   */
  | { type: "tick"; nowMs: number; lagMs?: number }
  | { type: "heartbeat"; hb: WatchdogHeartbeat; nowMs: number }
  /** The Deployment as the KV watch shows it; null once deleted. `revision` is its KV revision. */
  | { type: "spec"; spec: WatchdogSpec | null; revision: number; nowMs: number }
  /** One liveness + readiness probe result of the local app. */
  | { type: "probe"; live: boolean; ready: boolean; nowMs: number }
  /** The app container exited: no hysteresis, no TTL wait. */
  | { type: "appDied"; nowMs: number }
  | { type: "slotResult"; op: SlotOp; slot: number; claim: string; outcome: SlotOutcome; nowMs: number }
  /**
   * The clone asked for `slot`/`claim` was not published and never will be: the
   * dispatch record it is built from did not reach the object's template within
   * recordWaitMs (the dispatcher has not recorded the new generation yet).
   */
  | { type: "cloneUnbuilt"; slot: number; claim: string; reason: CloneUnbuiltReason; nowMs: number };

export type CloneUnbuiltReason = "record-behind";

export type RetireReason =
  "surplus" | "rollout" | "deleted" | "app-died" | "unhealthy" | "slot-lost" | "no-slot";

export type WatchdogAction =
  | { type: "heartbeat"; hb: Omit<WatchdogHeartbeat, "ts"> }
  /** KV create of the slot key with `claim` (refused if the key exists). */
  | { type: "acquireSlot"; slot: number; key: string; claim: string }
  /** KV write of `claim` if the key is absent or already holds `claim`; refreshes its TTL. */
  | { type: "renewSlot"; slot: number; key: string; claim: string }
  /**
   * KV CAS from `from` to `to`, or create with `to` when the key is absent (a dying
   * replica hands its slot to its replacement; a started clone moves its slot from
   * the task's claim to its pod name).
   */
  | { type: "transferSlot"; slot: number; key: string; from: string; to: string }
  /** KV delete if the key still holds `claim`; no answer needed. */
  | { type: "releaseSlot"; slot: number; key: string; claim: string }
  /** Publish a clone Task of the spec's template carrying the slot and claim. */
  | { type: "clone"; slot: number; key: string; claim: string; generation: number; template_hash: string }
  /** Ask the node to remove this pod. The machine is finished after this. */
  | { type: "retire"; reason: RetireReason }
  | { type: "log"; level: "info" | "warn"; msg: string };
