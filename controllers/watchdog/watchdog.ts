// The watchdog sidecar's I/O driver (DESIGN §4). The decisions are the pure
// replica state machine's (logic/replica.ts); this file only feeds it — peer
// heartbeats from NATS, the Deployment from KV, probe results, slot-store
// answers, a clock — and carries out what it asks for: signed heartbeats,
// clone-slot leases in beemesh-leases, clone Tasks into SCHEDULER_TASKS, and
// the final RemoveRequest to this pod's node agent. A clone is built from the
// dispatcher's record of the generation; when the object is ahead of that
// record (a rollout the dispatcher has not recorded yet) the driver follows the
// record's key for a bounded time and tells the logic if it never caught up.
import { Counter, Gauge, Registry } from "../../protocol/bus/prom-core.js";
import type { KV, KvEntry } from "@nats-io/kv";
import { ulid } from "ulid";
import {
  kvKeys,
  nameToken,
  parseBeemeshDeployment,
  shardOf,
  subjects,
  type BeemeshDeployment,
  type Container,
  type Heartbeat,
  type RemoveRequest,
  type Subjects,
  type Task,
} from "../../protocol/index.js";
import {
  newNonce,
  type BusSubscription,
  type MessageSpec,
  type Received,
  type RequestOptions,
} from "../../protocol/bus/index.js";
import { meshSubjects } from "../../identity/nats-config.js";
import { Alarm, systemClock, type ControllerClock } from "../common/clock.js";
import { silentLogger, type Logger } from "../common/log.js";
import { requestRemove } from "../scheduler-bidder/node-api.js";
import {
  WatchdogReplica,
  parseWatchdogOptions,
  type ReplicaView,
  type RetireReason,
  type SlotClaim,
  type SlotOp,
  type SlotOutcome,
  type WatchdogAction,
  type WatchdogHeartbeat,
  type WatchdogInput,
  type WatchdogOptions,
  type WatchdogSettings,
} from "./logic/index.js";
import { KvSlotStore } from "./slot-store.js";
import { deploymentInterpreter, type DeploymentInterpreter, type DeploymentView } from "./spec.js";
import {
  RecordLagError,
  cloneTaskFrom,
  decodeDispatchRecord,
  deploymentRecordKey,
  type RecordLag,
} from "./clone-task.js";
import { HEARTBEAT_SPEC, HEARTBEAT_TYPE, fromWire, toWire } from "./wire.js";

// ------------------------------------------------------------- options ---

/** What the watchdog needs of a Bus (protocol/bus Bus satisfies it). */
export interface WatchdogBus {
  readonly prefix: string;
  readonly kvm: { open(name: string): Promise<KV> };
  publish(subject: string, type: string, payload: unknown): void;
  publishDurable(
    subject: string,
    type: string,
    payload: unknown,
    opts?: { msgID?: string; timeoutMs?: number },
  ): Promise<unknown>;
  subscribe<T>(subject: string, spec: MessageSpec<T>): BusSubscription<T>;
  request<T>(subject: string, type: string, payload: unknown, reply: RequestOptions<T>): Promise<Received<T>>;
  isConnected(): boolean;
}

/** Who this watchdog is: its pod and the Deployment it belongs to (env in main.ts). */
export interface WatchdogTarget {
  ns: string;
  /** The Deployment's name. */
  parent: string;
  /** The Deployment's metadata.uid: a re-created Deployment of the same name is not ours. */
  parentUid: string;
  pod: string;
  nodeId: string;
  /** Generation and template hash this pod was rendered from. */
  generation: number;
  templateHash: string;
  /** The task that placed this pod, when known (finds a clone's slot by its exact claim). */
  taskId?: string;
  /** A clone slot handed over explicitly; otherwise it is looked up in the slot store. */
  slot?: SlotClaim;
  /** Start time on the wall clock (default: now); the newest replicas retire first. */
  startedAtMs?: number;
}

/** One liveness and readiness verdict about the app container. */
export interface HealthVerdict {
  live: boolean;
  ready: boolean;
}

/** Local health: probes of the app container (probes.ts), or a test's stand-in. */
export interface LocalHealth {
  check(signal: AbortSignal): Promise<HealthVerdict>;
  /** How often to check (ms). */
  readonly periodMs: number;
}

/** Builds the probes once the app container of this pod's own template is known (undefined: not found). */
export type LocalHealthFactory = (app: Container | undefined) => LocalHealth;

