// Workload identity for the pods a node agent runs (DESIGN §5): each pod gets
// its own SPIFFE Workload API socket, `<socketDir>/<pod>/agent.sock`, served by
// a WorkloadApiServer with the pod's SPIFFE ID
// `spiffe://<td>/ns/<ns>/<deployment|statefulset>/<parent>/<pod>`. Only that
// directory is mounted into the pod (a hostPath volume replacing the
// dispatcher's emptyDir placeholder), so the socket a caller reached is what
// identifies it. The node agent also adds the pod-local facts the sidecar
// needs and the dispatcher cannot know: its pod name, node and task.
//
// Issuance is injected (IssueSvidFn). On a single host the node agent loads
// the mesh's CA from a directory (BEEMESH_CA_DIR) and signs locally. On many
// hosts the CA key must not be copied to every node: the issuer would send the
// public key and SPIFFE ID to a CA service over NATS, which signs only for a
// node that holds the pod's lease (beemesh-leases / beemesh-providers). Either
// way the private key is generated here and never leaves the node.
//
// Shared hosts: several node agents on one machine (`make up`, the e2e) share
// its network, so hostNetwork replicas would collide on their ports. With a
// loopback range per node agent (podAddressRange, e.g. 127.42.1.0/24) each
// pod gets an address of its own, given to every container as BEEMESH_POD_IP
// (the app binds it) and to the sidecar as its probe host. A real node has
// one address and no range.
//
// The node agent uses all of this through one Runtime decorator,
// withWorkloadIdentity(runtime, identities): deploy attaches and rewrites the
// manifest, remove detaches, list re-attaches adopted pods after a restart.
import { createHash } from "node:crypto";
import { chmod, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { issueSvid, loadCa, type CertificateAuthority, type Svid } from "../../identity/ca.js";
import type { CryptoKey } from "../../identity/crypto.js";
import type { IdentityLog } from "../../identity/log.js";
import { principalOf, spiffeId, type SpiffeId } from "../../identity/spiffe-id.js";
import { WorkloadApiServer, type IssueSvidFn } from "../../identity/workload-api/server.js";
import { RAFT_CONTAINER_NAME, WATCHDOG_CONTAINER_NAME } from "../../protocol/index.js";
import {
  MANIFEST_ANNOTATIONS,
  WORKLOAD_API_MOUNT,
  WORKLOAD_API_VOLUME,
} from "../dispatcher/fanout/render.js";
import {
  PodExistsError,
  type ContainerSpec,
  type DeploySpec,
  type LogOptions,
  type NodeCapacity,
  type PodIdentity,
  type PodListing,
  type PodLogs,
  type PodManifest,
  type PodStatus,
  type Runtime,
  type WorkloadKind,
} from "./runtime/types.js";

export const SOCKET_FILE = "agent.sock";
export const DEFAULT_SOCKET_DIR = "/run/beemesh/workload-api";
/** Unix socket paths are limited to 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export const POD_ENV = {
  socket: "BEEMESH_WORKLOAD_API_SOCKET",
  podName: "BEEMESH_POD_NAME",
  nodeId: "BEEMESH_NODE_ID",
  taskId: "BEEMESH_TASK_ID",
  podIp: "BEEMESH_POD_IP",
  probeHost: "BEEMESH_WATCHDOG_PROBE_HOST",
} as const;

export class WorkloadIdentityError extends Error {
  override name = "WorkloadIdentityError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`node-agent: workload identity: ${message}`, options);
  }
}

// ------------------------------------------------------------- pure parts ---

const KIND_SEGMENT: Record<WorkloadKind, string> = { Deployment: "deployment", StatefulSet: "statefulset" };

/** The pod's SPIFFE ID: /ns/<ns>/<deployment|statefulset>/<parent>/<pod>. */
export function workloadSpiffeId(
  trustDomain: string,
  identity: Pick<PodIdentity, "kind" | "ns" | "parent">,
  podName: string,
): SpiffeId {
  return spiffeId(trustDomain, "ns", identity.ns, KIND_SEGMENT[identity.kind], identity.parent, podName);
}

/** The NATS role a workload SVID carries in its Subject DN (identity/nats-config.ts users). */
export function workloadRole(id: SpiffeId): "watchdog" | "raft-member" {
  const p = principalOf(id);
  if (p.kind !== "workload") throw new WorkloadIdentityError(`${id.toString()} is not a workload SPIFFE ID`);
  if (p.workloadKind === "deployment") return "watchdog";
  if (p.workloadKind === "statefulset") return "raft-member";
  throw new WorkloadIdentityError(`${id.toString()} names no Beemesh workload kind`);
}

/**
 * The pod's directory under socketDir: its name, or a hash of it when the
 * socket path would not fit a sockaddr_un (deterministic, so a restarted
 * agent finds the same directory).
 */
export function podSocketDir(socketDir: string, podName: string): string {
  const byName = path.join(socketDir, podName);
  if (Buffer.byteLength(path.join(byName, SOCKET_FILE)) <= MAX_SOCKET_PATH_BYTES) return byName;
  const hashed = path.join(socketDir, `h-${createHash("sha256").update(podName).digest("hex").slice(0, 16)}`);
  if (Buffer.byteLength(path.join(hashed, SOCKET_FILE)) > MAX_SOCKET_PATH_BYTES) {
    throw new WorkloadIdentityError(`socket directory ${socketDir} is too long for a unix socket path`);
  }
  return hashed;
}

/** A loopback range: addresses [first, last] as 32-bit integers. */
export interface AddressRange {
  readonly cidr: string;
  readonly first: number;
  readonly last: number;
}

function ipToInt(ip: string): number | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Parses a loopback CIDR of /16../30 (host addresses only: no network or broadcast address). */
export function parseAddressRange(cidr: string): AddressRange {
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(cidr.trim());
  const base = m?.[1] !== undefined ? ipToInt(m[1]) : undefined;
  const bits = m?.[2] !== undefined ? Number(m[2]) : NaN;
  if (base === undefined || !(bits >= 16 && bits <= 30)) {
    throw new WorkloadIdentityError(
      `pod address range ${JSON.stringify(cidr)} is not an IPv4 CIDR of /16 to /30`,
    );
  }
  const size = 2 ** (32 - bits);
  const network = base - (base % size);
  if (network >>> 24 !== 127) {
    throw new WorkloadIdentityError(
      `pod address range ${cidr} is not loopback (127.0.0.0/8): only a shared host needs one`,
    );
  }
  return { cidr: `${intToIp(network)}/${bits}`, first: network + 1, last: network + size - 2 };
}

/**
 * The pod's address: a hash of node and pod names picks the start, the next
 * free address wins, so the same pod gets the same address after a restart
 * unless another pod took it meanwhile.
 */
export function pickPodAddress(
  range: AddressRange,
  nodeId: string,
  podName: string,
  inUse: ReadonlySet<string>,
): string {
  const size = range.last - range.first + 1;
  const start = createHash("sha256").update(`${nodeId}/${podName}`).digest().readUInt32BE(0) % size;
  for (let i = 0; i < size; i++) {
    const ip = intToIp(range.first + ((start + i) % size));
    if (!inUse.has(ip)) return ip;
  }
  throw new WorkloadIdentityError(`pod address range ${range.cidr} is full (${size} pods)`);
}

/** What the node agent adds to one pod. */
export interface PodAttachment {
  readonly podName: string;
  readonly spiffeId: string;
  /** Host directory mounted into the pod; holds agent.sock. */
  readonly hostDir: string;
  readonly socketPath: string;
  readonly nodeId: string;
  readonly taskId: string;
  /** Shared hosts only: the pod's own loopback address. */
  readonly podIp?: string;
}

export interface EnvVar {
  name: string;
  value: string;
}

/** The hostPath volume, sidecar mount and env of an attachment (for runtimes that build pods themselves). */
export function attachmentParts(
  att: PodAttachment,
  volumeName = WORKLOAD_API_VOLUME,
  mountPath = WORKLOAD_API_MOUNT,
): {
  volume: { name: string; hostPath: { path: string; type: string } };
  volumeMount: { name: string; mountPath: string; readOnly: boolean };
  sidecarEnv: EnvVar[];
  podEnv: EnvVar[];
} {
  const podEnv: EnvVar[] = att.podIp !== undefined ? [{ name: POD_ENV.podIp, value: att.podIp }] : [];
  return {
    volume: { name: volumeName, hostPath: { path: att.hostDir, type: "Directory" } },
    volumeMount: { name: volumeName, mountPath, readOnly: true },
    sidecarEnv: [
      { name: POD_ENV.socket, value: path.posix.join(mountPath, SOCKET_FILE) },
      { name: POD_ENV.podName, value: att.podName },
      { name: POD_ENV.nodeId, value: att.nodeId },
      { name: POD_ENV.taskId, value: att.taskId },
      ...(att.podIp !== undefined ? [{ name: POD_ENV.probeHost, value: att.podIp }] : []),
    ],
    podEnv,
  };
}

const SIDECAR_NAMES = new Set<string>([WATCHDOG_CONTAINER_NAME, RAFT_CONTAINER_NAME]);

/** The volume the dispatcher left for the socket (its annotation names it). */
export function workloadApiVolumeOf(manifest: PodManifest): string {
  return manifest.metadata.annotations?.[MANIFEST_ANNOTATIONS.workloadApiVolume] ?? WORKLOAD_API_VOLUME;
}

/** Containers that get the socket: those mounting the volume, else the Beemesh sidecars. */
export function sidecarsOf(manifest: PodManifest): ContainerSpec[] {
  const volume = workloadApiVolumeOf(manifest);
  const mounting = manifest.spec.containers.filter((c) => c.volumeMounts?.some((m) => m.name === volume));
  return mounting.length > 0 ? mounting : manifest.spec.containers.filter((c) => SIDECAR_NAMES.has(c.name));
}

function setEnv(c: ContainerSpec, vars: readonly EnvVar[]): void {
  const names = new Set(vars.map((v) => v.name));
  c.env = [...(c.env ?? []).filter((e) => !names.has(e.name)), ...vars];
}

/**
 * The manifest with the attachment applied; the input is not modified. The
 * socket volume becomes a hostPath to the pod's own directory, the sidecars
 * mount it (read-only) and get the socket path and pod facts, and with a pod
 * address every container gets BEEMESH_POD_IP.
 */
export function injectAttachment(manifest: PodManifest, att: PodAttachment): PodManifest {
  // A JSON round trip: manifests are JSON data, and the copy is ours to change.
  const out = JSON.parse(JSON.stringify(manifest)) as PodManifest;
  const volumeName = workloadApiVolumeOf(out);
  const sidecarNames = new Set(sidecarsOf(out).map((c) => c.name));
  if (sidecarNames.size === 0) {
    throw new WorkloadIdentityError(`pod ${att.podName} has no Beemesh sidecar to give the Workload API to`);
  }
  const volumes = (out.spec.volumes ?? []).filter((v) => v.name !== volumeName);
  for (const c of out.spec.containers) {
    if (!sidecarNames.has(c.name)) continue;
    const existing = c.volumeMounts?.find((m) => m.name === volumeName);
    const parts = attachmentParts(att, volumeName, existing?.mountPath ?? WORKLOAD_API_MOUNT);
    if (existing === undefined) c.volumeMounts = [...(c.volumeMounts ?? []), parts.volumeMount];
    setEnv(c, parts.sidecarEnv);
  }
  const parts = attachmentParts(att, volumeName);
  out.spec.volumes = [...volumes, parts.volume];
  if (parts.podEnv.length > 0) {
    for (const c of [...out.spec.containers, ...(out.spec.initContainers ?? [])]) setEnv(c, parts.podEnv);
  }
  return out;
}

// ---------------------------------------------------------------- issuers ---

/**
 * Signs workload SVIDs with a CA held in this process (a single host, or
 * tests). The role follows from the ID's kind; nothing but workload IDs of
 * the CA's trust domain is signed.
 */
export function localCaIssuer(
  ca: CertificateAuthority,
  opts: { ttlMs?: number; now?: () => Date } = {},
): IssueSvidFn {
  return (id: SpiffeId, publicKey?: CryptoKey): Promise<Svid> => {
    if (publicKey === undefined)
      throw new WorkloadIdentityError("the Workload API server must pass the public key to sign");
    return issueSvid(ca, {
      id,
      role: workloadRole(id),
      publicKey,
      ...(opts.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}),
      ...(opts.now !== undefined ? { now: opts.now() } : {}),
    });
  };
}

