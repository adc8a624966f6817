// Rendering (DESIGN §3.1): a workload object becomes core/v1 Pod manifests with
// the injected sidecar, stored content-addressed (canonical JSON -> sha256 ->
// `sha256.<hex>` in beemesh-manifests), and Tasks that name them. Pure: the
// clock and the nonce come in through the caller.
import { createHash } from "node:crypto";
import {
  RAFT_CONTAINER_NAME,
  WATCHDOG_CONTAINER_NAME,
  canonicalBytes,
  canonicalJson,
  deterministicTaskId,
  kvKeys,
  parseTask,
  quantityToBytes,
  quantityToMillis,
  type BeemeshDeployment,
  type BeemeshStatefulSet,
  type Container,
  type EnvVar,
  type LabelSelector,
  type PodSpec,
  type PodTemplateSpec,
  type PortRequest,
  type QosClass,
  type Task,
  type TaskRequirements,
  type Toleration,
  type Volume,
  type Workload,
  type WorkloadKind,
} from "../../../protocol/index.js";
import { cloneJson } from "../store/common.js";

export const DEFAULT_SIDECAR_IMAGE = "localhost/beemesh/controllers:latest";
/**
 * The watchdog runs in every pod, so it is built and started for footprint: a
 * bundle (hack/bundle-sidecars.ts) instead of ~400 modules; node without its
 * built-in startup snapshot (deserializing it touches more pages than this
 * small program needs); V8's interpreter only (no JIT tiers: their code and
 * compiler pages); a 1 MB young generation and an old-space cap within the
 * 96Mi limit. Idle RSS ~96 -> ~58 MB, CPU no higher (bench/heal.ts). Not
 * --jitless: that also removes WebAssembly, which node's fetch (undici) needs.
 */
export const WATCHDOG_COMMAND: readonly string[] = [
  "node",
  "--no-node-snapshot",
  "--max-semi-space-size=1",
  "--max-old-space-size=40",
  "--no-opt",
  "--no-maglev",
  "--no-sparkplug",
  "/app/dist/sidecars/watchdog/main.mjs",
];
export const RAFT_COMMAND: readonly string[] = ["node", "/app/dist/controllers/raft-member/main.js"];
export const DEFAULT_DATA_ROOT = "/var/lib/beemesh/data";

/**
 * The Workload API socket volume. It is an emptyDir placeholder: the node agent
 * binds it to the pod's own socket directory when it knows the pod's name, and a
 * node agent that does not leaves the pod without a socket rather than with the
 * socket directory of every pod on the host.
 */
export const WORKLOAD_API_VOLUME = "beemesh-workload-api";
export const WORKLOAD_API_MOUNT = "/run/beemesh/workload-api";
export const WORKLOAD_API_SOCKET = `${WORKLOAD_API_MOUNT}/agent.sock`;
export const DATA_VOLUME = "beemesh-data";

export const MANIFEST_LABELS = {
  parent: "beemesh.io/parent",
  kind: "beemesh.io/kind",
  templateHash: "beemesh.io/template-hash",
  ordinal: "beemesh.io/ordinal",
} as const;

export const MANIFEST_ANNOTATIONS = {
  /** Names the volume the node agent binds to the pod's Workload API socket directory. */
  workloadApiVolume: "beemesh.io/workload-api-volume",
} as const;

/** Watchdog defaults (protocol WatchdogSidecar) when the object omits them. */
const DEFAULT_WATCHDOG_INTERVAL_S = 1;
const DEFAULT_WATCHDOG_TTL_INTERVALS = 3;

export class RenderError extends Error {
  override readonly name = "RenderError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`dispatcher-render: ${message}`, options);
  }
}

export interface SidecarResources {
  cpu: string;
  memory: string;
}

export interface RenderOptions {
  /** NATS URL the sidecars connect to (BEEMESH_NATS_URL in their env). */
  natsUrl: string;
  /** Image when the object names none (spec.watchdogSidecar.image / spec.raftSidecar.image). */
  watchdogImage?: string;
  raftImage?: string;
  /** Host directory under which StatefulSet members keep their data: `<root>/<ns>/<name>-<i>`. */
  dataRoot?: string;
  /** Requests = limits of each sidecar, so a Guaranteed app stays Guaranteed. */
  sidecarResources?: SidecarResources;
  /** Subject prefix, passed to the sidecars when it is not the default. */
  prefix?: string;
  /** Task shards of the mesh, passed to the sidecars (their clones go to a shard of these) when above 1. */
  shards?: number;
}