export interface WatchdogDriverOptions {
  bus: WatchdogBus;
  target: WatchdogTarget;
  health: LocalHealth | LocalHealthFactory;
  /** The replica logic's settings (interval, TTL, slot timings...). */
  logic?: WatchdogOptions;
  clock?: ControllerClock;
  registry?: Registry;
  logger?: Logger;
  /** Object -> spec and app containers (default: spec.ts deploymentInterpreter; tests, simulations). */
  interpret?: DeploymentInterpreter;
  /** Task shards in the mesh (as the dispatcher publishes; default 1). */
  taskShards?: number;
  /** Heartbeats this returns false for are dropped before the logic sees them (tests: partitions). */
  acceptHeartbeat?: (hb: WatchdogHeartbeat) => boolean;
  /** Called once, after the retire request was answered (or given up on). */
  onRetired?: (reason: RetireReason) => void;
  /** How long the node agent may take to answer a RemoveRequest (it answers after the runtime removed the pod; default 30 s). */
  removeTimeoutMs?: number;
  /** RemoveRequests sent before giving up (default 3; a repeat is refused harmlessly once the pod is gone). */
  removeAttempts?: number;
  newTaskId?: () => string;
}

export class WatchdogError extends Error {
  override name = "WatchdogError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`watchdog: ${message}`, options);
  }
}

// ------------------------------------------------------------- metrics ---

export interface WatchdogMetrics {
  heartbeatsSent: Counter;
  heartbeatsReceived: Counter;
  clones: Counter;
  retires: Counter<"reason">;
  peersAlive: Gauge;
  slotOps: Counter<"op" | "outcome">;
  /** Clones that found the dispatch record behind the object: "caught-up" or "gave-up". */
  recordWaits: Counter<"outcome">;
}

function metricsIn(registry: Registry): WatchdogMetrics {
  const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  const peers =
    (registry.getSingleMetric("beemesh_watchdog_peers_alive") as Gauge | undefined) ??
    new Gauge({
      name: "beemesh_watchdog_peers_alive",
      help: "Peers whose heartbeat is younger than the TTL",
      registers: [registry],
    });
  return {
    heartbeatsSent: counter("beemesh_watchdog_heartbeats_sent_total", "Heartbeats published"),
    heartbeatsReceived: counter("beemesh_watchdog_heartbeats_received_total", "Peer heartbeats accepted"),
    clones: counter("beemesh_watchdog_clones_total", "Clone Tasks published"),
    retires: counter("beemesh_watchdog_retires_total", "Retirements of this replica", ["reason"]),
    peersAlive: peers,
    slotOps: counter("beemesh_watchdog_slot_ops_total", "Clone-slot store operations", ["op", "outcome"]),
    recordWaits: counter(
      "beemesh_watchdog_clone_record_waits_total",
      "Clones that waited for the dispatch record to reach the object's template",
      ["outcome"],
    ),
  };
}

// ------------------------------------------------------------- helpers ---

const REMOVE_REASON: Record<RetireReason, RemoveRequest["reason"]> = {
  surplus: "scale-down",
  rollout: "update",
  deleted: "delete",
  "app-died": "retire",
  unhealthy: "retire",
  "slot-lost": "retire",
  "no-slot": "scale-down",
};

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Slot keys of one Deployment instance: `clone.<ns>.<name>.<uid>/slot-<i>`. */
export function slotPrefixOf(ns: string, parent: string, parentUid: string): string {
  const uid = parentUid.replace(/[^-_=a-zA-Z0-9]/g, "_");
  return `clone.${ns}.${nameToken(parent)}.${uid}`;
}

/**
 * The name a node agent gives a Deployment replica of a task (agent.ts
 * podNameFor: `<parent>-<last 10 of the task id>`), repeated here so the
 * sidecar does not load the agent and its runtimes.
 */
export function deploymentPodName(parent: string, taskId: string): string {
  const suffix = taskId.slice(-10).toLowerCase();
  const base = parent
    .replace(/\./g, "-")
    .slice(0, 62 - suffix.length)
    .replace(/-+$/, "");
  return `${base}-${suffix}`;
}

/** A level-triggered wake-up: a notify() that comes before next() is not lost. */
class Wakeup {
  private due = false;
  private waiter: (() => void) | null = null;

  notify(): void {
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter !== null) waiter();
    else this.due = true;
  }

  next(): Promise<void> {
    if (this.due) {
      this.due = false;
      return Promise.resolve();
    }
    return new Promise((wake) => (this.waiter = wake));
  }
}

