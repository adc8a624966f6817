// The fan-out's ports on NATS: Tasks and Events through the signed Bus into
// their JetStream streams, manifests and dispatch records in KV, provider
// records read from KV, removals asked of node agents over request/reply.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { Bucket, type KV, type KvEntry } from "@nats-io/kv";
import {
  nameToken,
  parseProviderRecord,
  subjects,
  type Event,
  type ProviderRecord,
  type RemoveRequest,
  type Task,
  type WorkloadKind,
} from "../../../protocol/index.js";
import type { Bus } from "../../../protocol/bus/index.js";
import { requestRemove } from "../../scheduler-bidder/node-api.js";
import { FanoutError } from "./fanout.js";
import type { DispatchRecord } from "./plan.js";
import {
  RECORD_KEY_PREFIX,
  RecordConflictError,
  parseDispatchRecord,
  recordKey,
  type EventPublisher,
  type ManifestWriter,
  type PodRemover,
  type ProviderDirectory,
  type RecordRef,
  type RecordStore,
  type StoredRecord,
  type TaskPublisher,
} from "./ports.js";

export function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

export function busTaskPublisher(bus: Pick<Bus, "publishDurable">): TaskPublisher {
  return {
    async publishTask(subject: string, task: Task) {
      const ack = await bus.publishDurable(subject, "Task", task, { msgID: task.task_id });
      return { duplicate: ack.duplicate };
    },
  };
}

export function busEventPublisher(bus: Pick<Bus, "publishDurable" | "prefix">): EventPublisher {
  const s = subjects(bus.prefix);
  return {
    async publishEvent(event: Event, msgID: string) {
      await bus.publishDurable(s.events(event.kind, event.ns, event.parent), "Event", event, { msgID });
    },
  };
}

export function kvManifestWriter(kv: KV): ManifestWriter {
  return {
    async storeManifest(key: string, bytes: Uint8Array) {
      try {
        await kv.create(key, bytes);
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
        // Content-addressed: an existing key holds these bytes unless something overwrote it.
        const existing = await kv.get(key);
        if (existing?.operation === "PUT" && Buffer.from(existing.value).equals(Buffer.from(bytes))) return;
        await kv.put(key, bytes);
      }
    },
  };
}

/** A dispatch record from its KV value; undefined when it is not one. */
export function decodeRecord(value: Uint8Array): DispatchRecord | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(value));
  } catch {
    return undefined;
  }
  const parsed = parseDispatchRecord(raw);
  return parsed.ok ? parsed.value : undefined;
}

/** Dispatch records in the objects bucket under `dispatch.<kind>.<ns>.<name>`. */
export function kvRecordStore(kv: KV): RecordStore {
  return {
    async get(ref: RecordRef): Promise<StoredRecord | undefined> {
      const e = await kv.get(recordKey(ref));
      if (!e || e.operation !== "PUT") return undefined;
      const record = decodeRecord(e.value);
      // An unreadable record is treated as absent: the next write replaces it.
      return record ? { record, revision: e.revision } : { record: unreadable(ref), revision: e.revision };
    },
    async put(record: DispatchRecord, expectedRevision: number | undefined): Promise<number> {
      const key = recordKey(record);
      const data = new TextEncoder().encode(JSON.stringify(record));
      try {
        return expectedRevision === undefined
          ? await kv.create(key, data)
          : await kv.update(key, data, expectedRevision);
      } catch (err) {
        if (isWrongLastSequence(err)) throw new RecordConflictError(key, { cause: err });
        throw err;
      }
    },
    async delete(ref: RecordRef): Promise<void> {
      await kv.delete(recordKey(ref));
    },
    async list(): Promise<DispatchRecord[]> {
      const keys: string[] = [];
      for await (const k of await kv.keys(`${RECORD_KEY_PREFIX}.>`)) keys.push(k);
      const out: DispatchRecord[] = [];
      for (const k of keys) {
        const e = await kv.get(k);
        const rec = e?.operation === "PUT" ? decodeRecord(e.value) : undefined;
        if (rec) out.push(rec);
      }
      return out;
    },
  };
}

/** A placeholder that matches no uid, so the plan starts over and the write replaces it. */
function unreadable(ref: RecordRef): DispatchRecord {
  return {
    ...ref,
    uid: "",
    generation: 0,
    template_hash: "",
    template_generation: 0,
    replicas: 0,
    first: 0,
    next: 0,
    manifests: [],
    ts: 0,
  };
}

const KIND_TOKEN: Record<WorkloadKind, string> = { Deployment: "deployment", StatefulSet: "statefulset" };

/**
 * Provider records of one workload: keys `<kind>.<ns>.<parent>.*` in
 * beemesh-providers. The keys come from the stream's subject list, not
 * `kv.keys()`: its consumer never ends when the keys it counted are deleted
 * before it delivers them (nats.js 3.4, seen while a scale to 0 removed pods),
 * which would hold the workload's reconciles forever.
 */
export function kvProviderDirectory(kv: KV): ProviderDirectory {
  if (!(kv instanceof Bucket)) throw new FanoutError("kvProviderDirectory needs a JetStream KV bucket");
  const bucket = kv;
  return {
    async list(kind: WorkloadKind, ns: string, parent: string): Promise<ProviderRecord[]> {
      const filter = `${bucket.prefix}.${KIND_TOKEN[kind]}.${ns}.${nameToken(parent)}.*`;
      const info = await bucket.jsm.streams.info(bucket.stream, { subjects_filter: filter });
      const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(bucket.prefix.length + 1));
      // Read in parallel batches: a reconcile waits on this before it records a new generation.
      const entries: Array<KvEntry | null> = [];
      for (let i = 0; i < keys.length; i += 64) {
        entries.push(...(await Promise.all(keys.slice(i, i + 64).map((k) => bucket.get(k)))));
      }
      const out: ProviderRecord[] = [];
      // A deleted key stays a subject (its delete marker) until the bucket's TTL.
      for (const e of entries) {
        if (!e || e.operation !== "PUT") continue;
        let raw: unknown;
        try {
          raw = JSON.parse(new TextDecoder().decode(e.value));
        } catch {
          continue;
        }
        const parsed = parseProviderRecord(raw);
        if (parsed.ok) out.push(parsed.value);
      }
      return out;
    },
  };
}

export class PodRemovalError extends Error {
  override readonly name = "PodRemovalError";
}

/** Asks the node agent on its `node.<id>.remove` subject and waits for its signed answer. */
export function nodeApiRemover(bus: Bus, timeoutMs = 5000): PodRemover {
  return {
    async remove(nodeId: string, req: RemoveRequest): Promise<void> {
      const reply = await requestRemove(bus, nodeId, req, timeoutMs);
      if (!reply.ok)
        throw new PodRemovalError(
          `dispatcher-fanout: node ${nodeId} did not remove ${req.pod}: ${reply.error ?? "no reason"}`,
        );
    },
  };
}
