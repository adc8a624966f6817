// A whole mesh in one process for the watchdog's integration tests and the
// heal bench: a real nats-server, real node agents on fake runtimes, a real
// lease-keeper, a stand-in for the dispatcher's writes (object, manifest,
// first Tasks), and one in-process Watchdog per pod, started when its pod
// starts and stopped when its pod is removed or its node is lost.
//
// Partitions: every watchdog gets a heartbeat filter; while the mesh is
// partitioned a watchdog hears only its own group (clones join the group of
// the watchdog that cloned them). The slot store (KV) stays reachable to all,
// as it would be for two halves of a region that still reach their NATS cluster.
import { Registry } from "prom-client";
import type { KV } from "@nats-io/kv";
import { ensureSchedulingInfra } from "../../controllers/common/nats-setup.js";
import { memoryLogger, type Logger } from "../../controllers/common/log.js";
import { LeaseKeeper } from "../../controllers/lease-keeper/keeper.js";
import { NodeAgent } from "../../controllers/scheduler-bidder/agent.js";
import {
  FakeRuntime,
  type DeploySpec,
  type LogOptions,
  type NodeCapacity,
  type PodListing,
  type PodLogs,
  type PodStatus,
  type Runtime,
} from "../../controllers/scheduler-bidder/runtime/index.js";
import {
  buildTask,
  renderWorkload,
  taskTemplateOf,
  type RenderOptions,
} from "../../controllers/dispatcher/fanout/render.js";
import { kvRecordStore } from "../../controllers/dispatcher/fanout/nats.js";
import type { RecordStore } from "../../controllers/dispatcher/fanout/ports.js";
import {
  Watchdog,
  type LocalHealth,
  type LocalHealthFactory,
  type HealthVerdict,
} from "../../controllers/watchdog/watchdog.js";
import {
  parseWatchdogOptions,
  type WatchdogHeartbeat,
  type WatchdogOptions,
} from "../../controllers/watchdog/logic/index.js";
import {
  BUCKETS,
  WATCHDOG_CONTAINER_NAME,
  kvKeys,
  parseBeemeshDeployment,
  parseHeartbeat,
  parseTask,
  subjects,
  type BeemeshDeployment,
} from "../../protocol/index.js";
import { newNonce } from "../../protocol/bus/index.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";

export const NS = "default";

export interface MeshOptions {
  nodes?: number;
  /** Watchdog logic settings, over FAST_LOGIC (so a test file stays short) unless `defaults` is set. */
  logic?: WatchdogOptions;
  /** Start from the logic's own defaults (1 s heartbeats, 3 intervals TTL...) instead of FAST_LOGIC. */
  defaults?: boolean;
  probePeriodMs?: number;
  /** An app is ready this long after it started (ground truth and probes alike). */
  readyDelayMs?: number;
  verbose?: boolean;
  /** Each node's runtime (default: a FakeRuntime). */
  runtimeFor?: (nodeId: string) => Runtime;
  /** Each pod's local health (default: the fake runtime's container state). */
  healthFor?: (pod: PodInfo) => LocalHealth | LocalHealthFactory;
  /**
   * Leave the injected watchdog container out of what the runtime runs: the
   * watchdog runs in-process beside the pod instead (real runtimes without the
   * sidecar image or its Workload API socket).
   */
  stripSidecar?: boolean;
}

/** What a health factory gets to know about a pod. */
export interface PodInfo {
  pod: string;
  node: string;
  runtime: Runtime;
}

export const FAST_LOGIC: WatchdogOptions = {
  intervalMs: 300,
  ttlIntervals: 3,
  slotRenewMs: 500,
  slotTtlMs: 1500,
  cloneGraceMs: 8000,
  slotRetryMs: 300,
};

interface PodRecord {
  pod: string;
  node: string;
  parent: string;
  taskId: string;
  templateHash: string;
  startedMs: number;
  watchdog?: Watchdog;
  bus?: TestBus;
  group: number;
  gone: boolean;
  logs?: ReturnType<typeof memoryLogger>;
}

