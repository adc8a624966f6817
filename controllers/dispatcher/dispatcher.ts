// The dispatcher (DESIGN §1): takes workloads from its own API (or from a
// cluster's CRs), fans each generation out as manifests and Tasks, and keeps
// their status. Stateless: everything it holds in memory is a cache of NATS or
// of the source, rebuilt at start; progress lives in KV dispatch records.
import type { KubeConfig } from "@kubernetes/client-node";
import { Counter, type Registry } from "prom-client";
import { Bus, newNonce, type SvidSource } from "../../protocol/bus/index.js";
import type { Svid } from "../../identity/ca.js";
import type { Workload } from "../../protocol/index.js";
import type { Logger } from "../common/log.js";
import { startHealthServer, type HealthServer } from "../common/health-server.js";
import { ensureSchedulingInfra } from "../common/nats-setup.js";
import { startApiServer, type ApiServer, type ApiTlsOptions } from "./api/server.js";
import { beemeshRegistry, objectMetaSchema } from "./api/beemesh-kinds.js";
import { KvObjectStore } from "./store/index.js";
import {
  Fanout,
  KeyedQueue,
  RenderError,
  StoreWorkloadSource,
  busEventPublisher,
  busTaskPublisher,
  keyOfWorkload,
  kvManifestWriter,
  kvProviderDirectory,
  kvRecordStore,
  nodeApiRemover,
  sourceKey,
  type DispatchRecord,
  type FanoutHooks,
  type GoneWorkload,
  type ReconcileResult,
  type ReviveResult,
  type RenderOptions,
  type SourceEvent,
  type WorkloadSource,
} from "./fanout/index.js";
import { PodObservations, StatusController, runHeartbeatFeed, runProviderFeed } from "./status/index.js";
import { KubernetesWorkloadSource, ObjectMirror } from "./informer/index.js";
import type { ReviveDecision, ReviveSettings } from "./logic/index.js";
import { ReviveMonitor, busNodeProber, runRecordFeed } from "./revive/index.js";
import { ValidationError } from "../../protocol/index.js";

export class DispatcherConfigError extends Error {
  override readonly name = "DispatcherConfigError";
  constructor(message: string) {
    super(`dispatcher: ${message}`);
  }
}

export interface DispatcherHooks extends FanoutHooks {
  /** After each reconcile of a workload's objects (tests await a generation here). */
  afterReconcile?(key: string, result: ReconcileResult): void;
  /** After a deleted workload was retired. */
  afterRetire?(key: string): void;
  /** After a revival ran (published, or found nothing to do). */
  afterRevive?(key: string, result: ReviveResult): void;
  /** Each revival decision of the monitor (tests wait for a verdict here). */
  onReviveDecision?(key: string, decision: ReviveDecision): void;
}

export interface DispatcherReviveOptions extends Partial<ReviveSettings> {
  /** A node that does not answer within this is taken as gone (default 2000 ms). */
  probeTimeoutMs?: number;
  /** Decisions are taken this often (default: a tenth of the grace, 100 ms to 1 s). */
  checkEveryMs?: number;
}

export interface DispatcherApiOptions {
  port: number;
  host?: string;
  /** Plain HTTP on 127.0.0.1 without client certificates (development only). */
  devInsecure?: boolean;
  tls?: ApiTlsOptions;
}

