// In-memory ports for the dispatcher's fan-out (controllers/dispatcher/fanout):
// a task stream that drops a repeated task id as JetStream's dedup window does,
// a manifest store and a CAS record store, plus the Deployment the tests fan out.
import {
  parseBeemeshDeployment,
  parseTask,
  type BeemeshDeployment,
  type Task,
} from "../../protocol/index.js";
import {
  RecordConflictError,
  recordKey,
  type DispatchRecord,
  type FanoutOptions,
  type RecordRef,
  type RecordStore,
} from "../../controllers/dispatcher/fanout/index.js";
import { memoryLogger } from "../../controllers/common/log.js";

export class FakeStream {
  readonly accepted: Task[] = [];
  readonly subjects: string[] = [];
  attempts = 0;
  private readonly seen = new Set<string>();
  /** Manifest writes and Task publications in order (FakeManifests appends here too). */
  log: string[] = [];
  async publishTask(subject: string, task: Task) {
    this.attempts++;
    expect(parseTask(task).ok).toBe(true);
    if (this.seen.has(task.task_id)) return { duplicate: true };
    this.seen.add(task.task_id);
    this.accepted.push(task);
    this.subjects.push(subject);
    this.log.push(`task ${task.task_id}`);
    return { duplicate: false };
  }
}

export class FakeManifests {
  readonly stored = new Map<string, Uint8Array>();
  constructor(private readonly log: string[] = []) {}
  async storeManifest(key: string, bytes: Uint8Array) {
    this.stored.set(key, bytes);
    this.log.push(`manifest ${key}`);
  }
}

// Copies through JSON, as KV does (structuredClone would hand back objects of another realm under Jest).
const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

export class FakeRecords implements RecordStore {
  readonly map = new Map<string, { record: DispatchRecord; revision: number }>();
  private rev = 0;
  async get(ref: RecordRef) {
    const e = this.map.get(recordKey(ref));
    return e ? { record: copy(e.record), revision: e.revision } : undefined;
  }
  async put(record: DispatchRecord, expected: number | undefined) {
    const key = recordKey(record);
    const cur = this.map.get(key);
    if ((cur?.revision ?? undefined) !== expected) throw new RecordConflictError(key);
    this.map.set(key, { record: copy(record), revision: ++this.rev });
    return this.rev;
  }
  async delete(ref: RecordRef) {
    this.map.delete(recordKey(ref));
  }
  async list() {
    return [...this.map.values()].map((e) => e.record);
  }
  /** The only record (tests with one workload). */
  current(): DispatchRecord {
    return [...this.map.values()][0]!.record;
  }
}

/** default/web (uid-1), one container `app`, as the API stores it. */
export function deployment(
  generation: number,
  replicas: number,
  image = "localhost/app:1",
): BeemeshDeployment {
  const parsed = parseBeemeshDeployment({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: {
      name: "web",
      namespace: "default",
      uid: "uid-1",
      generation,
      creationTimestamp: "2026-01-01T00:00:00Z",
    },
    spec: {
      replicas,
      selector: { matchLabels: { app: "web" } },
      template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "app", image }] } },
    },
  });
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

let fakeClockMs = 1_800_000_000_000;

/** A Fanout's options over these fakes: 4 shards, a clock that ticks per read, numbered nonces. */
export function fakeFanoutOptions(w: {
  stream: FakeStream;
  manifests: FakeManifests;
  records: FakeRecords;
}): FanoutOptions {
  let n = 0;
  return {
    tasks: w.stream,
    manifests: w.manifests,
    records: w.records,
    render: { natsUrl: "tls://127.0.0.1:4222" },
    shards: 4,
    now: () => fakeClockMs++,
    nonce: () => `nonce-${String(++n).padStart(16, "0")}`,
    logger: memoryLogger("fanout"),
  };
}