// 100m, not less: the quota also paces start-up (~0.3 s of CPU: 3 s at 100m,
// 6+ s at 50m), and a new replica counts only once its watchdog heartbeats.
const DEFAULT_SIDECAR_RESOURCES: SidecarResources = { cpu: "100m", memory: "96Mi" };

/** A core/v1 Pod without a name: the node agent names each replica at deploy time. */
export interface PodManifest {
  apiVersion: "v1";
  kind: "Pod";
  metadata: {
    namespace: string;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: PodSpec;
}

export interface RenderedManifest {
  /** StatefulSet member this manifest is for; absent for a Deployment (one manifest for every replica). */
  readonly ordinal?: number;
  readonly manifest: PodManifest;
  /** Canonical JSON bytes: what is stored and what sha256 covers. */
  readonly bytes: Uint8Array;
  readonly sha256: string;
  /** Key in beemesh-manifests. */
  readonly key: string;
}

export interface RenderedWorkload {
  readonly kind: WorkloadKind;
  readonly ns: string;
  readonly name: string;
  readonly uid: string;
  readonly generation: number;
  readonly replicas: number;
  readonly templateHash: string;
  /** creationTimestamp in ms (the time part of the task ids), 0 when unknown. */
  readonly createdMs: number;
  /** A Deployment has one manifest for all replicas; a StatefulSet one per ordinal 0..replicas-1. */
  readonly manifests: readonly RenderedManifest[];
  readonly reqs: TaskRequirements;
  readonly qos: QosClass;
  readonly priority: number;
  readonly affinity?: LabelSelector;
  readonly antiAffinity?: LabelSelector;
  readonly nodeSelector?: Record<string, string>;
  readonly tolerations?: Toleration[];
}

export function workloadKindOf(w: Workload): WorkloadKind {
  return w.kind === "BeemeshStatefulSet" ? "StatefulSet" : "Deployment";
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * What a rollout compares: the user's template and the sidecar settings, not
 * the replica count. 16 hex digits (64 bits) so it also fits a label value.
 * The watchdog computes the same from the object it reads in KV.
 */
export function templateHash(w: Workload): string {
  const sidecar =
    w.kind === "BeemeshStatefulSet" ? (w.spec.raftSidecar ?? {}) : (w.spec.watchdogSidecar ?? {});
  // The parts may be objects of another realm (a caller's structuredClone): hash a copy made here.
  return sha256Hex(canonicalJson(cloneJson({ template: w.spec.template, sidecar }))).slice(0, 16);
}

function env(name: string, value: string | number): EnvVar {
  return { name, value: String(value) };
}

function sidecarResources(opts: RenderOptions): Container["resources"] {
  const r = opts.sidecarResources ?? DEFAULT_SIDECAR_RESOURCES;
  return { requests: { cpu: r.cpu, memory: r.memory }, limits: { cpu: r.cpu, memory: r.memory } };
}

function commonEnv(w: Workload, hash: string, opts: RenderOptions): EnvVar[] {
  const out = [
    env("BEEMESH_NAMESPACE", w.metadata.namespace ?? "default"),
    env("BEEMESH_PARENT", w.metadata.name ?? ""),
    env("BEEMESH_PARENT_UID", w.metadata.uid ?? ""),
    env("BEEMESH_GENERATION", w.metadata.generation ?? 1),
    env("BEEMESH_TEMPLATE_HASH", hash),
    env("BEEMESH_NATS_URL", opts.natsUrl),
    env("BEEMESH_WORKLOAD_API_SOCKET", WORKLOAD_API_SOCKET),
  ];
  if (opts.prefix !== undefined && opts.prefix !== "beemesh") out.push(env("BEEMESH_PREFIX", opts.prefix));
  if (opts.shards !== undefined && opts.shards > 1) out.push(env("BEEMESH_SHARDS", opts.shards));
  return out;
}

const workloadApiVolume: Volume = { name: WORKLOAD_API_VOLUME, emptyDir: {} };
const workloadApiMount = { name: WORKLOAD_API_VOLUME, mountPath: WORKLOAD_API_MOUNT };

function watchdogContainer(w: BeemeshDeployment, hash: string, opts: RenderOptions): Container {
  const sc = w.spec.watchdogSidecar ?? {};
  const intervalMs = (sc.intervalSeconds ?? DEFAULT_WATCHDOG_INTERVAL_S) * 1000;
  return {
    name: WATCHDOG_CONTAINER_NAME,
    image: sc.image ?? opts.watchdogImage ?? DEFAULT_SIDECAR_IMAGE,
    // Local images only (DESIGN §8): never pull.
    imagePullPolicy: "IfNotPresent",
    command: [...WATCHDOG_COMMAND],
    env: [
      ...commonEnv(w, hash, opts),
      env("BEEMESH_WATCHDOG_INTERVAL_MS", intervalMs),
      env("BEEMESH_WATCHDOG_TTL_INTERVALS", sc.ttlIntervals ?? DEFAULT_WATCHDOG_TTL_INTERVALS),
    ],
    resources: sidecarResources(opts),
    volumeMounts: [workloadApiMount],
  };
}

function raftContainer(w: BeemeshStatefulSet, hash: string, ordinal: number, opts: RenderOptions): Container {
  const sc = w.spec.raftSidecar ?? {};
  const name = w.metadata.name ?? "";
  const replicas = w.spec.replicas ?? 1;
  const dataDir = sc.dataDir ?? "/var/lib/beemesh/raft";
  const peers = Array.from({ length: replicas }, (_, i) => `${name}-${i}`).join(",");
  return {
    name: RAFT_CONTAINER_NAME,
    image: sc.image ?? opts.raftImage ?? DEFAULT_SIDECAR_IMAGE,
    imagePullPolicy: "IfNotPresent",
    command: [...RAFT_COMMAND],
    env: [
      ...commonEnv(w, hash, opts),
      env("BEEMESH_ORDINAL", ordinal),
      env("BEEMESH_PEERS", peers),
      env("BEEMESH_RAFT_PORT", sc.port ?? 7000),
      env("BEEMESH_RAFT_DATA_DIR", dataDir),
      env("BEEMESH_RAFT_ELECTION_TIMEOUT_MS", sc.electionTimeoutMs ?? 1000),
      env("BEEMESH_RAFT_HEARTBEAT_INTERVAL_MS", sc.heartbeatIntervalMs ?? 100),
      env("BEEMESH_RAFT_SNAPSHOT_THRESHOLD", sc.snapshotThreshold ?? 10000),
      env("BEEMESH_RAFT_CLONE_AFTER_MS", sc.cloneAfterMs ?? 5000),
    ],
    resources: sidecarResources(opts),
    volumeMounts: [workloadApiMount, { name: DATA_VOLUME, mountPath: dataDir }],
  };
}

/** The pod template with the server-only metadata removed (the node agent names the pod). */
function baseManifest(template: PodTemplateSpec, ns: string, labels: Record<string, string>): PodManifest {
  // Copied in this realm, not with structuredClone: canonical JSON refuses objects of another
  // realm (Jest's VM modules give structuredClone's results the host realm's prototypes).
  const spec = cloneJson(template.spec);
  const annotations = template.metadata?.annotations;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      namespace: ns,
      labels: { ...(template.metadata?.labels ?? {}), ...labels },
      annotations: { ...(annotations ?? {}), [MANIFEST_ANNOTATIONS.workloadApiVolume]: WORKLOAD_API_VOLUME },
    },
    spec,
  };
}