/** One attempt at a clone Task: built, not yet buildable (the record lags), or not to be built at all. */
type CloneBuild =
  { kind: "task"; task: Task } | { kind: "lagging"; lag: RecordLag; err: string } | { kind: "skip" };

export type WatchdogPhase = "idle" | "starting" | "running" | "retiring" | "retired" | "stopped";

export interface WatchdogStatus {
  phase: WatchdogPhase;
  view: ReplicaView | null;
  retiredFor: RetireReason | null;
  specRevision: number;
}

// -------------------------------------------------------------- driver ---

export class Watchdog {
  readonly registry: Registry;
  readonly metrics: WatchdogMetrics;
  private readonly bus: WatchdogBus;
  private readonly target: WatchdogTarget;
  private health: LocalHealth | null = null;
  private readonly settings: WatchdogSettings;
  private readonly logicOptions: WatchdogOptions;
  private readonly clock: ControllerClock;
  private readonly log: Logger;
  private readonly interpret: DeploymentInterpreter;
  private readonly subj: Subjects;
  private readonly taskShards: number;
  private readonly slotPrefix: string;
  private readonly objectKey: string;
  private readonly newTaskId: () => string;
  private readonly tickAlarm: Alarm;
  private readonly internal = new AbortController();
  private replica: WatchdogReplica | null = null;
  private slots: KvSlotStore | null = null;
  /** beemesh-objects: the Deployment and its dispatch record (what a clone runs). */
  private objects: KV | null = null;
  private deployment: DeploymentView | null | undefined = undefined;
  private specRevision = 0;
  private phase: WatchdogPhase = "idle";
  private retiredFor: RetireReason | null = null;
  private heartbeatSeq = 0;
  private heartbeatSub: BusSubscription<Heartbeat> | null = null;
  /** When the next probe is due (monotonic); null until probing starts. */
  private nextProbeMs: number | null = null;
  private probing = false;
  private readonly inflight = new Set<Promise<unknown>>();
  /** Clone Tasks being built or published; a retiring replica finishes them before it goes. */
  private readonly cloning = new Set<Promise<void>>();
  /** Called after each change of `deployment` (a clone waiting for its record re-checks). */
  private readonly deploymentListeners = new Set<() => void>();
  private stopped: Promise<void> | null = null;

  constructor(private readonly opts: WatchdogDriverOptions) {
    this.bus = opts.bus;
    this.target = { ...opts.target };
    this.logicOptions = { ...opts.logic };
    this.settings = parseWatchdogOptions(this.logicOptions);
    this.clock = opts.clock ?? systemClock;
    this.registry = opts.registry ?? new Registry();
    this.metrics = metricsIn(this.registry);
    this.log = (opts.logger ?? silentLogger).child({
      pod: opts.target.pod,
      deployment: `${opts.target.ns}/${opts.target.parent}`,
    });
    this.interpret = opts.interpret ?? deploymentInterpreter;
    this.subj = subjects(opts.bus.prefix);
    this.taskShards = opts.taskShards ?? 1;
    if (!Number.isSafeInteger(this.taskShards) || this.taskShards < 1) {
      throw new WatchdogError(`taskShards must be a positive integer, got ${this.taskShards}`);
    }
    this.slotPrefix = slotPrefixOf(opts.target.ns, opts.target.parent, opts.target.parentUid);
    this.objectKey = kvKeys.object("beemeshdeployments", opts.target.ns, opts.target.parent);
    this.newTaskId = opts.newTaskId ?? (() => ulid());
    this.tickAlarm = new Alarm(this.clock, (dueAt) => this.wake(dueAt));
  }

  // ----------------------------------------------------------- lifecycle ---