// ------------------------------------------------------------- the server ---

export interface WorkloadIdentitiesOptions {
  nodeId: string;
  trustDomain: string;
  /** Parent of the per-pod directories; made 0700 so only root reaches the sockets from the host. */
  socketDir?: string;
  issue: IssueSvidFn;
  /** Shared hosts only: a loopback CIDR this node agent hands out pod addresses from. */
  podAddressRange?: string;
  log?: IdentityLog;
}

interface Attached {
  att: PodAttachment;
}

/** The node agent's per-pod Workload API sockets and pod addresses. */
export class WorkloadIdentities {
  readonly nodeId: string;
  readonly trustDomain: string;
  readonly socketDir: string;
  readonly addressRange: AddressRange | undefined;
  readonly log: IdentityLog;
  private readonly server: WorkloadApiServer;
  private readonly pods = new Map<string, Attached>();
  /** One attach/detach per pod at a time. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private rootReady: Promise<void> | undefined;

  constructor(opts: WorkloadIdentitiesOptions) {
    this.nodeId = opts.nodeId;
    this.trustDomain = opts.trustDomain;
    this.socketDir = path.resolve(opts.socketDir ?? DEFAULT_SOCKET_DIR);
    this.addressRange =
      opts.podAddressRange !== undefined ? parseAddressRange(opts.podAddressRange) : undefined;
    this.log = opts.log ?? { info: () => undefined, warn: () => undefined };
    this.server = new WorkloadApiServer({ issue: opts.issue, log: this.log });
    spiffeId(this.trustDomain); // validates the trust domain now, not at the first pod
  }

  /** Pods with a socket, by pod name. */
  attached(): PodAttachment[] {
    return [...this.pods.values()].map((a) => a.att);
  }