interface MeshNode {
  nodeId: string;
  runtime: Runtime;
  /** Set when the node runs the fake runtime (crash and event hooks). */
  fake: FakeRuntime | undefined;
  agent: NodeAgent;
  bus: TestBus;
  lost: boolean;
}

/** Delegates to a runtime and tells the mesh which manifest each pod runs and when it goes. */
class RecordingRuntime implements Runtime {
  readonly kind: Runtime["kind"];
  constructor(
    readonly inner: Runtime,
    private readonly hooks: {
      deployed: (spec: DeploySpec) => void;
      removed: (pod: string) => void;
      stripSidecar: boolean;
    },
  ) {
    this.kind = inner.kind;
  }
  async deploy(spec: DeploySpec): Promise<void> {
    const run = this.hooks.stripSidecar ? withoutSidecar(spec) : spec;
    await this.inner.deploy(run);
    this.hooks.deployed(spec);
  }
  status(podName: string): Promise<PodStatus> {
    return this.inner.status(podName);
  }
  logs(podName: string, options?: LogOptions): Promise<PodLogs> {
    return this.inner.logs(podName, options);
  }
  async remove(podName: string): Promise<boolean> {
    const removed = await this.inner.remove(podName);
    this.hooks.removed(podName);
    return removed;
  }
  list(): Promise<PodListing> {
    return this.inner.list();
  }
  capacity(): Promise<NodeCapacity> {
    return this.inner.capacity();
  }
}

function withoutSidecar(spec: DeploySpec): DeploySpec {
  const manifest = JSON.parse(JSON.stringify(spec.manifest)) as DeploySpec["manifest"];
  manifest.spec.containers = manifest.spec.containers.filter((c) => c.name !== WATCHDOG_CONTAINER_NAME);
  return { ...spec, manifest };
}

function envOf(spec: DeploySpec, name: string): string | undefined {
  const c = spec.manifest.spec.containers.find((x) => x.name === WATCHDOG_CONTAINER_NAME);
  return c?.env?.find((e) => e.name === name)?.value;
}

export function sampleDeployment(
  name: string,
  replicas: number,
  uid: string,
  image = "localhost/app:v1",
  opts: { spread?: boolean } = {},
): BeemeshDeployment {
  // spread: at most one replica per node (required pod anti-affinity on the app label).
  const affinity = opts.spread
    ? {
        podAntiAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: [
            { labelSelector: { matchLabels: { app: name } }, topologyKey: "kubernetes.io/hostname" },
          ],
        },
      }
    : undefined;
  return {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: {
      name,
      namespace: NS,
      uid,
      generation: 1,
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{ name: "app", image, resources: { requests: { cpu: "10m", memory: "16Mi" } } }],
          ...(affinity !== undefined ? { affinity } : {}),
        },
      },
    },
  };
}

export class WatchdogMesh {
  readonly render: RenderOptions;
  readonly log = memoryLogger("mesh");
  private readonly pods = new Map<string, PodRecord>();
  private readonly nodes: MeshNode[] = [];
  private readonly clonedBy = new Map<string, string>();
  private keeper!: LeaseKeeper;
  private keeperBus!: TestBus;
  private admin!: TestBus;
  private dispatcher!: TestBus;
  private objects!: KV;
  private records!: RecordStore;
  private manifests!: KV;
  private partitioned = false;
  private maxLive = 0;
  private minReady = Infinity;
  private readonly opts: Required<Omit<MeshOptions, "logic" | "defaults" | "runtimeFor" | "healthFor">> &
    Pick<MeshOptions, "runtimeFor" | "healthFor"> & { logic: WatchdogOptions };
  private readyTimer: NodeJS.Timeout | undefined;
  private readonly starting = new Set<Promise<void>>();
  readonly events: string[] = [];

