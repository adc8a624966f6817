// Runs pods on a real Kubernetes cluster (DESIGN §6, §7): core/v1 Pods bound
// straight to this node with spec.nodeName, so the cluster scheduler is bypassed.
import {
  CoreV1Api,
  type KubeConfig,
  type V1ContainerStatus,
  type V1Node,
  type V1Pod,
} from "@kubernetes/client-node";
import { isDnsLabel, LABEL, parseIdentityLabels } from "./labels.js";
import {
  assertValidDeploySpec,
  derivePodPhase,
  parseCpuMillis,
  parseMemoryBytes,
  prepareManifest,
  usedByListing,
} from "./manifest.js";
import {
  DeployFailedError,
  PodExistsError,
  PodNotFoundError,
  RuntimeCommandError,
  RuntimeError,
  RuntimeUnavailableError,
  type ContainerStatus,
  type DeploySpec,
  type ListedPod,
  type LogOptions,
  type NodeCapacity,
  type PodListing,
  type PodLogs,
  type PodPhase,
  type PodStatus,
  type ResourceAmounts,
  type Runtime,
  type UnparsablePod,
} from "./types.js";

/** The few CoreV1Api calls the runtime makes; tests pass a stub. */
export type PodApi = Pick<
  CoreV1Api,
  | "createNamespacedPod"
  | "readNamespacedPod"
  | "deleteNamespacedPod"
  | "listNamespacedPod"
  | "readNamespacedPodLog"
  | "readNode"
>;

/** The caller loads the KubeConfig (in main: loadFromDefault / loadFromCluster). */
export function podApiFromKubeConfig(kc: KubeConfig): PodApi {
  return kc.makeApiClient(CoreV1Api);
}

// ---------------------------------------------------------------------------
// Pure mapping.

export interface KubernetesPlacement {
  namespace: string;
  nodeName: string;
}

export function kubernetesPodFor(spec: DeploySpec, placement: KubernetesPlacement): V1Pod {
  return prepareManifest(spec, placement);
}

function epochMs(d: Date | undefined): number | undefined {
  return d instanceof Date && !Number.isNaN(d.getTime()) ? d.getTime() : undefined;
}

export function containerStatusFromKubernetes(cs: V1ContainerStatus): ContainerStatus {
  const status: ContainerStatus = { name: cs.name, state: "unknown", restarts: cs.restartCount };
  const { running, terminated, waiting } = cs.state ?? {};
  if (terminated) {
    status.state = "exited";
    status.exitCode = terminated.exitCode;
    if (terminated.reason !== undefined) status.reason = terminated.reason;
    const startedAt = epochMs(terminated.startedAt);
    const finishedAt = epochMs(terminated.finishedAt);
    if (startedAt !== undefined) status.startedAt = startedAt;
    if (finishedAt !== undefined) status.finishedAt = finishedAt;
  } else if (running) {
    status.state = "running";
    const startedAt = epochMs(running.startedAt);
    if (startedAt !== undefined) status.startedAt = startedAt;
  } else if (waiting) {
    status.state = "waiting";
    if (waiting.reason !== undefined) status.reason = waiting.reason;
  }
  return status;
}

const TERMINAL_PHASE: Record<string, PodPhase> = {
  Succeeded: "exited",
  Failed: "failed",
  Unknown: "unknown",
};

/**
 * Containers in manifest order (those Kubernetes has not reported yet are
 * waiting); the phase comes from them unless Kubernetes already calls the pod
 * Succeeded, Failed or Unknown.
 */
export function podStatusFromKubernetes(pod: V1Pod): PodStatus {
  const podName = pod.metadata?.name ?? "";
  const reported = new Map((pod.status?.containerStatuses ?? []).map((cs) => [cs.name, cs]));
  const names = pod.spec?.containers.map((c) => c.name) ?? [...reported.keys()];
  const containers = names.map((name): ContainerStatus => {
    const cs = reported.get(name);
    return cs ? containerStatusFromKubernetes(cs) : { name, state: "waiting", reason: "ContainerCreating" };
  });
  const k8sPhase = pod.status?.phase;
  const phase = (k8sPhase !== undefined ? TERMINAL_PHASE[k8sPhase] : undefined) ?? derivePodPhase(containers);
  return { podName, phase, containers };
}

export function listingFromKubernetes(pods: readonly V1Pod[]): PodListing {
  const listed: ListedPod[] = [];
  const unparsable: UnparsablePod[] = [];
  for (const pod of pods) {
    const podName = pod.metadata?.name ?? "";
    const parsed = parseIdentityLabels(pod.metadata?.labels);
    if (!parsed.ok) unparsable.push({ podName, reason: parsed.reason });
    else {
      listed.push({
        podName,
        identity: parsed.identity,
        limits: parsed.limits,
        phase: podStatusFromKubernetes(pod).phase,
      });
    }
  }
  listed.sort((a, b) => a.podName.localeCompare(b.podName));
  return { pods: listed, unparsable };
}

/** The node's allocatable resources (what the kubelet lets pods use). */
export function nodeTotalFromKubernetes(node: V1Node): ResourceAmounts {
  const a = node.status?.allocatable ?? {};
  const pods = a.pods !== undefined ? Number.parseInt(a.pods, 10) : 0;
  return {
    cpuMillis: a.cpu !== undefined ? (parseCpuMillis(a.cpu) ?? 0) : 0,
    memoryBytes: a.memory !== undefined ? (parseMemoryBytes(a.memory) ?? 0) : 0,
    pods: Number.isFinite(pods) ? pods : 0,
  };
}

