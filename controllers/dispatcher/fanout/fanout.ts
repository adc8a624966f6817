// The fan-out (DESIGN §3.1): for a workload's current generation, store the
// rendered manifests, then publish the Tasks its plan calls for, recording
// progress in a dispatch record so any dispatcher, restarted or not, carries on
// where the last stopped. Re-publishing is safe: task ids are deterministic and
// the stream drops a repeated Nats-Msg-Id within its dedup window. A later
// generation of a Deployment with live replicas is only recorded: its
// watchdogs scale and roll it (DESIGN §4).
import {
  deterministicTaskId,
  parseTask,
  shardOf,
  subjects,
  type ProviderRecord,
  type Task,
  type Workload,
  type WorkloadKind,
} from "../../../protocol/index.js";
import type { Logger } from "../../common/log.js";
import { revivalEligible, revivalUnfinished, type ReviveTarget } from "../logic/revive.js";
import {
  needsCensus,
  planFanout,
  taskFromRecord,
  type DispatchRecord,
  type FanoutPlan,
  type FanoutTarget,
  type PlanReason,
  type ReplicaCensus,
} from "./plan.js";
import {
  RecordConflictError,
  liveReplicasFrom,
  type LiveReplicas,
  type EventPublisher,
  type ManifestWriter,
  type PodRemover,
  type ProviderDirectory,
  type RecordRef,
  type RecordStore,
  type StoredRecord,
  type TaskPublisher,
} from "./ports.js";
import {
  buildTask,
  renderWorkload,
  taskTemplateOf,
  type RenderOptions,
  type RenderedWorkload,
} from "./render.js";

export interface FanoutHooks {
  /** After a reconcile stored its manifests, before its first Task; a throw aborts it (a crash point for tests). */
  afterManifestsStored?(r: RenderedWorkload): void | Promise<void>;
  /** After each Task the stream acknowledged; `index` counts from 0 within one reconcile. */
  afterTaskPublished?(task: Task, index: number): void | Promise<void>;
}

export interface FanoutOptions {
  tasks: TaskPublisher;
  manifests: ManifestWriter;
  records: RecordStore;
  /** Needed to remove StatefulSet members on scale-down and pods of deleted workloads. */
  providers?: ProviderDirectory;
  /**
   * A Deployment's live pods, asked when a later generation comes (its watchdogs
   * act on it when any live). Default: from `providers`; with neither, none are
   * known and the fan-out publishes as for a Deployment with no replica alive.
   */
  liveReplicas?: LiveReplicas;
  remover?: PodRemover;
  events?: EventPublisher;
  render: RenderOptions;
  prefix?: string;
  /** Number of task shards (`<prefix>.scheduler.tasks.<0..shards-1>`). */
  shards: number;
  /** Wall clock in ms (Task.ts, record ts). */
  now: () => number;
  nonce: () => string;
  logger: Logger;
  /** Tasks in flight at once (default 32). */
  publishConcurrency?: number;
  /** Record progress after this many Tasks (default 256), so a restart re-publishes at most this many. */
  checkpointEvery?: number;
  hooks?: FanoutHooks;
}

export interface ReconcileResult {
  readonly reason: PlanReason | "deleting";
  readonly generation: number;
  readonly published: number;
  readonly duplicates: number;
  readonly removed: number;
  /** The Deployment's live watchdogs carry this generation out (nothing published). */
  readonly byWatchdogs: boolean;
  /** Live replicas counted for the plan, when it needed a count. */
  readonly live?: number;
  /** The dispatch record after this reconcile (absent for an object being deleted). */
  readonly record?: DispatchRecord;
}

export type ReviveOutcome =
  /** A new round was claimed and its Tasks published. */
  | "published"
  /** A round someone claimed but did not finish was published (same task ids: the stream drops repeats). */
  | "resumed"
  /** The record moved on (another dispatcher revived first, or the object changed): nothing published. */
  | "superseded"
  /** Not a fully dispatched Deployment with replicas at this generation: nothing published. */
  | "ineligible";

export interface ReviveResult {
  readonly outcome: ReviveOutcome;
  readonly generation: number;
  /** The round published, or the record's round when nothing was. */
  readonly round: number;
  readonly published: number;
  readonly duplicates: number;
  readonly record?: DispatchRecord;
}

