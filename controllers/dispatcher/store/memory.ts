// In-memory ObjectStore for unit tests: one revision counter for the whole
// store like the KV stream sequence, a bounded change log for watches, and the
// same errors as the NATS KV store.
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
import { AlreadyExistsError } from "./errors.js";
import {
  checkResumable,
  checkWritable,
  cloneJson,
  compareObjects,
  encodeForStorage,
  filterChange,
  forStorage,
  matchesListOptions,
  objectKey,
  resourcePrefix,
  withRevision,
  type RawChange,
} from "./common.js";
import { AsyncQueue } from "./queue.js";

export interface MemoryStoreOptions {
  /** Changes kept for watches that resume; older revisions get ResourceExpiredError. */
  historyLimit?: number;
  /** Largest encoded object accepted (the NATS default max payload). */
  maxObjectBytes?: number;
}

/** Every stored object carries its revision as resourceVersion (withRevision). */
const storedRevision = (obj: KubeObject) => Number(obj.metadata.resourceVersion);

interface LogEntry extends RawChange {
  prefix: string;
}

interface Watcher {
  prefix: string;
  opts: ListOptions;
  queue: AsyncQueue<StoreEvent>;
}

export class MemoryObjectStore implements ObjectStore {
  private readonly objects = new Map<string, KubeObject>();
  private readonly log: LogEntry[] = [];
  private readonly watchers = new Set<Watcher>();
  private revision = 0;
  private readonly historyLimit: number;
  private readonly maxObjectBytes: number;

  constructor(opts: MemoryStoreOptions = {}) {
    this.historyLimit = opts.historyLimit ?? 1000;
    this.maxObjectBytes = opts.maxObjectBytes ?? 1024 * 1024;
  }

  async get(res: ResourceRef, namespace: string, name: string): Promise<KubeObject | undefined> {
    const obj = this.objects.get(objectKey(res, namespace, name));
    return obj ? cloneJson(obj) : undefined;
  }

  async list(res: ResourceRef, opts: ListOptions = {}): Promise<ListResult> {
    const prefix = resourcePrefix(res) + ".";
    const items: KubeObject[] = [];
    for (const [key, obj] of this.objects) {
      if (key.startsWith(prefix) && matchesListOptions(obj, opts)) items.push(cloneJson(obj));
    }
    return { items: items.sort(compareObjects), revision: this.revision };
  }

  async create(res: ResourceRef, obj: KubeObject): Promise<KubeObject> {
    const key = objectKey(res, obj.metadata.namespace, obj.metadata.name);
    if (this.objects.has(key)) throw new AlreadyExistsError(key);
    return this.commit(res, key, "ADDED", obj, undefined);
  }

  async update(res: ResourceRef, obj: KubeObject, expectedRevision: number): Promise<KubeObject> {
    const key = objectKey(res, obj.metadata.namespace, obj.metadata.name);
    const current = this.objects.get(key);
    checkWritable(key, current, storedRevision, expectedRevision);
    return this.commit(res, key, "MODIFIED", obj, current);
  }

  async delete(
    res: ResourceRef,
    namespace: string,
    name: string,
    expectedRevision?: number,
  ): Promise<KubeObject> {
    const key = objectKey(res, namespace, name);
    const current = this.objects.get(key);
    checkWritable(key, current, storedRevision, expectedRevision);
    return this.commit(res, key, "DELETED", current, current);
  }

  async watch(res: ResourceRef, opts: WatchOptions = {}): Promise<StoreWatch> {
    const prefix = resourcePrefix(res) + ".";
    const watcher: Watcher = { prefix, opts, queue: undefined as unknown as AsyncQueue<StoreEvent> };
    watcher.queue = new AsyncQueue<StoreEvent>(() => this.watchers.delete(watcher));
    if (opts.fromRevision === undefined) {
      const { items } = await this.list(res, opts);
      for (const object of items) {
        watcher.queue.push({
          type: "ADDED",
          object,
          previous: undefined,
          revision: Number(object.metadata.resourceVersion),
        });
      }
    } else {
      const oldest = this.log[0]?.revision ?? this.revision + 1;
      checkResumable(opts.fromRevision, oldest);
      for (const entry of this.log) {
        if (entry.revision <= opts.fromRevision || entry.prefix !== prefix) continue;
        const ev = filterChange(opts, cloneJson(entry));
        if (ev) watcher.queue.push(ev);
      }
    }
    this.watchers.add(watcher);
    return Object.assign(watcher.queue, { stop: () => watcher.queue.end() });
  }

  async currentRevision(): Promise<number> {
    return this.revision;
  }

  async close(): Promise<void> {
    for (const w of [...this.watchers]) w.queue.end();
  }

  /** Test hook: forget history up to (and including) a revision, as a bucket's limits would. */
  compact(throughRevision: number): void {
    while (this.log.length > 0 && this.log[0]!.revision <= throughRevision) this.log.shift();
  }

  private commit(
    res: ResourceRef,
    key: string,
    type: RawChange["type"],
    obj: KubeObject,
    previous: KubeObject | undefined,
  ): KubeObject {
    encodeForStorage(obj, this.maxObjectBytes);
    const revision = ++this.revision;
    const stored = withRevision(cloneJson(forStorage(obj)), revision);
    if (type === "DELETED") this.objects.delete(key);
    else this.objects.set(key, stored);
    const entry: LogEntry = { prefix: resourcePrefix(res) + ".", type, object: stored, previous, revision };
    this.log.push(entry);
    while (this.log.length > this.historyLimit) this.log.shift();
    for (const w of this.watchers) {
      if (w.prefix !== entry.prefix) continue;
      const ev = filterChange(w.opts, cloneJson(entry));
      if (ev) w.queue.push(ev);
    }
    return cloneJson(stored);
  }
}