  get(podName: string): PodAttachment | undefined {
    return this.pods.get(podName)?.att;
  }

  /**
   * Serves the pod's identity on its own socket (idempotent for the same
   * identity; a different one replaces it) and returns what to add to its pod.
   */
  attach(podName: string, identity: PodIdentity): Promise<PodAttachment> {
    return this.serialized(podName, async () => {
      const id = workloadSpiffeId(this.trustDomain, identity, podName);
      const current = this.pods.get(podName);
      if (current !== undefined) {
        if (current.att.spiffeId === id.toString()) return current.att;
        await this.release(podName);
      }
      await this.ensureRoot();
      const hostDir = podSocketDir(this.socketDir, podName);
      const socketPath = path.join(hostDir, SOCKET_FILE);
      const podIp =
        this.addressRange !== undefined
          ? pickPodAddress(this.addressRange, this.nodeId, podName, this.addressesInUse())
          : undefined;
      const att: PodAttachment = {
        podName,
        spiffeId: id.toString(),
        hostDir,
        socketPath,
        nodeId: this.nodeId,
        taskId: identity.taskId,
        ...(podIp !== undefined ? { podIp } : {}),
      };
      await this.server.addPod(podName, id, socketPath);
      // The pod's container user is not root (the controllers image runs as 65532):
      // the socket is reachable through this pod's mount only, the parent stays 0700.
      await chmod(hostDir, 0o755);
      await chmod(socketPath, 0o666);
      this.pods.set(podName, { att });
      this.log.info("workload api: pod attached", {
        pod: podName,
        spiffe_id: att.spiffeId,
        ...(podIp ? { pod_ip: podIp } : {}),
      });
      return att;
    });
  }