/** Task hint naming the revival round a Task belongs to (for people and tests; nothing acts on it). */
export const REVIVAL_HINT = "beemesh.io/revival";

/** Revival Tasks get ids of their own per round: the first ids may still sit in the stream's dedup window. */
export function revivalTaskId(
  r: Pick<RenderedWorkload, "uid" | "generation" | "createdMs">,
  round: number,
  slot: number,
): string {
  return deterministicTaskId({
    uid: r.uid,
    generation: r.generation,
    slot: `revive-${round}-${slot}`,
    timeMs: r.createdMs,
  });
}

export interface GoneWorkload {
  kind: WorkloadKind;
  ns: string;
  name: string;
  /** Absent when the store no longer knew the object's last state. */
  uid?: string;
  generation?: number;
}

export interface RetireResult {
  readonly asked: number;
  readonly removed: number;
}

export class FanoutError extends Error {
  override readonly name = "FanoutError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`dispatcher-fanout: ${message}`, options);
  }
}

const MAX_RECORD_ATTEMPTS = 5;

export function workloadKey(ref: RecordRef): string {
  return `${ref.kind}/${ref.ns}/${ref.name}`;
}

export class Fanout {
  private readonly o: FanoutOptions;
  private readonly subjects: ReturnType<typeof subjects>;
  private readonly concurrency: number;
  private readonly checkpointEvery: number;
  private readonly liveReplicas: LiveReplicas | undefined;

  constructor(opts: FanoutOptions) {
    if (!Number.isSafeInteger(opts.shards) || opts.shards < 1)
      throw new FanoutError(`shards must be >= 1, got ${opts.shards}`);
    this.o = opts;
    this.subjects = subjects(opts.prefix);
    this.concurrency = Math.max(1, opts.publishConcurrency ?? 32);
    this.checkpointEvery = Math.max(1, opts.checkpointEvery ?? 256);
    this.liveReplicas = opts.liveReplicas ?? (opts.providers ? liveReplicasFrom(opts.providers) : undefined);
  }

  /** Level-based: brings the published Tasks of `w` up to its current generation. */
  async reconcile(w: Workload): Promise<ReconcileResult> {
    const generation = w.metadata.generation ?? 1;
    if (w.metadata.deletionTimestamp !== undefined) {
      return { reason: "deleting", generation, published: 0, duplicates: 0, removed: 0, byWatchdogs: false };
    }
    const r = renderWorkload(w, this.o.render);
    const ref: RecordRef = { kind: r.kind, ns: r.ns, name: r.name };
    const log = this.o.logger.child({ workload: workloadKey(ref), generation });
    let stored = await this.o.records.get(ref);
    const target: FanoutTarget = {
      kind: r.kind,
      uid: r.uid,
      generation,
      replicas: r.replicas,
      templateHash: r.templateHash,
    };
    // Manifests first: a node that receives a Task must find its manifest. A plan
    // that needs a census always writes, so the manifests are stored meanwhile:
    // the watchdogs wait for this generation's record to clone.
    let census: ReplicaCensus | undefined;
    let manifestsStored = false;
    if (needsCensus(target, stored?.record) && this.liveReplicas !== undefined) {
      const [live] = await Promise.all([
        this.liveReplicas.count(r.kind, r.ns, r.name),
        this.storeManifests(r),
      ]);
      census = { live };
      manifestsStored = true;
    }
    const plan = planFanout(target, stored?.record, census);
    if (!plan.writeRecord) {
      log.debug("fan-out: nothing to do", { reason: plan.reason });
      return {
        reason: plan.reason,
        generation,
        published: 0,
        duplicates: 0,
        removed: 0,
        byWatchdogs: false,
        ...(stored ? { record: stored.record } : {}),
      };
    }
    if (!manifestsStored) await this.storeManifests(r);
    await this.o.hooks?.afterManifestsStored?.(r);

    const removed =
      plan.removeOrdinalsFrom !== undefined ? await this.removeMembers(r, plan.removeOrdinalsFrom, log) : 0;
    // A revival belongs to its generation: kept by a rewrite of it, dropped by the next.
    const before = stored?.record;
    const revival =
      before?.uid === plan.record.uid && before.generation === plan.record.generation
        ? before.revival
        : undefined;
    const base = (next: number): DispatchRecord => ({
      kind: r.kind,
      ns: r.ns,
      name: r.name,
      ...plan.record,
      next,
      manifests: r.manifests.map((m) => ({ key: m.key, sha256: m.sha256 })),
      task: taskTemplateOf(r),
      ...(revival ? { revival } : {}),
      ts: this.o.now(),
    });
    // The new manifests are recorded before the first Task: watchdogs clone from
    // the record, and must not wait for a long fan-out to finish to find them.
    if (plan.from < plan.to) stored = await this.saveRecord(base(plan.from), stored, plan, log);

    let sinceCheckpoint = 0;
    const { published, duplicates } = await this.publishSlots(
      plan.from,
      plan.to,
      (slot) => buildTask(r, slot, { nonce: this.o.nonce(), ts: this.o.now() }),
      async (start, end) => {
        sinceCheckpoint += end - start;
        if (sinceCheckpoint >= this.checkpointEvery && end < plan.to) {
          stored = await this.saveRecord(base(end), stored, plan, log);
          sinceCheckpoint = 0;
        }
      },
    );
    const saved = await this.saveRecord(base(plan.to), stored, plan, log);
    if (plan.byWatchdogs) {
      log.info("fan-out: recorded; the live watchdogs carry it out", {
        reason: plan.reason,
        live: census?.live,
      });
    } else {
      log.info("fan-out: published", {
        reason: plan.reason,
        slots: `${plan.from}..${plan.to}`,
        published,
        duplicates,
        removed,
        ...(census ? { live: census.live } : {}),
      });
    }
    return {
      reason: plan.reason,
      generation,
      published,
      duplicates,
      removed,
      byWatchdogs: plan.byWatchdogs,
      ...(census ? { live: census.live } : {}),
      record: saved.record,
    };
  }

