// The fan-out's edges as narrow interfaces (STYLE §5), so the controller is
// tested with in-memory fakes and run on NATS (nats.ts) without change.
import { Type } from "@sinclair/typebox";
import {
  Task,
  makeParser,
  type Event,
  type ProviderRecord,
  type ProviderState,
  type RemoveRequest,
  type WorkloadKind,
} from "../../../protocol/index.js";
import type { DispatchRecord } from "./plan.js";

export interface TaskPublisher {
  /** Publishes into SCHEDULER_TASKS with Nats-Msg-Id = task id; `duplicate` when the dedup window dropped it. */
  publishTask(shardSubject: string, task: Task): Promise<{ duplicate: boolean }>;
}

export interface ManifestWriter {
  /** Stores the bytes under their content key; storing the same content again is a no-op. */
  storeManifest(key: string, bytes: Uint8Array): Promise<void>;
}

export interface StoredRecord {
  record: DispatchRecord;
  revision: number;
}

export class RecordConflictError extends Error {
  override readonly name = "RecordConflictError";
  constructor(key: string, options?: { cause?: unknown }) {
    super(`dispatcher-fanout: dispatch record ${key} changed concurrently`, options);
  }
}

export interface RecordRef {
  kind: WorkloadKind;
  ns: string;
  name: string;
}

export interface RecordStore {
  get(ref: RecordRef): Promise<StoredRecord | undefined>;
  /** Creates (expectedRevision undefined) or compare-and-sets; RecordConflictError when someone else wrote first. */
  put(record: DispatchRecord, expectedRevision: number | undefined): Promise<number>;
  delete(ref: RecordRef): Promise<void>;
  list(): Promise<DispatchRecord[]>;
}

export interface ProviderDirectory {
  /** The pods node agents report for one workload (any state). */
  list(kind: WorkloadKind, ns: string, parent: string): Promise<ProviderRecord[]>;
}

/** A pod its node reports starting or running: it is there (or coming), not failed or stopped. */
export function isUp(state: ProviderState): boolean {
  return state === "starting" || state === "running";
}

/** Pods some node reports starting or running; each runs a watchdog that can act on a new spec. */
export interface LiveReplicas {
  count(kind: WorkloadKind, ns: string, parent: string): Promise<number>;
}

/** The count from provider records: KV, so right after a dispatcher restart too (heartbeats need an interval). */
export function liveReplicasFrom(providers: ProviderDirectory): LiveReplicas {
  return {
    async count(kind, ns, parent) {
      const pods = await providers.list(kind, ns, parent);
      return pods.filter((p) => isUp(p.state)).length;
    },
  };
}

export interface PodRemover {
  /** Asks a node agent to remove one pod; resolves once it answered, rejects otherwise. */
  remove(nodeId: string, req: RemoveRequest): Promise<void>;
}

export interface EventPublisher {
  /** Into SCHEDULER_EVENTS; msgID deduplicates the same notice from several dispatchers. */
  publishEvent(event: Event, msgID: string): Promise<void>;
}

const NonNegative = () => Type.Integer({ minimum: 0 });

export const DispatchRecordSchema = Type.Object(
  {
    kind: Type.Union([Type.Literal("Deployment"), Type.Literal("StatefulSet")]),
    ns: Type.String({ minLength: 1, maxLength: 63 }),
    name: Type.String({ minLength: 1, maxLength: 253 }),
    uid: Type.String({ minLength: 1, maxLength: 128 }),
    generation: NonNegative(),
    template_hash: Type.String({ minLength: 1, maxLength: 64 }),
    template_generation: NonNegative(),
    replicas: NonNegative(),
    first: NonNegative(),
    next: NonNegative(),
    manifests: Type.Array(
      Type.Object(
        {
          key: Type.String({ minLength: 1, maxLength: 255 }),
          sha256: Type.String({ pattern: "^[0-9a-f]{64}$" }),
        },
        { additionalProperties: false },
      ),
      { maxItems: 100_000 },
    ),
    task: Type.Optional(
      Type.Pick(
        Task,
        ["reqs", "priority", "qos", "affinity", "anti_affinity", "node_selector", "tolerations", "hints"],
        { additionalProperties: false },
      ),
    ),
    revival: Type.Optional(
      Type.Object(
        { round: Type.Integer({ minimum: 1 }), count: NonNegative(), next: NonNegative() },
        { additionalProperties: false },
      ),
    ),
    ts: NonNegative(),
  },
  { additionalProperties: false },
);

export const parseDispatchRecord = makeParser({
  name: "DispatchRecord",
  schema: DispatchRecordSchema,
  rules: () => undefined,
});

const kindToken = (kind: WorkloadKind) => (kind === "StatefulSet" ? "statefulset" : "deployment");

/** Records live beside the objects in beemesh-objects, under a prefix no resource uses. */
export const RECORD_KEY_PREFIX = "dispatch";

export function recordKey(ref: RecordRef): string {
  return `${RECORD_KEY_PREFIX}.${kindToken(ref.kind)}.${ref.ns}.${ref.name.replace(/\./g, "_")}`;
}
