// What a reconcile must publish, from the object's current generation and the
// dispatch record of what was published before (level-based: the same inputs
// always give the same plan, in any dispatcher, after any restart). Pure.
import type { Task, WorkloadKind } from "../../../protocol/index.js";
import type { RevivalProgress } from "../logic/revive.js";
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
  /**
   * The latest revival of `generation` (every replica was gone, so the
   * dispatcher published its Tasks again, ../logic/revive.ts). Claimed by
   * compare-and-set before its first Task, so several dispatchers publish a
   * round once; carried over by every write of the same generation.
   */
  revival?: RevivalProgress;
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

/**
 * What the dispatcher knows of a Deployment's pods when a later generation
 * comes: how many some node reports starting or running. Each such pod runs a
 * watchdog, which reads the new spec from the object and acts on it.
 */
export interface ReplicaCensus {
  live: number;
}

export type PlanReason =
  "new" | "resume" | "template-changed" | "scaled-up" | "scaled-down" | "unchanged" | "up-to-date" | "stale";

export interface FanoutPlan {
  reason: PlanReason;
  /** Slots to publish, [from, to); empty when from >= to. */
  from: number;
  to: number;
  /** The record once everything is published (its `next` is `to`). */
  record: Omit<DispatchRecord, "kind" | "ns" | "name" | "ts" | "manifests" | "task" | "revival">;
  /** StatefulSet members at or above this ordinal must go (scale-down without a watchdog). */
  removeOrdinalsFrom?: number;
  /** Whether the stored record must be rewritten (false: nothing changed at all). */
  writeRecord: boolean;
  /** The Deployment's live watchdogs carry this generation out; the dispatcher only records it. */
  byWatchdogs: boolean;
}

/** What one Task built from a record carries of its own. */
export interface RecordTaskFields {
  taskId: string;
  ns: string;
  parent: string;
  origin: Task["origin"];
  /** Added to the template's hints. */
  hints: Record<string, string>;
  nonce: string;
  ts: number;
}

/**
 * One replica's Task from a Deployment's dispatch record: its generation, its
 * manifest and `template` (placement, hints). Unchecked: the caller parses it
 * and names its own error (a watchdog's clone, a dispatcher's revival).
 */
export function taskFromRecord(
  record: Pick<DispatchRecord, "uid" | "generation">,
  manifest: { key: string; sha256: string },
  template: TaskTemplate,
  one: RecordTaskFields,
): Task {
  return {
    ...template,
    task_id: one.taskId,
    kind: "Deployment",
    ns: one.ns,
    parent: one.parent,
    parent_uid: record.uid,
    generation: record.generation,
    manifest_ref: { key: manifest.key, sha256: manifest.sha256 },
    hints: { ...template.hints, ...one.hints },
    attempt: 0,
    origin: one.origin,
    nonce: one.nonce,
    ts: one.ts,
  };
}

export function isComplete(r: Pick<DispatchRecord, "next" | "replicas">): boolean {
  return r.next >= r.replicas;
}

/**
 * Whether the plan depends on a census: a later generation of a Deployment
 * that had replicas. A new object, a resumed generation and a Deployment
 * scaled to zero (every watchdog retires on seeing 0) are planned without one.
 */
export function needsCensus(
  target: Pick<FanoutTarget, "kind" | "uid" | "generation">,
  record: DispatchRecord | undefined,
): boolean {
  return (
    target.kind === "Deployment" &&
    record !== undefined &&
    record.uid === target.uid &&
    record.generation < target.generation &&
    record.replicas > 0
  );
}

/**
 * Cases, for generation g with N replicas and template hash H:
 * - no record, or one for another uid: publish [0, N) (the initial fan-out).
 * - a record for a later generation: our view is stale; do nothing.
 * - a record for g: publish what is missing, [next, N).
 * - a record for an earlier generation of a Deployment whose watchdogs live
 *   (census.live > 0, and the record's replicas > 0): no Tasks. The watchdogs
 *   read the spec from the object and scale or roll (maxSurge/maxUnavailable)
 *   behind clone-slot leases, cloning from this record's manifests; Tasks of
 *   ours would only add pods beyond replicas + maxSurge. The record moves to
 *   g with `next` = N.
 * - otherwise an earlier generation with hash H: only the replica count
 *   changed; publish the new slots [covered, N) (scale up; after a scale to
 *   zero covered is 0, so all N), none on scale down (StatefulSet members
 *   above N are removed).
 * - otherwise another hash: a Deployment with no replica alive gets N Tasks
 *   of the new generation; a StatefulSet is replaced in place by its Raft
 *   group, member by member, so only new ordinals get Tasks.
 * Race bound: a Deployment's pod, clone or not, holds a clone slot of
 * [0, N + maxSurge) or retires once live peers hold them all. A census that
 * misses replicas (scheduled, not started yet) costs pods that retire at once,
 * never more slot holders than N + maxSurge; one that counts replicas already
 * gone (a node lost within the provider TTL) leaves the change to nobody until
 * the next generation.
 */
export function planFanout(
  target: FanoutTarget,
  record: DispatchRecord | undefined,
  census?: ReplicaCensus,
): FanoutPlan {
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
    byWatchdogs: false,
  });
  if (record === undefined || record.uid !== uid) return fresh(0, "new");
  if (record.generation > generation) {
    return { reason: "stale", from: 0, to: 0, record: strip(record), writeRecord: false, byWatchdogs: false };
  }
  if (record.generation === generation) {
    if (record.next >= n)
      return {
        reason: "up-to-date",
        from: n,
        to: n,
        record: strip(record),
        writeRecord: false,
        byWatchdogs: false,
      };
    return {
      ...fresh(record.next, "resume", record.template_generation),
      record: { ...strip(record), replicas: n, next: n },
    };
  }
  const covered = Math.min(record.next, record.replicas);
  const sameTemplate = record.template_hash === hash;
  const templateGeneration = sameTemplate ? record.template_generation : generation;
  const reason: PlanReason = !sameTemplate
    ? "template-changed"
    : n > record.replicas
      ? "scaled-up"
      : n < record.replicas
        ? "scaled-down"
        : covered < n
          ? "resume"
          : "unchanged";
  // fresh(n) publishes nothing and moves the record to this generation.
  const plan = fresh(n > covered ? covered : n, reason, templateGeneration);
  if (target.kind === "Deployment") {
    if (needsCensus(target, record) && (census?.live ?? 0) > 0) {
      return { ...fresh(n, reason, templateGeneration), byWatchdogs: true };
    }
    return sameTemplate ? plan : fresh(0, reason);
  }
  return record.replicas > n ? { ...plan, removeOrdinalsFrom: n } : plan;
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