  /**
   * Every replica of a Deployment is gone (the caller judged it, ../logic/revive.ts):
   * publish its Tasks again, one per replica, from the manifest and task template
   * of its record, under the round after `round` (the record's round the caller
   * saw). The round is claimed in the record by compare-and-set before the first
   * Task, so of several dispatchers one publishes; a claimed round left
   * unfinished is published again under the same ids. The new pods take free
   * clone slots at start like any dispatcher-placed pod, so slot holders stay
   * within replicas + maxSurge whatever survives unseen.
   */
  async revive(w: Workload, round: number): Promise<ReviveResult> {
    const generation = w.metadata.generation ?? 1;
    const r = renderWorkload(w, this.o.render);
    const ref: RecordRef = { kind: r.kind, ns: r.ns, name: r.name };
    const log = this.o.logger.child({ workload: workloadKey(ref), generation });
    const nothing = (outcome: ReviveOutcome, rec?: DispatchRecord): ReviveResult => ({
      outcome,
      generation,
      round: rec?.revival?.round ?? 0,
      published: 0,
      duplicates: 0,
      ...(rec ? { record: rec } : {}),
    });
    const target: ReviveTarget = {
      uid: r.uid,
      generation,
      replicas: r.replicas,
      templateHash: r.templateHash,
      deleting: w.metadata.deletionTimestamp !== undefined,
    };
    if (r.kind !== "Deployment" || target.deleting || r.replicas === 0) return nothing("ineligible");
    let stored = await this.o.records.get(ref);
    for (let attempt = 1; ; attempt++) {
      const rec = stored?.record;
      if (stored === undefined || rec === undefined || !revivalEligible(target, rec))
        return nothing("ineligible", rec);
      const current = rec.revival;
      if ((current?.round ?? 0) !== round) return nothing("superseded", rec);
      if (current !== undefined && revivalUnfinished(rec)) {
        return this.publishRevival(r, stored, current, "resumed", log);
      }
      const claim = { round: round + 1, count: r.replicas, next: 0 };
      try {
        const revision = await this.o.records.put(
          { ...rec, revival: claim, ts: this.o.now() },
          stored.revision,
        );
        const claimed = { record: { ...rec, revival: claim }, revision };
        return this.publishRevival(r, claimed, claim, "published", log);
      } catch (err) {
        if (!(err instanceof RecordConflictError) || attempt >= MAX_RECORD_ATTEMPTS) throw err;
        stored = await this.o.records.get(ref);
      }
    }
  }