  /** Withdraws the pod's identity and removes its directory. */
  detach(podName: string): Promise<void> {
    return this.serialized(podName, () => this.release(podName));
  }

  /** Closes every socket (the agent stops; a restarted agent re-attaches its pods on list()). */
  async close(): Promise<void> {
    await this.server.close();
    this.pods.clear();
  }

  private async release(podName: string): Promise<void> {
    const current = this.pods.get(podName);
    this.pods.delete(podName);
    await this.server.removePod(podName);
    if (current !== undefined) {
      await rm(current.att.hostDir, { recursive: true, force: true });
      this.log.info("workload api: pod detached", { pod: podName });
    }
  }

  private addressesInUse(): Set<string> {
    const used = new Set<string>();
    for (const a of this.pods.values()) if (a.att.podIp !== undefined) used.add(a.att.podIp);
    return used;
  }

  private ensureRoot(): Promise<void> {
    this.rootReady ??= (async () => {
      await mkdir(this.socketDir, { recursive: true, mode: 0o700 });
      await chmod(this.socketDir, 0o700);
    })().catch((err: unknown) => {
      this.rootReady = undefined;
      throw new WorkloadIdentityError(`cannot prepare ${this.socketDir}`, { cause: err });
    });
    return this.rootReady;
  }

  private serialized<T>(podName: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(podName) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(podName, settled);
    void settled.then(() => {
      if (this.locks.get(podName) === settled) this.locks.delete(podName);
    });
    return run;
  }
}

// ------------------------------------------------------- runtime decorator ---

/**
 * A Runtime whose pods get their workload identity: deploy attaches the
 * socket and rewrites the manifest before the inner runtime runs it, remove
 * detaches after, list re-attaches every listed pod (a restarted agent adopts
 * its pods through list()).
 */
export class WorkloadIdentityRuntime implements Runtime {
  readonly kind: Runtime["kind"];

  constructor(
    readonly inner: Runtime,
    readonly identities: WorkloadIdentities,
  ) {
    this.kind = inner.kind;
  }