function finish(manifest: PodManifest, ordinal?: number): RenderedManifest {
  const bytes = canonicalBytes(manifest);
  const sha256 = sha256Hex(bytes);
  return {
    ...(ordinal !== undefined ? { ordinal } : {}),
    manifest,
    bytes,
    sha256,
    key: kvKeys.manifest(sha256),
  };
}

function renderDeploymentManifest(w: BeemeshDeployment, hash: string, opts: RenderOptions): RenderedManifest {
  const ns = w.metadata.namespace ?? "default";
  const m = baseManifest(w.spec.template, ns, {
    [MANIFEST_LABELS.parent]: w.metadata.name ?? "",
    [MANIFEST_LABELS.kind]: "Deployment",
    [MANIFEST_LABELS.templateHash]: hash,
  });
  m.spec.containers = [...m.spec.containers, watchdogContainer(w, hash, opts)];
  m.spec.volumes = [...(m.spec.volumes ?? []), workloadApiVolume];
  return finish(m);
}

/** `<root>/<ns>/<name>-<i>`: the member's data survives its pod on that host. */
export function memberDataPath(root: string, ns: string, name: string, ordinal: number): string {
  return `${root.replace(/\/+$/, "")}/${ns}/${name}-${ordinal}`;
}

function renderMemberManifest(
  w: BeemeshStatefulSet,
  hash: string,
  ordinal: number,
  opts: RenderOptions,
): RenderedManifest {
  const ns = w.metadata.namespace ?? "default";
  const name = w.metadata.name ?? "";
  const m = baseManifest(w.spec.template, ns, {
    [MANIFEST_LABELS.parent]: name,
    [MANIFEST_LABELS.kind]: "StatefulSet",
    [MANIFEST_LABELS.templateHash]: hash,
    [MANIFEST_LABELS.ordinal]: String(ordinal),
  });
  m.spec.hostname = `${name}-${ordinal}`;
  m.spec.subdomain = w.spec.serviceName;
  m.spec.containers = [...m.spec.containers, raftContainer(w, hash, ordinal, opts)];
  m.spec.volumes = [
    ...(m.spec.volumes ?? []),
    workloadApiVolume,
    {
      name: DATA_VOLUME,
      hostPath: {
        path: memberDataPath(opts.dataRoot ?? DEFAULT_DATA_ROOT, ns, name, ordinal),
        type: "DirectoryOrCreate",
      },
    },
  ];
  return finish(m, ordinal);
}