  /**
   * Publishes the Tasks of slots [from, to), `concurrency` at a time;
   * `afterBatch` runs after each batch (checkpoints).
   */
  private async publishSlots(
    from: number,
    to: number,
    taskOf: (slot: number) => Task,
    afterBatch?: (start: number, end: number) => Promise<void>,
  ): Promise<{ published: number; duplicates: number }> {
    let published = 0;
    let duplicates = 0;
    for (let start = from; start < to; start += this.concurrency) {
      const end = Math.min(to, start + this.concurrency);
      const acks = await Promise.all(
        range(start, end).map(async (slot) => {
          const task = taskOf(slot);
          const ack = await this.o.tasks.publishTask(
            this.subjects.tasks(shardOf(task.task_id, this.o.shards)),
            task,
          );
          const index = published++;
          await this.o.hooks?.afterTaskPublished?.(task, index);
          return ack;
        }),
      );
      duplicates += acks.filter((a) => a.duplicate).length;
      await afterBatch?.(start, end);
    }
    return { published, duplicates };
  }

  private async publishRevival(
    r: RenderedWorkload,
    stored: StoredRecord,
    revival: NonNullable<DispatchRecord["revival"]>,
    outcome: "published" | "resumed",
    log: Logger,
  ): Promise<ReviveResult> {
    const rec = stored.record;
    const { published, duplicates } = await this.publishSlots(revival.next, revival.count, (slot) =>
      this.revivalTask(r, rec, revival.round, slot),
    );
    const done = { ...revival, next: revival.count };
    const record = await this.finishRevival({ ...rec, revival: done, ts: this.o.now() }, stored.revision);
    log.warn("revive: no replica was left; published the Tasks again", {
      round: revival.round,
      outcome,
      published,
      duplicates,
    });
    return { outcome, generation: rec.generation, round: revival.round, published, duplicates, record };
  }