  async deploy(spec: DeploySpec): Promise<void> {
    // A pod without a sidecar needs no identity (and gets no pod facts).
    if (sidecarsOf(spec.manifest).length === 0) return this.inner.deploy(spec);
    const att = await this.identities.attach(spec.podName, spec.identity);
    try {
      await this.inner.deploy({ ...spec, manifest: injectAttachment(spec.manifest, att) });
    } catch (err) {
      // A pod of that name still runs (a repeated award): it keeps its socket.
      if (!(err instanceof PodExistsError)) await this.identities.detach(spec.podName).catch(() => undefined);
      throw err;
    }
  }

  status(podName: string): Promise<PodStatus> {
    return this.inner.status(podName);
  }

  logs(podName: string, options?: LogOptions): Promise<PodLogs> {
    return this.inner.logs(podName, options);
  }

  async remove(podName: string): Promise<boolean> {
    const removed = await this.inner.remove(podName);
    await this.identities.detach(podName);
    return removed;
  }

  async list(): Promise<PodListing> {
    const listing = await this.inner.list();
    for (const pod of listing.pods) {
      if (this.identities.get(pod.podName) !== undefined) continue;
      // The pod keeps the SVID it has until it expires; the next list() tries again.
      await this.identities.attach(pod.podName, pod.identity).catch((err: unknown) => {
        this.identities.log.warn("workload api: cannot re-attach an adopted pod", {
          pod: pod.podName,
          err: err instanceof Error ? err.message : String(err),
        });
      });
    }
    return listing;
  }

  capacity(): Promise<NodeCapacity> {
    return this.inner.capacity();
  }
}

export function withWorkloadIdentity(
  inner: Runtime,
  identities: WorkloadIdentities,
): WorkloadIdentityRuntime {
  return new WorkloadIdentityRuntime(inner, identities);
}

// ------------------------------------------------------------ from the env ---

export interface WorkloadIdentityConfig {
  caDir: string;
  trustDomain: string | undefined;
  socketDir: string;
  podAddressRange: string | undefined;
  svidTtlMs: number | undefined;
}

/**
 * The node agent's settings: BEEMESH_CA_DIR (enables it; a single host's
 * CA), BEEMESH_WORKLOAD_API_DIR (default /run/beemesh/workload-api),
 * BEEMESH_POD_ADDRESS_RANGE (shared hosts), BEEMESH_WORKLOAD_SVID_TTL_S,
 * BEEMESH_TRUST_DOMAIN (default: the CA's). Undefined without a CA dir.
 */
export function workloadIdentityConfigFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): WorkloadIdentityConfig | undefined {
  const caDir = env["BEEMESH_CA_DIR"]?.trim();
  if (!caDir) return undefined;
  const ttl = env["BEEMESH_WORKLOAD_SVID_TTL_S"]?.trim();
  if (ttl && !/^[1-9][0-9]*$/.test(ttl))
    throw new WorkloadIdentityError(
      `BEEMESH_WORKLOAD_SVID_TTL_S must be a positive integer, got ${JSON.stringify(ttl)}`,
    );
  const range = env["BEEMESH_POD_ADDRESS_RANGE"]?.trim() || undefined;
  if (range !== undefined) parseAddressRange(range);
  return {
    caDir,
    trustDomain: env["BEEMESH_TRUST_DOMAIN"]?.trim() || undefined,
    socketDir: env["BEEMESH_WORKLOAD_API_DIR"]?.trim() || DEFAULT_SOCKET_DIR,
    podAddressRange: range,
    svidTtlMs: ttl ? Number(ttl) * 1000 : undefined,
  };
}

/** Loads the CA and builds the identities of one node agent (single-host issuance). */
export async function startWorkloadIdentities(
  cfg: WorkloadIdentityConfig,
  opts: { nodeId: string; log?: IdentityLog },
): Promise<WorkloadIdentities> {
  let ca: CertificateAuthority;
  try {
    ca = await loadCa(cfg.caDir);
  } catch (err) {
    throw new WorkloadIdentityError(`cannot load the CA from ${cfg.caDir}`, { cause: err });
  }
  if (cfg.trustDomain !== undefined && cfg.trustDomain !== ca.trustDomain) {
    throw new WorkloadIdentityError(
      `the CA in ${cfg.caDir} is for ${ca.trustDomain}, not ${cfg.trustDomain}`,
    );
  }
  return new WorkloadIdentities({
    nodeId: opts.nodeId,
    trustDomain: ca.trustDomain,
    socketDir: cfg.socketDir,
    issue: localCaIssuer(ca, cfg.svidTtlMs !== undefined ? { ttlMs: cfg.svidTtlMs } : {}),
    ...(cfg.podAddressRange !== undefined ? { podAddressRange: cfg.podAddressRange } : {}),
    ...(opts.log !== undefined ? { log: opts.log } : {}),
  });
}