  private constructor(
    readonly nats: NatsFixture,
    opts: MeshOptions,
  ) {
    this.opts = {
      nodes: opts.nodes ?? 3,
      logic: { ...(opts.defaults ? {} : FAST_LOGIC), ...opts.logic },
      probePeriodMs: opts.probePeriodMs ?? 100,
      readyDelayMs: opts.readyDelayMs ?? 200,
      verbose: opts.verbose ?? false,
      stripSidecar: opts.stripSidecar ?? false,
      runtimeFor: opts.runtimeFor,
      healthFor: opts.healthFor,
    };
    // Not the renderer's defaults: a watchdog that rendered the pod itself would name another manifest.
    this.render = { natsUrl: nats.url, sidecarResources: { cpu: "25m", memory: "64Mi" } };
  }

  static async start(opts: MeshOptions = {}): Promise<WatchdogMesh> {
    const nats = await startNats();
    const mesh = new WatchdogMesh(nats, opts);
    try {
      await mesh.init();
    } catch (err) {
      await mesh.stop();
      throw err;
    }
    return mesh;
  }

  private async init(): Promise<void> {
    this.dispatcher = await busAs(this.nats, "dispatcher");
    await ensureSchedulingInfra(this.dispatcher.bus.nc, { storage: "memory" });
    this.objects = await this.dispatcher.bus.kvm.open(BUCKETS.objects);
    this.records = kvRecordStore(this.objects);
    this.manifests = await this.dispatcher.bus.kvm.open(BUCKETS.manifests);

    // Who cloned which task: a clone joins its cloner's side of a partition.
    this.admin = await busAs(this.nats, "admin");
    const tasks = this.admin.bus.subscribe(subjects().allTasks, { type: "Task", parse: parseTask });
    void (async () => {
      for await (const m of tasks) {
        const by = m.payload.hints?.["beemesh.io/cloned-by"];
        if (by !== undefined) this.clonedBy.set(m.payload.task_id, by);
      }
    })();
    await this.admin.bus.nc.flush();

    this.keeperBus = await busAs(this.nats, "lease-keeper");
    this.keeper = new LeaseKeeper({
      bus: this.keeperBus.bus,
      buckets: {
        leases: await this.keeperBus.bus.kvm.open(BUCKETS.leases),
        nodes: await this.keeperBus.bus.kvm.open(BUCKETS.nodes),
      },
      logger: this.logFor("keeper"),
    });
    await this.keeper.start();
    for (let i = 1; i <= this.opts.nodes; i++) await this.addNode(`node-${i}`);
    this.readyTimer = setInterval(() => this.sample(), 20);
  }

  async addNode(nodeId: string): Promise<void> {
    const bus = await busAs(this.nats, "scheduler-bidder", ["node", nodeId]);
    const inner = this.opts.runtimeFor?.(nodeId) ?? new FakeRuntime();
    const fake = inner instanceof FakeRuntime ? inner : undefined;
    const runtime = new RecordingRuntime(inner, {
      deployed: (spec) => this.onDeployed(nodeId, spec),
      removed: (pod) => this.onRemoved(pod),
      stripSidecar: this.opts.stripSidecar,
    });
    fake?.events.subscribe((e) => {
      if (e.phase === "removed") this.onRemoved(e.podName);
      else if ((e.phase === "failed" || e.phase === "exited") && e.previous === "running")
        this.pods.get(e.podName)?.watchdog?.appDied();
      this.sample();
    });
    const kvm = bus.bus.kvm;
    const agent = new NodeAgent({
      nodeId,
      bus: bus.bus,
      runtime,
      buckets: {
        manifests: await kvm.open(BUCKETS.manifests),
        leases: await kvm.open(BUCKETS.leases),
        nodes: await kvm.open(BUCKETS.nodes),
        providers: await kvm.open(BUCKETS.providers),
      },
      logger: this.logFor(nodeId),
    });
    await agent.start();
    this.nodes.push({ nodeId, runtime, fake, agent, bus, lost: false });
  }