  /** Marks the round published; whoever wrote meanwhile at least as far along wins. */
  private async finishRevival(record: DispatchRecord, expected: number): Promise<DispatchRecord> {
    let next = record;
    let revision = expected;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.o.records.put(next, revision);
        return next;
      } catch (err) {
        if (!(err instanceof RecordConflictError) || attempt >= MAX_RECORD_ATTEMPTS) throw err;
        const theirs = await this.o.records.get(record);
        const mine = record.revival!;
        const other = theirs?.record.revival;
        if (
          theirs === undefined ||
          theirs.record.uid !== record.uid ||
          theirs.record.generation !== record.generation ||
          other === undefined ||
          other.round !== mine.round ||
          other.next >= mine.next
        )
          return theirs?.record ?? record;
        next = { ...theirs.record, revival: mine, ts: this.o.now() };
        revision = theirs.revision;
      }
    }
  }

  /** A revival Task: the record's manifest and task template, so it runs what the watchdogs clone. */
  private revivalTask(r: RenderedWorkload, rec: DispatchRecord, round: number, slot: number): Task {
    const manifest = rec.manifests[0];
    if (manifest === undefined) throw new FanoutError(`the record of ${r.ns}/${r.name} names no manifest`);
    const task = taskFromRecord(rec, manifest, rec.task ?? taskTemplateOf(r), {
      taskId: revivalTaskId(r, round, slot),
      ns: r.ns,
      parent: r.name,
      origin: "dispatcher",
      hints: { [REVIVAL_HINT]: String(round) },
      nonce: this.o.nonce(),
      ts: this.o.now(),
    });
    const parsed = parseTask(task);
    if (!parsed.ok)
      throw new FanoutError(`revival task for ${r.ns}/${r.name} slot ${slot} is invalid`, {
        cause: parsed.error,
      });
    return parsed.value;
  }

  private async storeManifests(r: RenderedWorkload): Promise<void> {
    for (const m of r.manifests) await this.o.manifests.storeManifest(m.key, m.bytes);
  }

  /**
   * A workload is gone: ask node agents to remove its pods (its watchdogs retire
   * too, but a StatefulSet has none), publish a notice, forget its record.
   */
  async retire(gone: GoneWorkload): Promise<RetireResult> {
    const ref: RecordRef = { kind: gone.kind, ns: gone.ns, name: gone.name };
    const log = this.o.logger.child({ workload: workloadKey(ref) });
    const stored = await this.o.records.get(ref);
    if (stored && gone.uid !== undefined && stored.record.uid !== gone.uid) {
      // The record belongs to a newer object of the same name: not ours to touch.
      log.info("fan-out: deleted object was replaced; leaving the new one alone", { uid: gone.uid });
      return { asked: 0, removed: 0 };
    }
    const uid = gone.uid ?? stored?.record.uid;
    const pods = this.o.providers ? await this.o.providers.list(gone.kind, gone.ns, gone.name) : [];
    const live = pods.filter((p) => p.state !== "stopped");
    const removed = await this.removePods(live, "delete", log);
    if (uid !== undefined && this.o.events) {
      const generation = gone.generation ?? stored?.record.generation ?? 0;
      await this.o.events
        .publishEvent(
          {
            task_id: deterministicTaskId({ uid, generation, slot: "delete" }),
            status: "removed",
            kind: gone.kind,
            ns: gone.ns,
            parent: gone.name,
            details: `workload deleted; removal asked of ${live.length} pod(s), ${removed} confirmed`,
            ts: this.o.now(),
          },
          `delete-${uid}`,
        )
        .catch((err: unknown) => log.warn("fan-out: delete notice not published", { err }));
    }
    if (stored) await this.o.records.delete(ref);
    log.info("fan-out: workload retired", { pods: live.length, removed });
    return { asked: live.length, removed };
  }

  /** Records whose object no longer exists (deleted while no dispatcher watched). */
  async orphans(live: ReadonlyMap<string, string>): Promise<DispatchRecord[]> {
    const records = await this.o.records.list();
    return records.filter((rec) => live.get(workloadKey(rec)) !== rec.uid);
  }

  private async removeMembers(r: RenderedWorkload, from: number, log: Logger): Promise<number> {
    if (!this.o.providers) return 0;
    const pods = await this.o.providers.list(r.kind, r.ns, r.name);
    const surplus = pods.filter((p) => p.ordinal !== undefined && p.ordinal >= from && p.state !== "stopped");
    return this.removePods(surplus, "scale-down", log);
  }

  private async removePods(
    pods: readonly ProviderRecord[],
    reason: "delete" | "scale-down",
    log: Logger,
  ): Promise<number> {
    const remover = this.o.remover;
    if (!remover || pods.length === 0) return 0;
    const results = await Promise.allSettled(
      pods.map((p) =>
        remover.remove(p.node_id, {
          ns: p.ns,
          kind: p.kind,
          parent: p.parent,
          pod: p.pod,
          task_id: p.task_id,
          fencing_token: p.fencing_token,
          reason,
          ts: this.o.now(),
        }),
      ),
    );
    results.forEach((res, i) => {
      if (res.status === "rejected")
        log.warn("fan-out: pod removal not confirmed", {
          pod: pods[i]?.pod,
          node: pods[i]?.node_id,
          err: res.reason,
        });
    });
    return results.filter((res) => res.status === "fulfilled").length;
  }

  /**
   * Compare-and-set of the record. When another dispatcher wrote meanwhile, its
   * record wins if it is at least as far along; otherwise ours goes on top.
   */
  private async saveRecord(
    record: DispatchRecord,
    stored: StoredRecord | undefined,
    plan: FanoutPlan,
    log: Logger,
  ): Promise<StoredRecord> {
    let current = stored;
    for (let attempt = 1; ; attempt++) {
      try {
        const revision = await this.o.records.put(record, current?.revision);
        return { record, revision };
      } catch (err) {
        if (!(err instanceof RecordConflictError) || attempt >= MAX_RECORD_ATTEMPTS) throw err;
        const theirs = await this.o.records.get(record);
        if (theirs && isAtLeast(theirs.record, record)) {
          log.debug("fan-out: another dispatcher recorded this progress first", { reason: plan.reason });
          return theirs;
        }
        current = theirs;
      }
    }
  }
}

function isAtLeast(theirs: DispatchRecord, ours: DispatchRecord): boolean {
  if (theirs.uid !== ours.uid) return false;
  if (theirs.generation !== ours.generation) return theirs.generation > ours.generation;
  return theirs.next >= ours.next;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}
