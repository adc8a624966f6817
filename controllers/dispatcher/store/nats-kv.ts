// ObjectStore on the JetStream KV bucket `beemesh-objects` (DESIGN §2): one key
// per object, resourceVersion = KV revision (the stream sequence), create =
// kv.create, update = kv.update with the read revision (compare-and-set),
// delete = a DEL marker guarded by the last revision, watch = a KV watch.
import type { NatsConnection } from "@nats-io/transport-node";
import { headers, Empty } from "@nats-io/transport-node";
import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { Kvm, KvWatchInclude, type KV, type KvEntry } from "@nats-io/kv";
import type {
  KubeObject,
  ListOptions,
  ListResult,
  ObjectStore,
  ResourceRef,
  StoreEvent,
  StoreWatch,
  WatchOptions,
} from "./types.js";
import { AlreadyExistsError, ConflictError, NotFoundError, StoreError } from "./errors.js";
import {
  checkResumable,
  checkWritable,
  compareObjects,
  encodeForStorage,
  filterChange,
  forStorage,
  keyFilter,
  matchesListOptions,
  objectKey,
  splitKey,
  withRevision,
  type RawChange,
} from "./common.js";
import { pinnedValue } from "./selectors.js";
import { BUCKETS } from "../../../protocol/index.js";
import { AsyncQueue } from "./queue.js";

export const DEFAULT_OBJECTS_BUCKET: string = BUCKETS.objects;
/** Revisions kept per key: enough for watches that resume a little late (KV allows up to 64). */
export const DEFAULT_OBJECT_HISTORY = 16;
const KV_OPERATION_HEADER = "KV-Operation";
const MAX_DELETE_ATTEMPTS = 5;

export interface KvObjectStoreOptions {
  nc: NatsConnection;
  bucket?: string;
  history?: number;
  /** Stream replicas when the bucket is created here (R3 on a cluster). */
  replicas?: number;
}

function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

function decode(entryValue: Uint8Array, key: string): KubeObject {
  try {
    return JSON.parse(new TextDecoder().decode(entryValue)) as KubeObject;
  } catch (err) {
    throw new StoreError(`undecodable value under ${key}`, { cause: err });
  }
}

type PriorState = { kind: "live"; object: KubeObject } | { kind: "absent" } | { kind: "unknown" };

