// Idempotent set-up of what the scheduling plane needs in JetStream (DESIGN §2):
// the SCHEDULER_TASKS and SCHEDULER_EVENTS streams and the five KV buckets.
// Only dispatchers and admins may create streams (identity/nats-config.ts), so
// every other controller asks for creation "if allowed" and otherwise waits,
// bounded, until someone with the right has made them.
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { STREAMS } from "../../protocol/index.js";
import { meshSubjects } from "../../identity/nats-config.js";

export class NatsSetupError extends Error {
  override name = "NatsSetupError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`nats-setup: ${message}`, options);
  }
}

export interface NatsSetupOptions {
  /** Subject prefix (default "beemesh"); bucket names follow it as identity/nats-config.ts derives them. */
  prefix?: string;
  /**
   * "try" (default): create what is missing, and wait for others when this
   * identity may not; true: creation must succeed; false: only wait.
   */
  create?: boolean | "try";
  /** Stream and bucket replicas (3 on a JetStream cluster). Default 1. */
  replicas?: number;
  storage?: "file" | "memory";
  /** Nats-Msg-Id dedup window of both streams (default 120 s). */
  dedupWindowMs?: number;
  /** How long tasks stay in SCHEDULER_TASKS (default 1 h). */
  taskMaxAgeMs?: number;
  /** How long events stay in SCHEDULER_EVENTS, the audit log (default 7 days). */
  eventMaxAgeMs?: number;
  /** Node status keys vanish this long after their last write (default 10 min). */
  nodeTtlMs?: number;
  /** Provider records vanish this long after their last refresh (default 60 s). */
  providerTtlMs?: number;
  /** Revisions kept per object (the dispatcher's store reads them; default 16). */
  objectHistory?: number;
  /** Bound on the wait for missing streams or buckets (default 30 s). */
  waitTimeoutMs?: number;
  pollIntervalMs?: number;
  signal?: AbortSignal;
}

export interface SchedulingBuckets {
  objects: KV;
  manifests: KV;
  leases: KV;
  nodes: KV;
  providers: KV;
}

export interface SchedulingInfra {
  jsm: JetStreamManager;
  streams: { tasks: string; events: string };
  bucketNames: Record<keyof SchedulingBuckets, string>;
  buckets: SchedulingBuckets;
}

const MS = 1_000_000; // nanoseconds per millisecond, as JetStream configs count

export function bucketNames(prefix = "beemesh"): Record<keyof SchedulingBuckets, string> {
  return { ...meshSubjects(prefix).buckets };
}