  private readonly componentLogs = new Map<string, ReturnType<typeof memoryLogger>>();

  private logFor(component: string): Logger {
    const l = memoryLogger(component);
    this.componentLogs.set(component, l);
    return l;
  }

  /** Log lines of the agents and the keeper (for failure messages). */
  componentLines(filter?: (line: Record<string, unknown>) => boolean): string[] {
    const out: string[] = [];
    for (const [c, l] of this.componentLogs)
      for (const line of l.lines) if (!filter || filter(line)) out.push(`${c}: ${JSON.stringify(line)}`);
    return out;
  }

  // ------------------------------------------------------------ pods ---

  private onDeployed(nodeId: string, spec: DeploySpec): void {
    const parent = spec.identity.parent;
    const cloner = this.clonedBy.get(spec.identity.taskId);
    const rec: PodRecord = {
      pod: spec.podName,
      node: nodeId,
      parent,
      taskId: spec.identity.taskId,
      templateHash: envOf(spec, "BEEMESH_TEMPLATE_HASH") ?? "",
      startedMs: performance.now(),
      group: (cloner !== undefined ? this.pods.get(cloner)?.group : undefined) ?? 1,
      gone: false,
    };
    this.pods.set(spec.podName, rec);
    this.events.push(
      `${Math.round(performance.now())} start ${spec.podName} on ${nodeId} template=${rec.templateHash}`,
    );
    const p = this.startWatchdog(rec, spec).catch((err: unknown) => {
      this.log.error("watchdog did not start", {
        pod: rec.pod,
        err: err instanceof Error ? err.message : String(err),
      });
    });
    this.starting.add(p);
    void p.finally(() => this.starting.delete(p));
  }

  private async startWatchdog(rec: PodRecord, spec: DeploySpec): Promise<void> {
    const uid = envOf(spec, "BEEMESH_PARENT_UID") ?? "";
    const generation = Number(envOf(spec, "BEEMESH_GENERATION") ?? "1");
    const bus = await busAs(this.nats, "watchdog", ["ns", NS, "deployment", rec.parent, rec.pod]);
    rec.bus = bus;
    const node = this.nodes.find((n) => n.nodeId === rec.node)!;
    const health: LocalHealth | LocalHealthFactory = this.opts.healthFor?.({
      pod: rec.pod,
      node: rec.node,
      runtime: node.runtime,
    }) ?? {
      periodMs: this.opts.probePeriodMs,
      check: async (): Promise<HealthVerdict> => {
        const s = await node.runtime.status(rec.pod);
        const live = s.containers[0]?.state === "running";
        return { live, ready: live && performance.now() - rec.startedMs >= this.opts.readyDelayMs };
      },
    };
    rec.logs = memoryLogger(`wd-${rec.pod}`);
    const wd = new Watchdog({
      bus: bus.bus,
      target: {
        ns: NS,
        parent: rec.parent,
        parentUid: uid,
        pod: rec.pod,
        nodeId: rec.node,
        generation,
        templateHash: rec.templateHash,
        taskId: rec.taskId,
      },
      health,
      logic: this.opts.logic,
      registry: new Registry(),
      logger: rec.logs,
      acceptHeartbeat: (hb: WatchdogHeartbeat) =>
        !this.partitioned || this.pods.get(hb.pod)?.group === rec.group,
      onRetired: (reason) =>
        this.events.push(`${Math.round(performance.now())} ${rec.pod} retired: ${reason}`),
    });
    rec.watchdog = wd;
    if (rec.gone) {
      await bus.bus.close();
      return;
    }
    await wd.start();
    if (rec.gone) await this.stopWatchdog(rec);
  }

  private onRemoved(pod: string): void {
    const rec = this.pods.get(pod);
    if (rec === undefined || rec.gone) return;
    rec.gone = true;
    this.events.push(`${Math.round(performance.now())} removed ${pod}`);
    void this.stopWatchdog(rec);
  }

