// A clone Task from the dispatch record (DESIGN §2, §4). The dispatcher is the
// single source of the manifest a replica runs: it records, per generation,
// the manifest ref(s) it stored and what its Tasks ask for, under
// `dispatch.deployment.<ns>.<name>` in beemesh-objects. A watchdog copies them
// instead of rendering the pod itself, so a clone names the very manifest the
// dispatcher stored whatever render options the dispatcher runs with. Pure.
import { parseTask, type Task } from "../../protocol/index.js";
import { taskFromRecord, type DispatchRecord } from "../dispatcher/fanout/plan.js";
import { parseDispatchRecord, recordKey } from "../dispatcher/fanout/ports.js";

export class CloneSourceError extends Error {
  override name = "CloneSourceError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`watchdog: clone: ${message}`, options);
  }
}

/**
 * Where the record stands against the object the clone is for, when it cannot
 * serve it yet: not written, of another instance of the name (a re-created
 * Deployment whose record the dispatcher has not written), behind (an older
 * generation with another template: a rollout the dispatcher has not recorded
 * yet), or ahead (our view of the object is the stale one).
 */
export type RecordLag = "missing" | "other-instance" | "behind" | "ahead";

/** The record cannot serve this clone yet; the dispatcher (or our object watch) may catch up. */
export class RecordLagError extends CloneSourceError {
  override name = "RecordLagError";
  constructor(
    readonly lag: RecordLag,
    message: string,
  ) {
    super(message);
  }
}

/** Key of a Deployment's dispatch record in beemesh-objects. */
export function deploymentRecordKey(ns: string, name: string): string {
  return recordKey({ kind: "Deployment", ns, name });
}

/** The record in a KV value; throws CloneSourceError when it is not one. */
export function decodeDispatchRecord(value: Uint8Array): DispatchRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(value));
  } catch (err) {
    throw new CloneSourceError("the dispatch record is not JSON", { cause: err });
  }
  const parsed = parseDispatchRecord(raw);
  if (!parsed.ok) throw new CloneSourceError("the dispatch record is invalid", { cause: parsed.error });
  return parsed.value;
}

export interface CloneRequest {
  ns: string;
  parent: string;
  parentUid: string;
  /** The template the replica logic wants cloned (the object's current one). */
  templateHash: string;
  /** The object's generation (tells a record behind the object from one ahead of it). */
  generation: number;
  taskId: string;
  /** Extra hints (clone slot, who cloned). */
  hints: Record<string, string>;
  nonce: string;
  ts: number;
}

/**
 * The clone Task for `want` from the record of its Deployment, checked by the
 * Task schema. Throws RecordLagError when the record is not (yet) the one of
 * the wanted instance and template (cloning the old template of a rollout the
 * dispatcher has not recorded would only be retired again), and
 * CloneSourceError when it can never say what to run: written by a dispatcher
 * that did not record its Tasks, or naming no manifest.
 */
export function cloneTaskFrom(record: DispatchRecord | undefined, want: CloneRequest): Task {
  if (record === undefined)
    throw new RecordLagError("missing", `no dispatch record for ${want.ns}/${want.parent}`);
  if (record.kind !== "Deployment" || record.uid !== want.parentUid) {
    throw new RecordLagError(
      "other-instance",
      `the dispatch record is for ${record.kind} uid ${record.uid}, not Deployment uid ${want.parentUid}`,
    );
  }
  if (record.template_hash !== want.templateHash) {
    throw new RecordLagError(
      record.generation > want.generation ? "ahead" : "behind",
      `the dispatch record is at template ${record.template_hash} (generation ${record.generation}), ` +
        `the object at ${want.templateHash} (generation ${want.generation})`,
    );
  }
  const manifest = record.manifests[0];
  if (manifest === undefined || record.task === undefined) {
    throw new CloneSourceError("the dispatch record names no manifest or task template");
  }
  // record.uid is want.parentUid (checked above).
  const task = taskFromRecord(record, manifest, record.task, {
    taskId: want.taskId,
    ns: want.ns,
    parent: want.parent,
    origin: "clone",
    hints: want.hints,
    nonce: want.nonce,
    ts: want.ts,
  });
  const parsed = parseTask(task);
  if (!parsed.ok) throw new CloneSourceError("the clone task is invalid", { cause: parsed.error });
  return parsed.value;
}