function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return true;
  return err instanceof Error && /stream not found/i.test(err.message);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new NatsSetupError("aborted"));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new NatsSetupError("aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

interface Settings extends Required<Omit<NatsSetupOptions, "signal">> {
  signal?: AbortSignal;
}

function settings(opts: NatsSetupOptions): Settings {
  const s: Settings = {
    prefix: opts.prefix ?? "beemesh",
    create: opts.create ?? "try",
    replicas: opts.replicas ?? 1,
    storage: opts.storage ?? "file",
    dedupWindowMs: opts.dedupWindowMs ?? 120_000,
    taskMaxAgeMs: opts.taskMaxAgeMs ?? 3_600_000,
    eventMaxAgeMs: opts.eventMaxAgeMs ?? 7 * 24 * 3_600_000,
    nodeTtlMs: opts.nodeTtlMs ?? 600_000,
    providerTtlMs: opts.providerTtlMs ?? 60_000,
    objectHistory: opts.objectHistory ?? 16,
    waitTimeoutMs: opts.waitTimeoutMs ?? 30_000,
    pollIntervalMs: opts.pollIntervalMs ?? 250,
    signal: opts.signal,
  };
  for (const k of [
    "replicas",
    "dedupWindowMs",
    "taskMaxAgeMs",
    "eventMaxAgeMs",
    "nodeTtlMs",
    "providerTtlMs",
    "objectHistory",
  ] as const) {
    if (!(Number.isFinite(s[k]) && s[k] > 0)) throw new NatsSetupError(`${k} must be positive, got ${s[k]}`);
  }
  // JetStream refuses a dedup window longer than the stream's max age.
  if (s.dedupWindowMs > s.taskMaxAgeMs) throw new NatsSetupError("dedupWindowMs exceeds taskMaxAgeMs");
  return s;
}

export function schedulingStreamConfigs(opts: NatsSetupOptions = {}): StreamConfig[] {
  const s = settings(opts);
  const storage = s.storage === "memory" ? StorageType.Memory : StorageType.File;
  const base = {
    retention: RetentionPolicy.Limits,
    storage,
    discard: DiscardPolicy.Old,
    num_replicas: s.replicas,
  };
  return [
    {
      ...base,
      name: STREAMS.tasks,
      subjects: [`${s.prefix}.scheduler.tasks.>`],
      max_age: s.taskMaxAgeMs * MS,
      duplicate_window: s.dedupWindowMs * MS,
    } as StreamConfig,
    {
      ...base,
      name: STREAMS.events,
      subjects: [`${s.prefix}.scheduler.events.>`],
      max_age: s.eventMaxAgeMs * MS,
      duplicate_window: Math.min(s.dedupWindowMs, s.eventMaxAgeMs) * MS,
    } as StreamConfig,
  ];
}

function bucketOptions(s: Settings): Record<keyof SchedulingBuckets, Partial<KvOptions>> {
  const storage = s.storage === "memory" ? StorageType.Memory : StorageType.File;
  const common = { replicas: s.replicas, storage };
  return {
    objects: { ...common, history: s.objectHistory },
    manifests: { ...common, history: 1 },
    leases: { ...common, history: 1 },
    // A TTL deletes keys without a watch event (DESIGN §3): it only collects garbage here.
    nodes: { ...common, history: 1, ttl: s.nodeTtlMs },
    providers: { ...common, history: 1, ttl: s.providerTtlMs },
  };
}

/** Waits until `probe` succeeds or the bound passes; `attempt` runs when the thing is missing. */
async function ensure<T>(
  what: string,
  s: Settings,
  probe: () => Promise<T>,
  attempt: (() => Promise<T>) | undefined,
): Promise<T> {
  const deadline = performance.now() + s.waitTimeoutMs;
  let lastError: unknown;
  let attempted = false;
  for (let i = 0; ; i++) {
    try {
      return await probe();
    } catch (err) {
      if (!isNotFound(err)) lastError = err;
    }
    if (attempt && !attempted) {
      attempted = true;
      try {
        return await attempt();
      } catch (err) {
        // Someone else may have created it meanwhile, or this identity may not create.
        lastError = err;
        if (s.create === true) {
          try {
            return await probe();
          } catch {
            throw new NatsSetupError(`cannot create ${what}`, { cause: err });
          }
        }
      }
    }
    if (performance.now() >= deadline || i > 100_000) {
      throw new NatsSetupError(`${what} does not exist after ${s.waitTimeoutMs} ms`, { cause: lastError });
    }
    await sleep(s.pollIntervalMs, s.signal);
  }
}

/**
 * Makes sure the streams and buckets exist (creating them when allowed) and
 * returns handles to the buckets. Safe to call from every controller at start.
 */
export async function ensureSchedulingInfra(
  nc: NatsConnection,
  opts: NatsSetupOptions = {},
): Promise<SchedulingInfra> {
  const s = settings(opts);
  const jsm = await jetstreamManager(nc, { timeout: 5000 });
  const creating = s.create !== false;
  for (const cfg of schedulingStreamConfigs(opts)) {
    await ensure(
      `stream ${cfg.name}`,
      s,
      () => jsm.streams.info(cfg.name),
      creating ? () => jsm.streams.add(cfg) : undefined,
    );
  }
  const names = bucketNames(s.prefix);
  const kvm = new Kvm(nc);
  const options = bucketOptions(s);
  const buckets = {} as SchedulingBuckets;
  for (const key of Object.keys(names) as Array<keyof SchedulingBuckets>) {
    const name = names[key];
    await ensure(
      `KV bucket ${name}`,
      s,
      () => jsm.streams.info(`KV_${name}`),
      creating ? () => kvm.create(name, options[key]).then(() => jsm.streams.info(`KV_${name}`)) : undefined,
    );
    buckets[key] = await kvm.open(name);
  }
  return { jsm, streams: { tasks: STREAMS.tasks, events: STREAMS.events }, bucketNames: names, buckets };
}

/** Bucket handles without any check (for code that got the infra elsewhere, e.g. simulations). */
export async function openSchedulingBuckets(
  nc: NatsConnection,
  prefix = "beemesh",
): Promise<SchedulingBuckets> {
  const kvm = new Kvm(nc);
  const names = bucketNames(prefix);
  return {
    objects: await kvm.open(names.objects),
    manifests: await kvm.open(names.manifests),
    leases: await kvm.open(names.leases),
    nodes: await kvm.open(names.nodes),
    providers: await kvm.open(names.providers),
  };
}