export interface DispatcherOptions {
  natsServers: string | string[];
  svid: Svid | SvidSource;
  trustDomain?: string;
  prefix?: string;
  /** "api": serve the Kubernetes-compatible API over KV; "kubernetes": watch CRs with informers. */
  source: "api" | "kubernetes";
  api?: DispatcherApiOptions;
  kubeConfig?: KubeConfig;
  /** kubernetes source: copy the CRs into beemesh-objects for the watchdogs (default true). */
  mirrorToKv?: boolean;
  health?: { port: number; host?: string };
  /** Task shards (default 16). */
  shards?: number;
  /** Sidecar settings; natsUrl defaults to the first NATS server. */
  render?: Partial<RenderOptions>;
  logger: Logger;
  registry: Registry;
  /** Stream and bucket replicas when this dispatcher creates them (3 on a cluster). */
  replicas?: number;
  statusThrottleMs?: number;
  providerTtlMs?: number;
  /** How often statuses are re-checked as heartbeats age (default 1000 ms). */
  statusSweepMs?: number;
  publishConcurrency?: number;
  checkpointEvery?: number;
  /** Keys reconciled at once (default 8). */
  concurrency?: number;
  /**
   * Re-publish a Deployment's Tasks when none of its replicas is left for the
   * grace period (logic/revive.ts); false turns it off. Default: on, 10 s.
   */
  revive?: DispatcherReviveOptions | false;
  /** Keep retrying when NATS is not up yet at start (default false). */
  waitForNats?: boolean;
  hooks?: DispatcherHooks;
  now?: () => number;
  monotonic?: () => number;
}

type WorkItem =
  | { type: "upsert"; workload: Workload }
  | { type: "delete"; gone: GoneWorkload }
  | { type: "revive"; workload: Workload; round: number };

interface Metrics {
  reconciles: Counter<"result">;
  tasks: Counter<"outcome">;
  statusWrites: Counter<string>;
  revivals: Counter<"outcome">;
}