  /**
   * Reads the Deployment, finds a handed-over clone slot, starts the replica
   * logic, and follows heartbeats, the Deployment and the app's health until
   * `signal` aborts, stop() is called, or the replica retires.
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.phase !== "idle") throw new WatchdogError(`start() called while ${this.phase}`);
    this.phase = "starting";
    if (signal !== undefined) {
      if (signal.aborted) {
        this.phase = "stopped";
        return;
      }
      signal.addEventListener("abort", () => void this.stop(), { once: true });
    }
    // stop() may come during any await below; each step checks before going on.
    const buckets = await this.openBuckets();
    if (this.stopping()) return;
    const objects = buckets.objects;
    this.objects = objects;
    this.slots = new KvSlotStore({ kv: buckets.leases, ttlMs: this.settings.slotTtlMs, clock: this.clock });
    await this.slots.follow(
      `clone.${this.target.ns}.${nameToken(this.target.parent)}.*`,
      `${this.slotPrefix}/`,
      this.internal.signal,
    );
    const first = await objects.get(this.objectKey);
    if (this.stopping()) return;
    this.onObjectEntry(first, false);

    const health = this.opts.health;
    this.health = typeof health === "function" ? health(await this.ownAppContainer(objects)) : health;
    const slot = this.target.slot ?? (await this.findHandedSlot());
    if (this.stopping()) return;
    const now = this.clock.monotonic();
    const replica = new WatchdogReplica(
      {
        pod: this.target.pod,
        node: this.target.nodeId,
        ns: this.target.ns,
        parent: this.target.parent,
        started_at: this.target.startedAtMs ?? this.clock.now(),
        template_hash: this.target.templateHash,
        generation: this.target.generation,
        ...(slot !== undefined ? { slot } : {}),
      },
      this.logicOptions,
      { newClaim: () => this.newTaskId() },
      now,
      this.slotPrefix,
    );
    await this.followObject(objects);
    if (this.stopping()) return;
    this.heartbeatSub = this.bus.subscribe(
      this.subj.watchdog(this.target.ns, this.target.parent),
      HEARTBEAT_SPEC,
    );
    this.consumeHeartbeats(this.heartbeatSub);
    this.replica = replica;
    this.phase = "running";
    this.log.info("watchdog started", {
      node: this.target.nodeId,
      slot: slot?.index ?? null,
      spec_revision: this.specRevision,
    });
    this.execute(replica.start());
    if (this.deployment !== undefined) this.feedSpec();
    void this.probeOnce();
  }

  /** Stops everything without retiring (SIGTERM: the pod is going away anyway). */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      if (this.phase !== "retired") this.phase = "stopped";
      this.internal.abort();
      this.tickAlarm.cancel();
      this.nextProbeMs = null;
      this.heartbeatSub?.unsubscribe();
      await Promise.allSettled([...this.inflight]);
    })();
    return this.stopped;
  }

  status(): WatchdogStatus {
    return {
      phase: this.phase,
      view: this.replica?.view(this.clock.monotonic()) ?? null,
      retiredFor: this.retiredFor,
      specRevision: this.specRevision,
    };
  }

  /** /healthz: the driver still runs its loop. */
  healthy(): boolean {
    return this.phase === "starting" || this.phase === "running" || this.phase === "retiring";
  }

  /** /readyz: connected, and the Deployment has been read. */
  ready(): boolean {
    return this.phase === "running" && this.deployment !== undefined && this.bus.isConnected();
  }

  /** The app container exited (runtime event): hand over at once, no probe hysteresis. */
  appDied(): void {
    this.feed({ type: "appDied", nowMs: this.clock.monotonic() });
  }

  // -------------------------------------------------------------- inputs ---

  private stopping(): boolean {
    return this.phase === "stopped" || this.phase === "retired" || this.internal.signal.aborted;
  }

  private feed(input: WatchdogInput): void {
    const replica = this.replica;
    if (replica === null || this.phase !== "running") return;
    const credited = replica.pausedMs;
    const actions = replica.step(input);
    // Time the logic found this process behind its schedule (a pause, a starved
    // loop) does not count toward slot expiry either: writes made meanwhile sit
    // unread in the watch. Credited before the actions run, some of which are slot writes.
    this.slots?.creditPause(replica.pausedMs - credited);
    this.execute(actions);
  }

  /**
   * The one timer: the replica's tick, and the probe when it is due within a
   * quarter period. Probes and heartbeats then share wake-ups (one per interval
   * with the defaults, both 1 s) instead of running on timers of their own.
   */
  private wake(dueAt: number): void {
    const now = this.clock.monotonic();
    // How late the timer fired: the event loop's lag, which the logic credits (logic/replica.ts).
    const lagMs = Math.max(0, now - dueAt);
    const health = this.health;
    if (health !== null && this.nextProbeMs !== null) {
      const slackMs = Math.min(health.periodMs, this.settings.intervalMs) / 4;
      if (now >= this.nextProbeMs - slackMs) void this.probeOnce();
    }
    this.feed({ type: "tick", nowMs: now, lagMs });
  }

  private feedSpec(): void {
    const d = this.deployment;
    if (d === undefined) return;
    this.feed({
      type: "spec",
      spec: d === null ? null : d.spec,
      revision: this.specRevision,
      nowMs: this.clock.monotonic(),
    });
  }

  private async openBuckets(): Promise<{ objects: KV; leases: KV }> {
    // Bucket names follow the subject prefix as the NATS config derives them.
    const names = meshSubjects(this.bus.prefix).buckets;
    const [objects, leases] = await Promise.all([
      this.bus.kvm.open(names.objects),
      this.bus.kvm.open(names.leases),
    ]);
    return { objects, leases };
  }

  /** A KV entry of the Deployment: a view of it, or null when it is gone (or is another instance). */
  private onObjectEntry(e: KvEntry | null, feed = true): void {
    const revision = e?.revision ?? 0;
    if (revision < this.specRevision) return;
    let next: DeploymentView | null | undefined;
    if (e === null || e.operation !== "PUT") {
      next = null;
    } else {
      let raw: unknown;
      try {
        raw = JSON.parse(new TextDecoder().decode(e.value));
      } catch (err) {
        this.log.warn("undecodable Deployment object ignored", { revision, err: errorText(err) });
        return;
      }
      const parsed = parseBeemeshDeployment(raw);
      if (!parsed.ok) {
        this.log.warn("invalid Deployment object ignored", { revision, err: parsed.error.message });
        return;
      }
      next = this.viewOf(parsed.value);
      if (next === undefined) return;
    }
    this.deployment = next;
    this.specRevision = revision;
    for (const listener of this.deploymentListeners) listener();
    if (feed) this.feedSpec();
  }

  private viewOf(obj: BeemeshDeployment): DeploymentView | null | undefined {
    const uid = obj.metadata.uid;
    if (uid !== undefined && uid !== this.target.parentUid) {
      // Same name, another Deployment: ours was deleted and re-created.
      return null;
    }
    if (obj.metadata.deletionTimestamp !== undefined) return null;
    try {
      return this.interpret(obj);
    } catch (err) {
      this.log.warn("cannot interpret the Deployment", { err: errorText(err) });
      return undefined;
    }
  }

  private async followObject(objects: KV): Promise<void> {
    const iter = await objects.watch({ key: this.objectKey });
    const signal = this.internal.signal;
    const stop = () => iter.stop();
    if (signal.aborted) {
      stop();
      return;
    }
    signal.addEventListener("abort", stop, { once: true });
    this.track(
      (async () => {
        try {
          for await (const e of iter) this.onObjectEntry(e);
        } catch (err) {
          if (!signal.aborted) this.log.error("Deployment watch ended", { err: errorText(err) });
        } finally {
          signal.removeEventListener("abort", stop);
        }
      })(),
    );
  }

  private consumeHeartbeats(sub: BusSubscription<Heartbeat>): void {
    this.track(
      (async () => {
        try {
          for await (const m of sub) {
            const hb = fromWire(m.payload);
            if (hb.pod === this.target.pod) continue;
            if (this.opts.acceptHeartbeat !== undefined && !this.opts.acceptHeartbeat(hb)) continue;
            this.metrics.heartbeatsReceived.inc();
            this.feed({ type: "heartbeat", hb, nowMs: this.clock.monotonic() });
          }
        } catch (err) {
          if (!this.stopping()) this.log.error("heartbeat subscription ended", { err: errorText(err) });
        }
      })(),
    );
  }

  /** Runs one probe; the next is due a period after this one started (wake() starts it). */
  private async probeOnce(): Promise<void> {
    const health = this.health;
    if (this.probing || this.stopping() || health === null) return;
    this.probing = true;
    this.nextProbeMs = this.clock.monotonic() + health.periodMs;
    let verdict: HealthVerdict;
    try {
      verdict = await health.check(this.internal.signal);
    } catch (err) {
      verdict = { live: false, ready: false };
      this.log.debug("probe failed", { err: errorText(err) });
    }
    // Before the feed, so the step after it arms the timer for the next probe.
    this.probing = false;
    this.feed({ type: "probe", live: verdict.live, ready: verdict.ready, nowMs: this.clock.monotonic() });
  }

  /**
   * The app container of this pod's own template: the current object's when the
   * template hashes agree, else the newest revision in the object's KV history
   * that has our template (a rollout may have started since this pod was made).
   */
  private async ownAppContainer(objects: KV): Promise<Container | undefined> {
    const current = this.deployment;
    if (current != null && current.spec.template_hash === this.target.templateHash)
      return current.appContainers[0];
    let found: Container | undefined;
    try {
      const history = await objects.history({ key: this.objectKey });
      const revisions: KvEntry[] = [];
      for await (const e of history) revisions.push(e);
      for (const e of revisions.reverse()) {
        if (e.operation !== "PUT") continue;
        const parsed = parseBeemeshDeployment(JSON.parse(new TextDecoder().decode(e.value)) as unknown);
        if (!parsed.ok) continue;
        const view = this.viewOf(parsed.value);
        if (view != null && view.spec.template_hash === this.target.templateHash) {
          found = view.appContainers[0];
          break;
        }
      }
    } catch (err) {
      this.log.warn("object history unreadable", { err: errorText(err) });
    }
    if (found === undefined)
      this.log.warn("own template not found in the object's history; probing the current one");
    return found ?? (current != null ? current.appContainers[0] : undefined);
  }

  /** A clone's slot: the one whose claim is the task that placed this pod. */
  private async findHandedSlot(): Promise<SlotClaim | undefined> {
    const d = this.deployment;
    const slots = this.slots;
    if (d == null || slots === null) return undefined;
    const bound = d.spec.replicas + Math.max(1, d.spec.max_surge);
    const keys = Array.from({ length: bound }, (_, i) => i);
    const found = await Promise.all(
      keys.map(async (index) => {
        try {
          const claim = await slots.holder(`${this.slotPrefix}/slot-${index}`);
          return claim !== undefined && this.isMyTask(claim) ? { index, claim } : undefined;
        } catch {
          return undefined;
        }
      }),
    );
    return found.find((s) => s !== undefined);
  }

  private isMyTask(claim: string): boolean {
    if (this.target.taskId !== undefined) return claim === this.target.taskId;
    if (!/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/.test(claim)) return false;
    return deploymentPodName(this.target.parent, claim) === this.target.pod;
  }

  // ------------------------------------------------------------- actions ---

  private execute(actions: readonly WatchdogAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case "heartbeat":
          this.sendHeartbeat({ ...a.hb, ts: this.clock.now() });
          break;
        case "acquireSlot":
          this.slotOp("acquire", a.slot, a.claim, (s) => s.acquire(a.key, a.claim));
          break;
        case "renewSlot":
          this.slotOp("renew", a.slot, a.claim, (s) => s.renew(a.key, a.claim));
          break;
        case "transferSlot":
          this.slotOp("transfer", a.slot, a.to, (s) => s.transfer(a.key, a.from, a.to));
          break;
        case "releaseSlot":
          if (this.slots !== null) this.track(this.slots.release(a.key, a.claim));
          break;
        case "clone": {
          const cloning = this.clone(a);
          this.cloning.add(cloning);
          void cloning.finally(() => this.cloning.delete(cloning)).catch(() => undefined);
          this.track(cloning);
          break;
        }
        case "retire":
          this.track(this.retire(a.reason));
          break;
        case "log":
          if (a.level === "warn") this.log.warn(a.msg);
          else this.log.info(a.msg);
          break;
      }
    }
    this.afterStep();
  }

  private afterStep(): void {
    const replica = this.replica;
    if (replica === null || this.phase !== "running") return;
    const now = this.clock.monotonic();
    const view = replica.view(now);
    this.metrics.peersAlive.set(view.live.filter((p) => p !== this.target.pod).length);
    const next = replica.nextWakeMs();
    // Peers' TTLs expire between heartbeats; a tick per interval at least re-judges them.
    // A probe still running re-arms the timer when it answers.
    const probeAt = this.probing ? Infinity : (this.nextProbeMs ?? Infinity);
    const at = Math.max(Math.min(next ?? Infinity, now + this.settings.intervalMs, probeAt), now + 1);
    this.tickAlarm.cancel();
    this.tickAlarm.arm(at);
  }

  private sendHeartbeat(hb: WatchdogHeartbeat): void {
    if (!this.bus.isConnected()) return;
    try {
      this.bus.publish(
        this.subj.watchdog(this.target.ns, this.target.parent),
        HEARTBEAT_TYPE,
        toWire(hb, this.heartbeatSeq++, this.target.taskId),
      );
      this.metrics.heartbeatsSent.inc();
    } catch (err) {
      this.log.warn("heartbeat not sent", { err: errorText(err) });
    }
  }

  private slotOp(
    op: SlotOp,
    slot: number,
    claim: string,
    run: (s: KvSlotStore) => Promise<SlotOutcome>,
  ): void {
    const slots = this.slots;
    if (slots === null) return;
    this.track(
      run(slots).then((outcome) => {
        this.metrics.slotOps.inc({ op, outcome });
        this.feed({ type: "slotResult", op, slot, claim, outcome, nowMs: this.clock.monotonic() });
      }),
    );
  }

  private async clone(a: Extract<WatchdogAction, { type: "clone" }>): Promise<void> {
    const d = this.deployment;
    if (d != null && d.spec.template_hash !== a.template_hash) {
      this.log.info("template changed since the clone was decided; cloning the current one", {
        decided: a.template_hash,
        current: d.spec.template_hash,
      });
    }
    const built = await this.buildClone(a);
    if (built.kind === "lagging") {
      // Never published: the logic frees the slot and tries again after slotRetryMs.
      this.log.warn("clone task not built: the dispatch record did not catch up", {
        task_id: a.claim,
        slot: a.slot,
        lag: built.lag,
        err: built.err,
      });
      this.feed({
        type: "cloneUnbuilt",
        slot: a.slot,
        claim: a.claim,
        reason: "record-behind",
        nowMs: this.clock.monotonic(),
      });
      return;
    }
    if (built.kind === "skip") return;
    const task = built.task;
    try {
      await this.bus.publishDurable(this.subj.tasks(shardOf(task.task_id, this.taskShards)), "Task", task, {
        msgID: task.task_id,
        timeoutMs: 5000,
      });
      this.metrics.clones.inc();
      this.log.info("clone task published", {
        task_id: task.task_id,
        slot: a.slot,
        generation: task.generation,
        manifest: task.manifest_ref.key,
      });
    } catch (err) {
      // The slot stays pending; the logic gives it up after cloneGraceMs and tries again.
      this.log.error("clone task not published", { task_id: task.task_id, err: errorText(err) });
    }
  }

  /**
   * The clone Task from the dispatcher's record, which names what this
   * generation runs (the watchdog renders nothing). A record that lags the
   * object is waited for (awaitRecord).
   */
  private async buildClone(a: Extract<WatchdogAction, { type: "clone" }>): Promise<CloneBuild> {
    const objects = this.objects;
    if (objects === null) return { kind: "skip" };
    let entry: KvEntry | null;
    try {
      entry = await objects.get(deploymentRecordKey(this.target.ns, this.target.parent));
    } catch (err) {
      // The slot stays pending; the logic gives it up after cloneGraceMs and tries again.
      this.log.warn("dispatch record unreadable; clone skipped", { task_id: a.claim, err: errorText(err) });
      return { kind: "skip" };
    }
    const first = this.cloneFrom(a, entry);
    return first.kind === "lagging" ? this.awaitRecord(a, entry, first) : first;
  }

  /** One attempt, from a record entry and the Deployment as this watchdog sees it now. */
  private cloneFrom(a: Extract<WatchdogAction, { type: "clone" }>, entry: KvEntry | null): CloneBuild {
    const d = this.deployment;
    if (d == null) {
      this.log.warn("clone asked without a Deployment; skipped", { slot: a.slot });
      return { kind: "skip" };
    }
    try {
      const record =
        entry !== null && entry.operation === "PUT" ? decodeDispatchRecord(entry.value) : undefined;
      const task = cloneTaskFrom(record, {
        ns: this.target.ns,
        parent: this.target.parent,
        parentUid: this.target.parentUid,
        templateHash: d.spec.template_hash,
        generation: d.spec.generation,
        taskId: a.claim,
        hints: { "beemesh.io/clone-slot": String(a.slot), "beemesh.io/cloned-by": this.target.pod },
        nonce: newNonce(),
        ts: this.clock.now(),
      });
      return { kind: "task", task };
    } catch (err) {
      if (err instanceof RecordLagError) return { kind: "lagging", lag: err.lag, err: err.message };
      // A record that can never say what to run: the slot stays pending until cloneGraceMs.
      this.log.warn("clone task not built", { task_id: a.claim, slot: a.slot, err: errorText(err) });
      return { kind: "skip" };
    }
  }

  /**
   * The dispatcher writes a new generation's record after its object, and a
   * watchdog may see the object first: follow the record's key (and our view of
   * the object, when the record is ahead of it) until the clone can be built,
   * for at most recordWaitMs. A watch, not polling: the clone goes out as soon
   * as the record is written. Returns the last lagging attempt on time-out.
   */
  private async awaitRecord(
    a: Extract<WatchdogAction, { type: "clone" }>,
    firstEntry: KvEntry | null,
    first: Extract<CloneBuild, { kind: "lagging" }>,
  ): Promise<CloneBuild> {
    const objects = this.objects;
    if (objects === null) return { kind: "skip" };
    const signal = this.internal.signal;
    const waitMs = this.settings.recordWaitMs;
    const sinceMs = this.clock.monotonic();
    this.log.info("dispatch record lags the object; waiting for it", {
      task_id: a.claim,
      slot: a.slot,
      lag: first.lag,
      wait_ms: waitMs,
    });
    const wake = new Wakeup();
    const notify = () => wake.notify();
    let entry = firstEntry;
    let watch: Awaited<ReturnType<KV["watch"]>> | undefined;
    this.deploymentListeners.add(notify);
    signal.addEventListener("abort", notify, { once: true });
    let expired = false;
    const timer = this.clock.setTimeout(() => {
      expired = true;
      notify();
    }, waitMs);
    let last: CloneBuild = first;
    try {
      // Starts with the key's current value, so a write since the get above is not missed.
      const iter = await objects.watch({ key: deploymentRecordKey(this.target.ns, this.target.parent) });
      watch = iter;
      void (async () => {
        for await (const e of iter) {
          entry = e;
          notify();
        }
      })().catch((err: unknown) => {
        if (!signal.aborted) this.log.warn("dispatch record watch ended", { err: errorText(err) });
        notify();
      });
      for (;;) {
        await wake.next();
        if (signal.aborted) return { kind: "skip" };
        last = this.cloneFrom(a, entry);
        if (last.kind === "task") {
          this.metrics.recordWaits.inc({ outcome: "caught-up" });
          this.log.info("dispatch record caught up", {
            task_id: a.claim,
            waited_ms: Math.round(this.clock.monotonic() - sinceMs),
          });
          return last;
        }
        if (last.kind === "skip" || expired) break;
      }
    } catch (err) {
      this.log.warn("dispatch record not watchable", { task_id: a.claim, err: errorText(err) });
    } finally {
      watch?.stop();
      this.clock.clearTimeout(timer);
      this.deploymentListeners.delete(notify);
      signal.removeEventListener("abort", notify);
    }
    if (last.kind === "lagging") this.metrics.recordWaits.inc({ outcome: "gave-up" });
    return last;
  }

  private async retire(reason: RetireReason): Promise<void> {
    if (this.phase !== "running") return;
    this.phase = "retiring";
    this.retiredFor = reason;
    this.metrics.retires.inc({ reason });
    this.tickAlarm.cancel();
    this.nextProbeMs = null;
    this.log.info("retiring", { reason });
    // A handed-over slot's clone goes out before this pod does (its wait is bounded).
    await Promise.allSettled([...this.cloning]);
    const req: RemoveRequest = {
      ns: this.target.ns,
      kind: "Deployment",
      parent: this.target.parent,
      pod: this.target.pod,
      ...(this.target.taskId !== undefined ? { task_id: this.target.taskId } : {}),
      reason: REMOVE_REASON[reason],
      ts: this.clock.now(),
    };
    const attempts = this.opts.removeAttempts ?? 3;
    for (let i = 0; i < attempts && !this.internal.signal.aborted; i++) {
      try {
        const reply = await requestRemove(
          this.bus,
          this.target.nodeId,
          { ...req, ts: this.clock.now() },
          this.opts.removeTimeoutMs ?? 30_000,
        );
        if (reply.ok) break;
        this.log.warn("node refused to remove this pod", { error: reply.error ?? "" });
        break;
      } catch (err) {
        this.log.warn("remove request failed", { attempt: i + 1, err: errorText(err) });
      }
    }
    this.phase = "retired";
    this.heartbeatSub?.unsubscribe();
    this.internal.abort();
    this.opts.onRetired?.(reason);
  }

  private track<T>(p: Promise<T>): void {
    const guarded = p.catch((err: unknown) =>
      this.log.error("watchdog task failed", { err: errorText(err) }),
    );
    this.inflight.add(guarded);
    void guarded.finally(() => this.inflight.delete(guarded));
  }
}
