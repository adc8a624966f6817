// What a reconcile must publish, from the object's current generation and the
// dispatch record of what was published before (level-based: the same inputs
// always give the same plan, in any dispatcher, after any restart). Pure.
import type { WorkloadKind } from "../../../protocol/index.js";
import type { TaskTemplate } from "./render.js";

/**
 * Progress of one workload's fan-out, kept in KV so a restarted (or another)
 * dispatcher continues where the last one stopped. Slots [0, next) have had
 * Tasks; those in [first, next) were published for `generation`.
 */
export interface DispatchRecord {
  kind: WorkloadKind;
  ns: string;
  name: string;
  uid: string;
  /** The generation this record is about. */
  generation: number;
  template_hash: string;
  /** First generation that had this template: pods from it on count as updated. */
  template_generation: number;
  /** spec.replicas at `generation`. */
  replicas: number;
  first: number;
  next: number;
  /**
   * The manifests of `generation`: one for a Deployment, one per ordinal for a
   * StatefulSet. Sidecars that clone read the current manifest from here.
   */
  manifests: { key: string; sha256: string }[];
  /**
   * What the Tasks of `generation` ask for besides ids and manifest; a
   * sidecar's clone Task copies it. Absent in records of older dispatchers.
   */
  task?: TaskTemplate;
  /** Wall clock of the write, for humans. */
  ts: number;
}

export interface FanoutTarget {
  kind: WorkloadKind;
  uid: string;
  generation: number;
  replicas: number;
  templateHash: string;
}

export type PlanReason =
  "new" | "resume" | "template-changed" | "scaled-up" | "scaled-down" | "unchanged" | "up-to-date" | "stale";

export interface FanoutPlan {
  reason: PlanReason;
  /** Slots to publish, [from, to); empty when from >= to. */
  from: number;
  to: number;
  /** The record once everything is published (its `next` is `to`). */
  record: Omit<DispatchRecord, "kind" | "ns" | "name" | "ts" | "manifests" | "task">;
  /** StatefulSet members at or above this ordinal must go (scale-down without a watchdog). */
  removeOrdinalsFrom?: number;
  /** Whether the stored record must be rewritten (false: nothing changed at all). */
  writeRecord: boolean;
}

export function isComplete(r: Pick<DispatchRecord, "next" | "replicas">): boolean {
  return r.next >= r.replicas;
}

/**
 * Cases, for generation g with N replicas and template hash H:
 * - no record, or one for another uid: publish [0, N).
 * - a record for a later generation: our view is stale; do nothing.
 * - a record for g: publish what is missing, [next, N).
 * - a record for an earlier generation with hash H: only the replica count
 *   changed; publish the new slots [covered, N) (scale up), none on scale down
 *   (the watchdogs retire the surplus; StatefulSet members above N are removed).
 * - a record for an earlier generation with another hash: a Deployment gets N
 *   Tasks of the new generation (the watchdogs retire the old template); a
 *   StatefulSet is replaced in place by its Raft group, member by member, so
 *   only new ordinals get Tasks.
 */
export function planFanout(target: FanoutTarget, record: DispatchRecord | undefined): FanoutPlan {
  const { uid, generation, replicas: n, templateHash: hash } = target;
  const fresh = (from: number, reason: PlanReason, templateGeneration = generation): FanoutPlan => ({
    reason,
    from,
    to: Math.max(from, n),
    record: {
      uid,
      generation,
      template_hash: hash,
      template_generation: templateGeneration,
      replicas: n,
      first: Math.min(from, n),
      next: Math.max(from, n),
    },
    writeRecord: true,
  });
  if (record === undefined || record.uid !== uid) return fresh(0, "new");
  if (record.generation > generation) {
    return { reason: "stale", from: 0, to: 0, record: strip(record), writeRecord: false };
  }
  if (record.generation === generation) {
    if (record.next >= n)
      return { reason: "up-to-date", from: n, to: n, record: strip(record), writeRecord: false };
    return {
      ...fresh(record.next, "resume", record.template_generation),
      record: { ...strip(record), replicas: n, next: n },
    };
  }
  const covered = Math.min(record.next, record.replicas);
  const removeOrdinalsFrom = target.kind === "StatefulSet" && record.replicas > n ? n : undefined;
  const withRemoval = (p: FanoutPlan): FanoutPlan =>
    removeOrdinalsFrom !== undefined ? { ...p, removeOrdinalsFrom } : p;
  if (record.template_hash === hash || target.kind === "StatefulSet") {
    const templateGeneration = record.template_hash === hash ? record.template_generation : generation;
    const reason: PlanReason =
      record.template_hash !== hash
        ? "template-changed"
        : n > record.replicas
          ? "scaled-up"
          : n < record.replicas
            ? "scaled-down"
            : covered < n
              ? "resume"
              : "unchanged";
    if (n > covered) return withRemoval(fresh(covered, reason, templateGeneration));
    return withRemoval({ ...fresh(n, reason, templateGeneration), from: n, to: n });
  }
  return fresh(0, "template-changed");
}

function strip(r: DispatchRecord): FanoutPlan["record"] {
  return {
    uid: r.uid,
    generation: r.generation,
    template_hash: r.template_hash,
    template_generation: r.template_generation,
    replicas: r.replicas,
    first: r.first,
    next: r.next,
  };
}