  private async stopWatchdog(rec: PodRecord): Promise<void> {
    await rec.watchdog?.stop();
    await rec.bus?.bus.close().catch(() => undefined);
  }

  // ---------------------------------------------------- observation ---

  /** Pods of `parent` that exist in some runtime (any phase). */
  live(parent?: string): string[] {
    return [...this.pods.values()]
      .filter((p) => !p.gone && (parent === undefined || p.parent === parent))
      .map((p) => p.pod)
      .sort();
  }

  /** Ground truth: pods whose app runs and is past its ready delay. */
  readyPods(parent?: string): string[] {
    const now = performance.now();
    return [...this.pods.values()]
      .filter(
        (p) =>
          !p.gone &&
          (parent === undefined || p.parent === parent) &&
          !this.crashed(p) &&
          now - p.startedMs >= this.opts.readyDelayMs,
      )
      .map((p) => p.pod);
  }

  livePods(): ReadonlyMap<string, Readonly<PodRecord>> {
    return this.pods;
  }

  templateOf(pod: string): string | undefined {
    return this.pods.get(pod)?.templateHash;
  }

  watchdogOf(pod: string): Watchdog | undefined {
    return this.pods.get(pod)?.watchdog;
  }

  private crashed(p: PodRecord): boolean {
    return this.crashedPods.has(p.pod);
  }
  private readonly crashedPods = new Set<string>();

  private sample(): void {
    const live = this.live().length;
    if (live > this.maxLive) this.maxLive = live;
    const ready = this.readyPods().length;
    if (ready < this.minReady) this.minReady = ready;
  }

  /** Restarts the max-live / min-ready tracking from the current state. */
  mark(): void {
    this.maxLive = this.live().length;
    this.minReady = Infinity;
    this.sample();
  }

  maxLiveSinceMark(): number {
    this.sample();
    return this.maxLive;
  }

  minReadySinceMark(): number {
    this.sample();
    return this.minReady;
  }

  /** Every watchdog of a pod that still exists is running its loop. */
  watchdogsSettled(parent: string): boolean {
    return this.live(parent).every((p) => this.pods.get(p)?.watchdog?.status().phase === "running");
  }

  /**
   * The live pods of `parent` when exactly `n` run, every watchdog runs its loop
   * and reports ready, all on one template; otherwise undefined (for waitFor).
   */
  settledReady(parent: string, n: number): string[] | undefined {
    const live = this.live(parent);
    const ok =
      live.length === n &&
      new Set(live.map((p) => this.templateOf(p))).size <= 1 &&
      this.watchdogsSettled(parent) &&
      this.readyPods(parent).length === n &&
      live.every((p) => this.watchdogOf(p)?.status().view?.ready === true);
    return ok ? live : undefined;
  }

  /**
   * Heartbeat rounds a "stays at N" check observes: a peer is judged missing
   * after ttlIntervals silent rounds, and twice that leaves time for a clone
   * (or a retirement) it caused to show up in the runtimes.
   */
  holdRounds(): number {
    return 2 * parseWatchdogOptions(this.opts.logic).ttlIntervals;
  }

  /**
   * Resolves after `rounds` heartbeat rounds of `parent`, seen on the wire: a
   * round ends once every pod of it whose watchdog is running has heartbeated
   * since the round began, so each of them has ticked (and decided) at least
   * `rounds` times. Rejects after timeoutMs (default: 4 intervals a round).
   */
  async heartbeatRounds(parent: string, rounds: number, timeoutMs?: number): Promise<void> {
    const intervalMs = parseWatchdogOptions(this.opts.logic).intervalMs;
    const sub = this.admin.bus.subscribe(subjects().watchdog(NS, parent), {
      type: "Heartbeat",
      parse: parseHeartbeat,
    });
    const running = () =>
      this.live(parent).filter((p) => this.pods.get(p)?.watchdog?.status().phase === "running");
    const counted = (async () => {
      let done = 0;
      let seen = new Set<string>();
      for await (const m of sub) {
        seen.add(m.payload.pod);
        if (!running().every((p) => seen.has(p))) continue;
        seen = new Set();
        if (++done >= rounds) return;
      }
    })();
    try {
      await withTimeout(
        counted,
        timeoutMs ?? Math.max(5_000, 4 * rounds * intervalMs),
        `${rounds} heartbeat rounds of ${parent}`,
      );
    } finally {
      sub.unsubscribe();
    }
  }