function makeMetrics(registry: Registry): Metrics {
  return {
    reconciles: new Counter({
      name: "beemesh_dispatcher_reconciles_total",
      help: "Fan-out reconciles by result (a plan reason, error or deleted)",
      labelNames: ["result"],
      registers: [registry],
    }),
    tasks: new Counter({
      name: "beemesh_dispatcher_tasks_total",
      help: "Tasks published, by outcome (stored, or duplicate dropped by the stream's dedup window)",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    statusWrites: new Counter({
      name: "beemesh_dispatcher_status_writes_total",
      help: "Workload statuses written",
      registers: [registry],
    }),
    revivals: new Counter({
      name: "beemesh_dispatcher_revivals_total",
      help: "Revivals of Deployments left without a replica, by outcome (published, resumed, superseded, ineligible)",
      labelNames: ["outcome"],
      registers: [registry],
    }),
  };
}

function firstServer(servers: string | string[]): string {
  const first = Array.isArray(servers) ? servers[0] : servers;
  if (!first) throw new DispatcherConfigError("no NATS server given");
  return /^[a-z]+:\/\//.test(first) ? first : `tls://${first}`;
}

export class Dispatcher {
  readonly bus: Bus;
  readonly api: ApiServer | undefined;
  readonly source: WorkloadSource;
  private readonly o: DispatcherOptions;
  private readonly log: Logger;
  private readonly fanout: Fanout;
  private readonly status: StatusController;
  private readonly revive: ReviveMonitor | undefined;
  private readonly observations = new PodObservations();
  private readonly queue: KeyedQueue<WorkItem>;
  private readonly abort = new AbortController();
  private readonly latest = new Map<string, Workload>();
  private readonly records = new Map<string, DispatchRecord>();
  /** uid/generation last reconciled per key: a status-only change needs no fan-out. */
  private readonly reconciled = new Map<string, string>();
  private readonly tasks: Promise<unknown>[] = [];
  private readonly metrics: Metrics;
  private health: HealthServer | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private syncedOnce = false;
  private syncWaiters: Array<() => void> = [];
  private stopping: Promise<void> | undefined;

  private constructor(
    opts: DispatcherOptions,
    bus: Bus,
    source: WorkloadSource,
    api: ApiServer | undefined,
    infra: Awaited<ReturnType<typeof ensureSchedulingInfra>>,
  ) {
    this.o = opts;
    this.bus = bus;
    this.source = source;
    this.api = api;
    this.log = opts.logger;
    this.metrics = makeMetrics(opts.registry);
    const now = opts.now ?? Date.now;
    const monotonic = opts.monotonic ?? (() => performance.now());
    const recordStore = kvRecordStore(infra.buckets.objects);
    const userHooks = opts.hooks;
    this.fanout = new Fanout({
      tasks: busTaskPublisher(bus),
      manifests: kvManifestWriter(infra.buckets.manifests),
      records: recordStore,
      providers: kvProviderDirectory(infra.buckets.providers),
      remover: nodeApiRemover(bus),
      events: busEventPublisher(bus),
      render: {
        natsUrl: firstServer(opts.natsServers),
        prefix: opts.prefix,
        shards: opts.shards ?? 16,
        ...opts.render,
      },
      prefix: opts.prefix,
      shards: opts.shards ?? 16,
      now,
      nonce: newNonce,
      logger: this.log.child({ part: "fanout" }),
      publishConcurrency: opts.publishConcurrency,
      checkpointEvery: opts.checkpointEvery,
      hooks: {
        afterManifestsStored: userHooks?.afterManifestsStored?.bind(userHooks),
        afterTaskPublished: userHooks?.afterTaskPublished?.bind(userHooks),
      },
    });
    this.status = new StatusController({
      source,
      records: recordStore,
      observations: this.observations,
      cached: (key) => this.latest.get(key),
      cachedRecord: (key) => this.records.get(key),
      monotonic,
      wallClock: () => new Date(now()),
      logger: this.log.child({ part: "status" }),
      throttleMs: opts.statusThrottleMs,
      providerTtlMs: opts.providerTtlMs,
      onWrite: () => this.metrics.statusWrites.inc(),
    });
    this.queue = new KeyedQueue<WorkItem>({
      handle: (key, item) => this.handle(key, item),
      concurrency: opts.concurrency,
      onError: (key, err, attempt) => {
        const terminal = err instanceof RenderError || err instanceof ValidationError;
        this.metrics.reconciles.inc({ result: "error" });
        this.log[terminal ? "error" : "warn"]("dispatcher: reconcile failed", {
          workload: key,
          attempt,
          terminal,
          err,
        });
        return !terminal;
      },
    });
    this.observations.onChange((key) => {
      if (this.latest.has(key)) this.status.touch(key);
    });
    const feedOpts = { obs: this.observations, monotonic, signal: this.abort.signal };
    this.tasks.push(
      runProviderFeed(infra.buckets.providers, {
        ...feedOpts,
        logger: this.log.child({ part: "providers" }),
      }),
      runHeartbeatFeed(bus, { ...feedOpts, logger: this.log.child({ part: "heartbeats" }) }),
      this.consume(),
    );
    if (opts.revive !== false) {
      const ro = opts.revive ?? {};
      const revive = new ReviveMonitor({
        // Unset values fall back to each receiver's default.
        settings: { graceMs: ro.graceMs, probeEveryMs: ro.probeEveryMs },
        observations: this.observations,
        workload: (key) => this.latest.get(key),
        prober: busNodeProber(bus, { timeoutMs: ro.probeTimeoutMs }),
        connected: () => bus.isConnected(),
        // Never in place of a pending reconcile: the next check offers it again.
        revive: (key, workload, round) => void this.queue.offer(key, { type: "revive", workload, round }),
        monotonic,
        logger: this.log.child({ part: "revive" }),
        providerTtlMs: opts.providerTtlMs ?? 60_000,
        checkEveryMs: ro.checkEveryMs,
        ...(userHooks?.onReviveDecision ? { onDecision: userHooks.onReviveDecision.bind(userHooks) } : {}),
      });
      this.revive = revive;
      this.tasks.push(
        runRecordFeed(infra.buckets.objects, {
          onRecord: (key, record, initial) => revive.record(key, record, initial),
          signal: this.abort.signal,
          logger: this.log.child({ part: "revive" }),
        }),
      );
      revive.start();
    }
    const sweepMs = opts.statusSweepMs ?? 1000;
    const pruneAfterMs = Math.max(opts.providerTtlMs ?? 60_000, 60_000);
    this.sweepTimer = setInterval(() => {
      // Heartbeats age without any message: re-check whoever has pods in view.
      const pruned = this.observations.prune(monotonic(), pruneAfterMs);
      for (const key of new Set([...this.observations.keys(), ...pruned])) {
        if (this.latest.has(key)) this.status.touch(key);
      }
    }, sweepMs);
    this.sweepTimer.unref();
  }

  /** Connects to NATS, makes sure the streams and buckets exist, starts the source, the API and the loops. */
  static async start(opts: DispatcherOptions): Promise<Dispatcher> {
    const log = opts.logger;
    const bus = await Bus.connect({
      servers: opts.natsServers,
      svid: opts.svid,
      registry: opts.registry,
      logger: log.child({ part: "bus" }),
      ...(opts.trustDomain ? { trustDomain: opts.trustDomain } : {}),
      ...(opts.prefix ? { prefix: opts.prefix } : {}),
      waitOnFirstConnect: opts.waitForNats ?? false,
    });
    let api: ApiServer | undefined;
    try {
      const infra = await ensureSchedulingInfra(bus.nc, {
        prefix: opts.prefix,
        create: "try",
        ...(opts.replicas ? { replicas: opts.replicas } : {}),
      });
      let source: WorkloadSource;
      if (opts.source === "api") {
        if (!opts.api)
          throw new DispatcherConfigError("the api source needs api options (port, TLS or devInsecure)");
        const store = await KvObjectStore.open({ nc: bus.nc, bucket: infra.bucketNames.objects });
        api = await startApiServer({
          store,
          kinds: beemeshRegistry(),
          objectMetaSchema: objectMetaSchema(),
          port: opts.api.port,
          ...(opts.api.host ? { host: opts.api.host } : {}),
          ...(opts.api.tls ? { tls: opts.api.tls } : {}),
          devInsecure: opts.api.devInsecure ?? false,
          logger: log.child({ part: "api" }),
          registry: opts.registry,
        });
        source = new StoreWorkloadSource({ store, logger: log.child({ part: "source" }) });
      } else {
        if (!opts.kubeConfig) throw new DispatcherConfigError("the kubernetes source needs a KubeConfig");
        const mirror =
          opts.mirrorToKv === false
            ? undefined
            : new ObjectMirror(await KvObjectStore.open({ nc: bus.nc, bucket: infra.bucketNames.objects }));
        source = new KubernetesWorkloadSource({
          kubeConfig: opts.kubeConfig,
          logger: log.child({ part: "informer" }),
          ...(mirror ? { mirror } : {}),
        });
      }
      const d = new Dispatcher(opts, bus, source, api, infra);
      if (opts.health) {
        d.health = await startHealthServer({
          port: opts.health.port,
          ...(opts.health.host ? { host: opts.health.host } : {}),
          registry: opts.registry,
          healthy: () => !bus.nc.isClosed(),
          ready: () => d.ready(),
        });
      }
      log.info("dispatcher started", {
        source: opts.source,
        api: api?.url,
        health: d.health?.port,
        spiffe_id: bus.spiffeId,
      });
      return d;
    } catch (err) {
      await api?.close().catch(() => undefined);
      await bus.close().catch(() => undefined);
      throw err;
    }
  }

  get healthPort(): number | undefined {
    return this.health?.port;
  }

  /** Connected to NATS and caught up with the source at least once. */
  ready(): boolean {
    return this.syncedOnce && this.bus.isConnected();
  }

  /** Resolves once the source delivered every existing object. */
  synced(): Promise<void> {
    if (this.syncedOnce) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  /** Resolves once no reconcile is pending, running or waiting to retry. */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Statuses this dispatcher wrote so far. */
  statusWrites(): number {
    return this.status.written;
  }

  private async consume(): Promise<void> {
    const signal = this.abort.signal;
    try {
      for await (const ev of this.source.events(signal)) {
        if (signal.aborted) break;
        await this.onSourceEvent(ev);
      }
    } catch (err) {
      if (!signal.aborted) this.log.error("dispatcher: the workload source failed", { err });
    }
  }

  private async onSourceEvent(ev: SourceEvent): Promise<void> {
    if (ev.type === "upsert") {
      const key = keyOfWorkload(ev.workload);
      this.latest.set(key, ev.workload);
      const w = ev.workload;
      const version = `${w.metadata.uid ?? ""}/${w.metadata.generation ?? 1}/${w.metadata.deletionTimestamp ?? ""}`;
      if (this.reconciled.get(key) === version) this.status.touch(key);
      else this.queue.add(key, { type: "upsert", workload: w });
      return;
    }
    if (ev.type === "delete") {
      const key = sourceKey(ev.gone.kind, ev.gone.ns, ev.gone.name);
      this.latest.delete(key);
      this.reconciled.delete(key);
      this.queue.add(key, { type: "delete", gone: ev.gone });
      return;
    }
    // Objects deleted while no dispatcher watched still have records: retire them now.
    try {
      for (const rec of await this.fanout.orphans(ev.live)) {
        const key = sourceKey(rec.kind, rec.ns, rec.name);
        // Recreated under the same name: its own reconcile replaces the record.
        if (ev.live.has(key)) continue;
        this.queue.add(key, {
          type: "delete",
          gone: { kind: rec.kind, ns: rec.ns, name: rec.name, uid: rec.uid, generation: rec.generation },
        });
      }
    } catch (err) {
      this.log.warn("dispatcher: orphaned records not checked", { err });
    }
    this.syncedOnce = true;
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of waiters) w();
  }

  private async handle(key: string, item: WorkItem): Promise<void> {
    if (item.type === "revive") {
      // The object may have moved on since the decision: revive only the copy we still hold.
      const w = this.latest.get(key);
      if (w === undefined || w.metadata.uid !== item.workload.metadata.uid) return;
      const result = await this.fanout.revive(w, item.round);
      this.metrics.revivals.inc({ outcome: result.outcome });
      this.metrics.tasks.inc({ outcome: "stored" }, result.published - result.duplicates);
      this.metrics.tasks.inc({ outcome: "duplicate" }, result.duplicates);
      if (result.record) this.records.set(key, result.record);
      this.o.hooks?.afterRevive?.(key, result);
      return;
    }
    if (item.type === "upsert") {
      const w = item.workload;
      const result = await this.fanout.reconcile(w);
      this.metrics.reconciles.inc({ result: result.reason });
      this.metrics.tasks.inc({ outcome: "stored" }, result.published - result.duplicates);
      this.metrics.tasks.inc({ outcome: "duplicate" }, result.duplicates);
      if (result.record) this.records.set(key, result.record);
      this.reconciled.set(
        key,
        `${w.metadata.uid ?? ""}/${w.metadata.generation ?? 1}/${w.metadata.deletionTimestamp ?? ""}`,
      );
      this.status.touch(key);
      this.o.hooks?.afterReconcile?.(key, result);
      return;
    }
    const gone = item.gone;
    // A same-named object may exist again: only a different uid (or none) means this one is gone.
    const now = await this.source.get(gone.kind, gone.ns, gone.name);
    if (now) {
      // Recreated under the same name, or still there (a stale orphan check): its own reconcile decides.
      this.log.info("dispatcher: not retiring a workload that exists", {
        workload: key,
        uid: now.metadata.uid,
      });
      return;
    }
    await this.fanout.retire(gone);
    this.records.delete(key);
    this.status.forget(key);
    this.metrics.reconciles.inc({ result: "deleted" });
    this.o.hooks?.afterRetire?.(key);
  }

  /** Graceful stop: no new work, finish what runs, close the API and the connection. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.abort.abort();
      if (this.sweepTimer) clearInterval(this.sweepTimer);
      await this.revive?.stop();
      await this.queue.stop();
      await this.status.stop();
      await this.api?.close().catch((err: unknown) => this.log.warn("dispatcher: API close failed", { err }));
      await this.health?.close();
      await Promise.allSettled(this.tasks);
      await this.bus.drain().catch(() => this.bus.close());
      this.log.info("dispatcher stopped");
    })();
    return this.stopping;
  }
}