export class KvObjectStore implements ObjectStore {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly bucket: string,
    private readonly history: number,
  ) {}

  /** Opens the bucket, creating it with the given limits when it does not exist yet. */
  static async open(opts: KvObjectStoreOptions): Promise<KvObjectStore> {
    const bucket = opts.bucket ?? DEFAULT_OBJECTS_BUCKET;
    const kvm = new Kvm(opts.nc);
    let kv: KV;
    try {
      kv = await kvm.create(bucket, {
        history: opts.history ?? DEFAULT_OBJECT_HISTORY,
        replicas: opts.replicas ?? 1,
      });
    } catch (err) {
      // A bucket made elsewhere with other limits is still the bucket to use.
      try {
        kv = await kvm.open(bucket);
      } catch {
        throw new StoreError(`cannot open KV bucket ${bucket}`, { cause: err });
      }
    }
    const status = await kv.status();
    return new KvObjectStore(
      opts.nc,
      kv,
      jetstream(opts.nc),
      await jetstreamManager(opts.nc),
      bucket,
      status.history,
    );
  }

  private get stream(): string {
    return `KV_${this.bucket}`;
  }

  private subject(key: string): string {
    return `$KV.${this.bucket}.${key}`;
  }

  private encode(obj: KubeObject): Uint8Array {
    const limit = this.nc.info?.max_payload ?? 1024 * 1024;
    // Headers and subject ride along; keep a little room for them.
    return encodeForStorage(obj, limit - 512);
  }

  private async entry(key: string): Promise<KvEntry | undefined> {
    const e = await this.kv.get(key);
    if (!e || e.operation !== "PUT") return undefined;
    return e;
  }

  async get(res: ResourceRef, namespace: string, name: string): Promise<KubeObject | undefined> {
    const key = objectKey(res, namespace, name);
    const e = await this.entry(key);
    return e ? withRevision(decode(e.value, key), e.revision) : undefined;
  }

  async list(res: ResourceRef, opts: ListOptions = {}): Promise<ListResult> {
    const namespace = opts.namespace ?? pinnedValue(opts.fieldSelector, "metadata.namespace");
    const name = pinnedValue(opts.fieldSelector, "metadata.name");
    // Read the stream's last sequence first: the snapshot below is at least that new.
    const before = (await this.jsm.streams.info(this.stream)).state.last_seq;
    if (namespace !== undefined && name !== undefined) {
      const one = await this.get(res, namespace, name);
      const items = one && matchesListOptions(one, opts) ? [one] : [];
      return { items, revision: Math.max(before, ...items.map((o) => Number(o.metadata.resourceVersion))) };
    }
    const consumer = await this.js.consumers.get(this.stream, {
      filter_subjects: this.subject(keyFilter(res, namespace)),
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    const items: KubeObject[] = [];
    let revision = before;
    try {
      const info = await consumer.info(true);
      if (info.num_pending > 0) {
        const messages = await consumer.consume();
        for await (const m of messages) {
          revision = Math.max(revision, m.seq);
          const op = m.headers?.get(KV_OPERATION_HEADER) ?? "";
          if (op !== "DEL" && op !== "PURGE") {
            const key = m.subject.slice(`$KV.${this.bucket}.`.length);
            const obj = withRevision(decode(m.data, key), m.seq);
            if (matchesListOptions(obj, opts)) items.push(obj);
          }
          if (m.info.pending === 0) break;
        }
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
    return { items: items.sort(compareObjects), revision };
  }

  async create(res: ResourceRef, obj: KubeObject): Promise<KubeObject> {
    const key = objectKey(res, obj.metadata.namespace, obj.metadata.name);
    try {
      const revision = await this.kv.create(key, this.encode(obj));
      return withRevision(forStorage(obj), revision);
    } catch (err) {
      if (isWrongLastSequence(err)) throw new AlreadyExistsError(key, { cause: err });
      throw err;
    }
  }

  async update(res: ResourceRef, obj: KubeObject, expectedRevision: number): Promise<KubeObject> {
    const key = objectKey(res, obj.metadata.namespace, obj.metadata.name);
    try {
      const revision = await this.kv.update(key, this.encode(obj), expectedRevision);
      return withRevision(forStorage(obj), revision);
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
      if (!(await this.entry(key))) throw new NotFoundError(key, { cause: err });
      throw new ConflictError(key, { cause: err });
    }
  }

  async delete(
    res: ResourceRef,
    namespace: string,
    name: string,
    expectedRevision?: number,
  ): Promise<KubeObject> {
    const key = objectKey(res, namespace, name);
    for (let attempt = 1; ; attempt++) {
      const e = await this.entry(key);
      checkWritable(key, e, (entry) => entry.revision, expectedRevision);
      const h = headers();
      h.set(KV_OPERATION_HEADER, "DEL");
      try {
        // kv.delete() drops the ack; publishing the marker ourselves gives the deletion's revision.
        const ack = await this.js.publish(this.subject(key), Empty, {
          headers: h,
          expect: { lastSubjectSequence: e.revision },
        });
        return withRevision(decode(e.value, key), ack.seq);
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
        if (expectedRevision !== undefined || attempt >= MAX_DELETE_ATTEMPTS)
          throw new ConflictError(key, { cause: err });
      }
    }
  }

  async currentRevision(): Promise<number> {
    return (await this.jsm.streams.info(this.stream)).state.last_seq;
  }

  async watch(res: ResourceRef, opts: WatchOptions = {}): Promise<StoreWatch> {
    const filter = keyFilter(res, opts.namespace ?? pinnedValue(opts.fieldSelector, "metadata.namespace"));
    const from = opts.fromRevision;
    if (from !== undefined) {
      const { first_seq } = (await this.jsm.streams.info(this.stream)).state;
      checkResumable(from, first_seq);
    }
    const iter =
      from === undefined
        ? await this.kv.watch({ key: filter, include: KvWatchInclude.LastValue })
        : await this.kv.watch({
            key: filter,
            include: KvWatchInclude.AllHistory,
            resumeFromRevision: from + 1,
          });
    const queue = new AsyncQueue<StoreEvent>(() => iter.stop());
    // Last known state per key in this session; from a LastValue start it is complete.
    const known = new Map<string, KubeObject | null>();
    const complete = from === undefined;
    void (async () => {
      try {
        for await (const e of iter) {
          if (queue.closed) break;
          const raw = await this.toChange(res, e, known, complete);
          if (!raw) continue;
          const ev = filterChange(opts, raw);
          if (ev) queue.push(ev);
        }
        queue.end();
      } catch (err) {
        queue.fail(err);
      }
    })();
    return Object.assign(queue, { stop: () => queue.end() });
  }

  private async toChange(
    res: ResourceRef,
    e: KvEntry,
    known: Map<string, KubeObject | null>,
    complete: boolean,
  ): Promise<RawChange | undefined> {
    let prior: PriorState;
    const cached = known.get(e.key);
    if (cached !== undefined) prior = cached === null ? { kind: "absent" } : { kind: "live", object: cached };
    else if (complete) prior = { kind: "absent" };
    else prior = await this.priorState(e.key, e.revision);
    const previous = prior.kind === "live" ? prior.object : undefined;
    if (e.operation !== "PUT") {
      known.set(e.key, null);
      if (prior.kind === "absent") return undefined;
      const last = previous ?? this.placeholder(res, e.key);
      return { type: "DELETED", object: withRevision(last, e.revision), previous, revision: e.revision };
    }
    const object = withRevision(decode(e.value, e.key), e.revision);
    known.set(e.key, object);
    return {
      type: prior.kind === "live" ? "MODIFIED" : prior.kind === "absent" ? "ADDED" : "MODIFIED",
      object,
      previous,
      revision: e.revision,
      previousUnknown: prior.kind === "unknown",
    };
  }

  /** What the key held just before `revision`, read from its retained history. */
  private async priorState(key: string, revision: number): Promise<PriorState> {
    const iter = await this.kv.history({ key });
    let latest: KvEntry | undefined;
    let count = 0;
    for await (const h of iter) {
      count++;
      if (h.revision < revision && (!latest || h.revision > latest.revision)) latest = h;
    }
    if (latest) {
      return latest.operation === "PUT"
        ? { kind: "live", object: withRevision(decode(latest.value, key), latest.revision) }
        : { kind: "absent" };
    }
    // Nothing older is kept: either there never was anything, or the limit dropped it.
    return count < this.history ? { kind: "absent" } : { kind: "unknown" };
  }

  /** A DELETED event for a key whose last state is no longer known still names the object. */
  private placeholder(res: ResourceRef, key: string): KubeObject {
    const at = splitKey(res, key);
    return { apiVersion: "", kind: "", metadata: { namespace: at?.namespace ?? "", name: at?.name ?? key } };
  }

  async close(): Promise<void> {
    // The connection belongs to the caller; open watches end with it.
  }
}