// ------------------------------------------------------------ requirements ---

type Quantities = Record<string, string | number> | undefined;

function cpuOf(q: Quantities): number | undefined {
  const v = q?.["cpu"];
  return v === undefined ? undefined : quantityToMillis(v);
}

function memOf(q: Quantities): number | undefined {
  const v = q?.["memory"];
  return v === undefined ? undefined : quantityToBytes(v);
}

/** What a container asks for: its requests, else its limits (Kubernetes defaults requests to limits). */
function containerAsk(c: Container): { cpu: number; mem: number } {
  const r = c.resources;
  return {
    cpu: cpuOf(r?.requests) ?? cpuOf(r?.limits) ?? 0,
    mem: memOf(r?.requests) ?? memOf(r?.limits) ?? 0,
  };
}

/** Requirements of a pod: the sum of its containers, or the largest init container when more. */
export function podRequirements(spec: PodSpec, extraPorts: readonly PortRequest[] = []): TaskRequirements {
  let cpu = 0;
  let mem = 0;
  for (const c of spec.containers) {
    const a = containerAsk(c);
    cpu += a.cpu;
    mem += a.mem;
  }
  for (const c of spec.initContainers ?? []) {
    const a = containerAsk(c);
    cpu = Math.max(cpu, a.cpu);
    mem = Math.max(mem, a.mem);
  }
  const ports = new Map<string, PortRequest>();
  const add = (p: PortRequest) => ports.set(`${p.protocol}/${p.port}`, p);
  for (const c of spec.containers) {
    for (const p of c.ports ?? []) {
      // With the host network every container port is a host port.
      const port = p.hostPort ?? (spec.hostNetwork ? p.containerPort : undefined);
      if (port !== undefined) add({ port, protocol: p.protocol ?? "TCP" });
    }
  }
  for (const p of extraPorts) add(p);
  const sorted = [...ports.values()].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
  return { cpu_millis: cpu, memory_bytes: mem, ports: sorted };
}

/** Kubernetes' QoS class over every container that will run (sidecars included). */
export function qosClass(spec: PodSpec): QosClass {
  const all = [...spec.containers, ...(spec.initContainers ?? [])];
  const has = (c: Container) =>
    ["cpu", "memory"].some(
      (k) => c.resources?.requests?.[k] !== undefined || c.resources?.limits?.[k] !== undefined,
    );
  if (!all.some(has)) return "BestEffort";
  const guaranteed = all.every((c) =>
    (["cpu", "memory"] as const).every((k) => {
      const limit = c.resources?.limits?.[k];
      if (limit === undefined) return false;
      const request = c.resources?.requests?.[k] ?? limit;
      const conv = k === "cpu" ? quantityToMillis : quantityToBytes;
      return conv(request) === conv(limit);
    }),
  );
  return guaranteed ? "Guaranteed" : "Burstable";
}

/** The first required pod (anti-)affinity term's selector: what the bidders can check. */
function requiredSelector(
  terms: readonly { labelSelector?: LabelSelector }[] | undefined,
): LabelSelector | undefined {
  return terms?.find((t) => t.labelSelector !== undefined)?.labelSelector;
}

// -------------------------------------------------------------- the render ---

function creationMs(w: Workload): number {
  const t = w.metadata.creationTimestamp;
  const ms = t === undefined ? NaN : Date.parse(t);
  return Number.isFinite(ms) && ms >= 0 ? ms : 0;
}

/**
 * Everything the fan-out needs to publish a workload's current generation.
 * Throws RenderError for an object that cannot become a pod (missing identity).
 */