export function splitLines(text: string): string[] {
  if (text === "") return [];
  return (text.endsWith("\n") ? text.slice(0, -1) : text).split("\n");
}

/** The HTTP status of a client-node ApiException, if that is what was thrown. */
export function apiStatusCode(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  const code = (err as { code: unknown }).code;
  return typeof code === "number" ? code : undefined;
}

function apiError(what: string, err: unknown): RuntimeError {
  const code = apiStatusCode(err);
  if (code === undefined)
    return new RuntimeUnavailableError(`kubernetes: ${what}: no answer from the API server`, { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  return new RuntimeCommandError(["kubernetes", what], code, message, false, { cause: err });
}

// ---------------------------------------------------------------------------

export interface KubernetesRuntimeOptions {
  api: PodApi;
  /** The Kubernetes Node this agent runs on; every pod is bound to it. */
  nodeName: string;
  /** Namespace for every Beemesh pod (pod names are unique per node agent). Default "beemesh". */
  namespace?: string;
  /** Default 5 s. */
  gracePeriodSeconds?: number;
}

const DEFAULT_TAIL = 100;

export class KubernetesRuntime implements Runtime {
  readonly kind = "kubernetes";
  private readonly api: PodApi;
  private readonly placement: KubernetesPlacement;
  private readonly gracePeriodSeconds: number;

  constructor(options: KubernetesRuntimeOptions) {
    this.api = options.api;
    this.placement = { namespace: options.namespace ?? "beemesh", nodeName: options.nodeName };
    this.gracePeriodSeconds = options.gracePeriodSeconds ?? 5;
    if (options.nodeName === "") throw new RuntimeError("kubernetes: nodeName is required");
    if (!Number.isInteger(this.gracePeriodSeconds) || this.gracePeriodSeconds < 0) {
      throw new RuntimeError("kubernetes: gracePeriodSeconds must be an integer >= 0");
    }
  }

  async deploy(spec: DeploySpec): Promise<void> {
    assertValidDeploySpec(spec);
    const body = kubernetesPodFor(spec, this.placement);
    try {
      await this.api.createNamespacedPod({ namespace: this.placement.namespace, body });
    } catch (err) {
      const code = apiStatusCode(err);
      if (code === 409) throw new PodExistsError(spec.podName, { cause: err });
      if (code !== undefined && code >= 400 && code < 500) {
        throw new DeployFailedError(spec.podName, `API server refused the pod (${code})`, { cause: err });
      }
      throw apiError("create pod", err);
    }
  }

  async status(podName: string): Promise<PodStatus> {
    return podStatusFromKubernetes(await this.read(podName));
  }

  async logs(podName: string, options: LogOptions = {}): Promise<PodLogs> {
    const pod = await this.read(podName);
    const tailLines = options.tail ?? DEFAULT_TAIL;
    const names = pod.spec?.containers.map((c) => c.name) ?? [];
    const containers = await Promise.all(
      names.map(async (container) => {
        try {
          const text = await this.api.readNamespacedPodLog({
            name: podName,
            namespace: this.placement.namespace,
            container,
            tailLines,
          });
          return { name: container, lines: splitLines(text) };
        } catch (err) {
          // 400: the container has not started yet, so it has no log.
          if (apiStatusCode(err) === 400) return { name: container, lines: [] };
          throw apiError("read pod log", err);
        }
      }),
    );
    return { podName, containers };
  }

  async remove(podName: string): Promise<boolean> {
    let pod: V1Pod;
    try {
      pod = await this.read(podName);
    } catch (err) {
      if (err instanceof PodNotFoundError) return false;
      throw err;
    }
    try {
      // The uid precondition keeps us from deleting a same-named pod created meanwhile.
      await this.api.deleteNamespacedPod({
        name: podName,
        namespace: this.placement.namespace,
        gracePeriodSeconds: this.gracePeriodSeconds,
        body: { preconditions: { uid: pod.metadata?.uid } },
      });
      return true;
    } catch (err) {
      const code = apiStatusCode(err);
      if (code === 404 || code === 409) return false;
      throw apiError("delete pod", err);
    }
  }

  async list(): Promise<PodListing> {
    try {
      const pods = await this.api.listNamespacedPod({
        namespace: this.placement.namespace,
        labelSelector: LABEL.taskId,
        fieldSelector: `spec.nodeName=${this.placement.nodeName}`,
      });
      return listingFromKubernetes(pods.items);
    } catch (err) {
      throw apiError("list pods", err);
    }
  }

  async capacity(): Promise<NodeCapacity> {
    let node: V1Node;
    try {
      node = await this.api.readNode({ name: this.placement.nodeName });
    } catch (err) {
      throw apiError("read node", err);
    }
    const used = usedByListing(await this.list());
    return { total: nodeTotalFromKubernetes(node), used };
  }

  /** A pod of ours: in our namespace and bound to our node; anything else is "not found". */
  private async read(podName: string): Promise<V1Pod> {
    if (!isDnsLabel(podName)) throw new PodNotFoundError(podName);
    let pod: V1Pod;
    try {
      pod = await this.api.readNamespacedPod({ name: podName, namespace: this.placement.namespace });
    } catch (err) {
      if (apiStatusCode(err) === 404) throw new PodNotFoundError(podName, { cause: err });
      throw apiError("read pod", err);
    }
    if (pod.spec?.nodeName !== this.placement.nodeName) throw new PodNotFoundError(podName);
    return pod;
  }
}