  // ------------------------------------------------------------ actions ---

  private objectKey(name: string): string {
    return kvKeys.object("beemeshdeployments", NS, name);
  }

  /**
   * What the API and the dispatcher do for a new generation: store the
   * manifest, record it (the watchdogs clone from the record), store the object.
   */
  async storeObject(input: BeemeshDeployment): Promise<BeemeshDeployment> {
    const obj = this.asStored(input);
    await this.storeDispatch(obj);
    await this.putObject(obj);
    return obj;
  }

  /** Parsed as the API stores it, with the schema's defaults. */
  private asStored(input: BeemeshDeployment): BeemeshDeployment {
    const parsed = parseBeemeshDeployment(input);
    if (!parsed.ok) throw parsed.error;
    return parsed.value;
  }

  /** The dispatcher's part of a generation: its manifest and the record the watchdogs clone from. */
  private async storeDispatch(obj: BeemeshDeployment): Promise<void> {
    const r = renderWorkload(obj, this.render);
    for (const m of r.manifests) await this.manifests.put(m.key, m.bytes);
    const ref = { kind: r.kind, ns: r.ns, name: r.name };
    const stored = await this.records.get(ref);
    await this.records.put(
      {
        ...ref,
        uid: r.uid,
        generation: r.generation,
        template_hash: r.templateHash,
        template_generation: r.generation,
        replicas: r.replicas,
        first: 0,
        next: r.replicas,
        manifests: r.manifests.map((m) => ({ key: m.key, sha256: m.sha256 })),
        task: taskTemplateOf(r),
        ts: Date.now(),
      },
      stored?.revision,
    );
  }

  private async putObject(obj: BeemeshDeployment): Promise<void> {
    await this.objects.put(
      this.objectKey(obj.metadata.name ?? ""),
      new TextEncoder().encode(JSON.stringify(obj)),
    );
  }

  /** A new Deployment: object, manifest, and one Task per replica, as the dispatcher publishes them. */
  async deploy(input: BeemeshDeployment): Promise<void> {
    const obj = await this.storeObject(input);
    const r = renderWorkload(obj, this.render);
    for (let slot = 0; slot < r.replicas; slot++) {
      const task = buildTask(r, slot, { nonce: newNonce(), ts: Date.now() });
      await this.dispatcher.bus.publishDurable(subjects().tasks(0), "Task", task, { msgID: task.task_id });
    }
  }

  async getObject(name: string): Promise<BeemeshDeployment> {
    const e = await this.objects.get(this.objectKey(name));
    if (e === null || e.operation !== "PUT") throw new Error(`no object ${name}`);
    return JSON.parse(new TextDecoder().decode(e.value)) as BeemeshDeployment;
  }

  /** An edit through the API: the spec changes and the generation goes up. */
  async update(name: string, edit: (obj: BeemeshDeployment) => void): Promise<BeemeshDeployment> {
    const obj = await this.getObject(name);
    edit(obj);
    obj.metadata.generation = (obj.metadata.generation ?? 1) + 1;
    return this.storeObject(obj);
  }