export function renderWorkload(w: Workload, opts: RenderOptions): RenderedWorkload {
  const ns = w.metadata.namespace;
  const name = w.metadata.name;
  const uid = w.metadata.uid;
  if (!ns || !name || !uid) throw new RenderError("the object needs metadata.namespace, name and uid");
  const generation = w.metadata.generation ?? 1;
  const replicas = w.spec.replicas ?? 1;
  const hash = templateHash(w);
  let manifests: RenderedManifest[];
  let sample: PodSpec;
  const extraPorts: PortRequest[] = [];
  if (w.kind === "BeemeshStatefulSet") {
    manifests = Array.from({ length: replicas }, (_, i) => renderMemberManifest(w, hash, i, opts));
    sample = manifests[0]?.manifest.spec ?? renderMemberManifest(w, hash, 0, opts).manifest.spec;
    // The sidecar serves the app on localhost; with the host network that port is the host's.
    if (w.spec.template.spec.hostNetwork)
      extraPorts.push({ port: w.spec.raftSidecar?.port ?? 7000, protocol: "TCP" });
  } else {
    manifests = [renderDeploymentManifest(w, hash, opts)];
    sample = manifests[0]!.manifest.spec;
  }
  const tpl = w.spec.template.spec;
  const affinity = requiredSelector(
    tpl.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution,
  );
  const antiAffinity = requiredSelector(
    tpl.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution,
  );
  return {
    kind: workloadKindOf(w),
    ns,
    name,
    uid,
    generation,
    replicas,
    templateHash: hash,
    createdMs: creationMs(w),
    manifests,
    reqs: podRequirements(sample, extraPorts),
    qos: qosClass(sample),
    priority: w.spec.priority ?? tpl.priority ?? 0,
    ...(affinity ? { affinity } : {}),
    ...(antiAffinity ? { antiAffinity } : {}),
    ...(tpl.nodeSelector && Object.keys(tpl.nodeSelector).length > 0
      ? { nodeSelector: tpl.nodeSelector }
      : {}),
    ...(tpl.tolerations && tpl.tolerations.length > 0 ? { tolerations: tpl.tolerations } : {}),
  };
}

/** The manifest a slot runs: the Deployment's one, or the StatefulSet member's. */
export function manifestForSlot(r: RenderedWorkload, slot: number): RenderedManifest {
  const m = r.kind === "StatefulSet" ? r.manifests[slot] : r.manifests[0];
  if (!m) throw new RenderError(`${r.ns}/${r.name} has no manifest for slot ${slot}`);
  return m;
}

/** The Task id of a slot: the same in every dispatcher, so JetStream's dedup drops a re-dispatch. */
export function taskIdFor(
  r: Pick<RenderedWorkload, "uid" | "generation" | "createdMs">,
  slot: number,
): string {
  return deterministicTaskId({ uid: r.uid, generation: r.generation, slot, timeMs: r.createdMs });
}

/** What every Task of a generation carries besides its ids and manifest (placement and hints). */
export type TaskTemplate = Pick<
  Task,
  "reqs" | "priority" | "qos" | "affinity" | "anti_affinity" | "node_selector" | "tolerations" | "hints"
>;

/**
 * The placement part of this generation's Tasks. The dispatch record keeps it
 * beside the manifest refs, so a watchdog's clone asks for exactly what the
 * dispatcher's Tasks asked for without rendering anything itself.
 */
export function taskTemplateOf(r: RenderedWorkload): TaskTemplate {
  return {
    reqs: r.reqs,
    priority: r.priority,
    qos: r.qos,
    ...(r.affinity ? { affinity: r.affinity } : {}),
    ...(r.antiAffinity ? { anti_affinity: r.antiAffinity } : {}),
    ...(r.nodeSelector ? { node_selector: r.nodeSelector } : {}),
    ...(r.tolerations ? { tolerations: r.tolerations } : {}),
    hints: { template_hash: r.templateHash },
  };
}

/** The Task for one slot (a Deployment replica index or a StatefulSet ordinal), checked by its schema. */
export function buildTask(r: RenderedWorkload, slot: number, ctx: { nonce: string; ts: number }): Task {
  const m = manifestForSlot(r, slot);
  const task: Task = {
    task_id: taskIdFor(r, slot),
    kind: r.kind,
    ns: r.ns,
    parent: r.name,
    parent_uid: r.uid,
    generation: r.generation,
    ...(r.kind === "StatefulSet" ? { ordinal: slot } : {}),
    manifest_ref: { key: m.key, sha256: m.sha256 },
    ...taskTemplateOf(r),
    attempt: 0,
    origin: "dispatcher",
    nonce: ctx.nonce,
    ts: ctx.ts,
  };
  const parsed = parseTask(task);
  if (!parsed.ok)
    throw new RenderError(`task for ${r.ns}/${r.name} slot ${slot} is invalid`, { cause: parsed.error });
  return parsed.value;
}