  /**
   * An edit as a slow dispatcher shows it to the watchdogs: the object's new
   * generation now, its manifest and dispatch record once `recordWhen` holds (a staged lag, not a timer: the test says which
   * watchdog step the record must come after). `recorded` resolves with the
   * performance.now() of the record's write.
   */
  async updateRecordLater(
    name: string,
    edit: (obj: BeemeshDeployment) => void,
    recordWhen: { until: () => boolean; what: string; timeoutMs?: number },
  ): Promise<{ obj: BeemeshDeployment; recorded: Promise<number> }> {
    const current = await this.getObject(name);
    edit(current);
    current.metadata.generation = (current.metadata.generation ?? 1) + 1;
    const obj = this.asStored(current);
    await this.putObject(obj);
    const recorded = waitFor(recordWhen.until, {
      timeoutMs: recordWhen.timeoutMs ?? 20_000,
      intervalMs: 5,
      what: recordWhen.what,
    })
      .then(() => this.storeDispatch(obj))
      .then(() => performance.now());
    return { obj, recorded };
  }

  async deleteObject(name: string): Promise<void> {
    await this.objects.delete(this.objectKey(name));
  }

  /** The pod disappears under its node agent (podman rm -f of the whole pod). */
  async kill(pod: string): Promise<void> {
    const rec = this.pods.get(pod);
    if (rec === undefined) throw new Error(`no pod ${pod}`);
    const node = this.nodes.find((n) => n.nodeId === rec.node)!;
    // Behind the agent's back: the fake runtime's own remove (its event tells the mesh).
    if (node.fake === undefined) throw new Error("kill() needs the fake runtime");
    await node.fake.remove(pod);
  }

  /** The app container exits; its pod stays until the node agent removes it. */
  crash(pod: string): void {
    const rec = this.pods.get(pod);
    if (rec === undefined) throw new Error(`no pod ${pod}`);
    this.crashedPods.add(pod);
    const fake = this.nodes.find((n) => n.nodeId === rec.node)!.fake;
    if (fake === undefined) throw new Error("crash() needs the fake runtime");
    fake.crash(pod);
  }

  /** The machine dies: its agent stops dead and its pods vanish. */
  async loseNode(nodeId: string): Promise<string[]> {
    const node = this.nodes.find((n) => n.nodeId === nodeId)!;
    node.lost = true;
    node.agent.kill();
    await node.bus.bus.close().catch(() => undefined);
    const pods = (await node.runtime.list()).pods.map((p) => p.podName);
    for (const p of pods) await (node.fake ?? node.runtime).remove(p);
    return pods;
  }

  nodeOf(pod: string): string | undefined {
    return this.pods.get(pod)?.node;
  }

  nodeIds(): string[] {
    return this.nodes.filter((n) => !n.lost).map((n) => n.nodeId);
  }

  /** Watchdogs in different groups stop hearing each other. */
  partition(groups: readonly (readonly string[])[]): void {
    groups.forEach((g, i) => {
      for (const pod of g) {
        const rec = this.pods.get(pod);
        if (rec !== undefined) rec.group = i + 1;
      }
    });
    this.partitioned = true;
  }

  heal(): void {
    this.partitioned = false;
  }

  async stop(): Promise<void> {
    if (this.readyTimer !== undefined) clearInterval(this.readyTimer);
    await Promise.allSettled([...this.starting]);
    await Promise.allSettled([...this.pods.values()].map((p) => this.stopWatchdog(p)));
    for (const n of this.nodes) {
      if (!n.lost) {
        await n.agent.stop().catch(() => undefined);
        await n.bus.bus.close().catch(() => undefined);
      }
    }
    await this.keeper?.stop().catch(() => undefined);
    for (const b of [this.keeperBus, this.admin, this.dispatcher])
      await b?.bus.close().catch(() => undefined);
    await this.nats.stop();
  }

  /** Watchdog log lines of every pod (for failure messages). */
  watchdogLogs(): string[] {
    const out: string[] = [];
    for (const p of this.pods.values())
      for (const l of p.logs?.lines ?? []) out.push(`${p.pod}: ${String(l["msg"])} ${JSON.stringify(l)}`);
    return out;
  }
}
