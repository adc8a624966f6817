// The node agent's view of a container runtime (DESIGN §7): one interface for
// podman, Kubernetes and the in-memory fake, and the typed errors they throw.
import { Type, type Static } from "@sinclair/typebox";

// ---------------------------------------------------------------------------
// Pod manifest: the minimal core/v1 Pod shape Beemesh relies on. Unknown
// fields are allowed and passed through untouched to the runtime.

const open = { additionalProperties: true } as const;
const StringMap = Type.Record(Type.String(), Type.String());
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const IntOrString = Type.Union([Type.Integer(), Type.String()]);

export const ProbeSchema = Type.Object(
  {
    httpGet: Type.Optional(
      Type.Object(
        { path: Type.Optional(Type.String()), port: IntOrString, host: Type.Optional(Type.String()) },
        open,
      ),
    ),
    tcpSocket: Type.Optional(Type.Object({ port: IntOrString, host: Type.Optional(Type.String()) }, open)),
    exec: Type.Optional(Type.Object({ command: Type.Optional(Type.Array(Type.String())) }, open)),
    initialDelaySeconds: Type.Optional(Type.Integer({ minimum: 0 })),
    periodSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    failureThreshold: Type.Optional(Type.Integer({ minimum: 1 })),
    successThreshold: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  open,
);

export const ContainerSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    image: Type.String({ minLength: 1 }),
    imagePullPolicy: Type.Optional(
      Type.Union([Type.Literal("Always"), Type.Literal("IfNotPresent"), Type.Literal("Never")]),
    ),
    command: Type.Optional(Type.Array(Type.String())),
    args: Type.Optional(Type.Array(Type.String())),
    workingDir: Type.Optional(Type.String()),
    env: Type.Optional(
      Type.Array(
        Type.Object({ name: Type.String({ minLength: 1 }), value: Type.Optional(Type.String()) }, open),
      ),
    ),
    ports: Type.Optional(
      Type.Array(
        Type.Object(
          {
            containerPort: Port,
            hostPort: Type.Optional(Port),
            hostIP: Type.Optional(Type.String()),
            name: Type.Optional(Type.String()),
            protocol: Type.Optional(
              Type.Union([Type.Literal("TCP"), Type.Literal("UDP"), Type.Literal("SCTP")]),
            ),
          },
          open,
        ),
      ),
    ),
    resources: Type.Optional(
      Type.Object({ limits: Type.Optional(StringMap), requests: Type.Optional(StringMap) }, open),
    ),
    volumeMounts: Type.Optional(
      Type.Array(
        Type.Object(
          { name: Type.String(), mountPath: Type.String(), readOnly: Type.Optional(Type.Boolean()) },
          open,
        ),
      ),
    ),
    livenessProbe: Type.Optional(ProbeSchema),
    readinessProbe: Type.Optional(ProbeSchema),
  },
  open,
);

export const VolumeSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    emptyDir: Type.Optional(Type.Object({}, open)),
    hostPath: Type.Optional(Type.Object({ path: Type.String(), type: Type.Optional(Type.String()) }, open)),
    persistentVolumeClaim: Type.Optional(
      Type.Object({ claimName: Type.String(), readOnly: Type.Optional(Type.Boolean()) }, open),
    ),
  },
  open,
);

export const PodManifestSchema = Type.Object(
  {
    apiVersion: Type.Literal("v1"),
    kind: Type.Literal("Pod"),
    metadata: Type.Object(
      {
        name: Type.Optional(Type.String()),
        namespace: Type.Optional(Type.String()),
        labels: Type.Optional(StringMap),
        annotations: Type.Optional(StringMap),
      },
      open,
    ),
    spec: Type.Object(
      {
        containers: Type.Array(ContainerSchema, { minItems: 1 }),
        initContainers: Type.Optional(Type.Array(ContainerSchema)),
        restartPolicy: Type.Optional(
          Type.Union([Type.Literal("Always"), Type.Literal("OnFailure"), Type.Literal("Never")]),
        ),
        hostNetwork: Type.Optional(Type.Boolean()),
        nodeName: Type.Optional(Type.String()),
        terminationGracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0 })),
        volumes: Type.Optional(Type.Array(VolumeSchema)),
      },
      open,
    ),
  },
  open,
);

export type ContainerSpec = Static<typeof ContainerSchema>;
export type PodManifest = Static<typeof PodManifestSchema>;

// ---------------------------------------------------------------------------
// Deploy spec: which pod, for which task, under which lease.

export type WorkloadKind = "Deployment" | "StatefulSet";

/** Links a pod to the task and lease that put it on this node; stored as labels. */
export interface PodIdentity {
  taskId: string;
  ns: string;
  parent: string;
  kind: WorkloadKind;
  /** StatefulSet members only. */
  ordinal?: number;
  generation: number;
  /** The lease's KV revision at award time: a stale winner carries a lower one. */
  fencingToken: number;
}

/** What the bid reserved for the whole pod; runtimes account capacity with it. */
export interface ResourceLimits {
  cpuMillis: number;
  memoryBytes: number;
}

export interface DeploySpec {
  /** Unique on the node (podman pod names are host-global): a DNS-1123 label. */
  podName: string;
  manifest: PodManifest;
  identity: PodIdentity;
  limits: ResourceLimits;
}

// ---------------------------------------------------------------------------
// Status, listing, logs, capacity.

export type PodPhase = "pending" | "running" | "failed" | "exited" | "unknown";
export type ContainerState = "waiting" | "running" | "exited" | "unknown";

export interface ContainerStatus {
  name: string;
  state: ContainerState;
  exitCode?: number;
  /** Why a container waits or ended (e.g. CrashLoopBackOff, OOMKilled). */
  reason?: string;
  /** Epoch milliseconds. */
  startedAt?: number;
  finishedAt?: number;
  restarts?: number;
}

export interface PodStatus {
  podName: string;
  phase: PodPhase;
  containers: ContainerStatus[];
}

export interface ListedPod {
  podName: string;
  identity: PodIdentity;
  limits: ResourceLimits;
  phase: PodPhase;
}

/** A pod carrying the Beemesh task label whose other labels do not parse. */
export interface UnparsablePod {
  podName: string;
  reason: string;
}

export interface PodListing {
  pods: ListedPod[];
  unparsable: UnparsablePod[];
}

export interface LogOptions {
  /** Last lines per container; default 100. */
  tail?: number;
}

export interface ContainerLogs {
  name: string;
  lines: string[];
}

export interface PodLogs {
  podName: string;
  containers: ContainerLogs[];
}

export interface ResourceAmounts {
  cpuMillis: number;
  memoryBytes: number;
  pods: number;
}

/** Pods hold their reservation until removed, exited or not. */
export interface NodeCapacity {
  total: ResourceAmounts;
  used: ResourceAmounts;
}

export type RuntimeKind = "podman" | "kubernetes" | "fake";

export interface Runtime {
  readonly kind: RuntimeKind;
  /** Creates and starts the pod; resolves once the runtime accepted it (status tells the rest). */
  deploy(spec: DeploySpec): Promise<void>;
  /** Throws PodNotFoundError when the pod does not exist. */
  status(podName: string): Promise<PodStatus>;
  logs(podName: string, options?: LogOptions): Promise<PodLogs>;
  /** Stops and deletes the pod; false when there was nothing to remove. */
  remove(podName: string): Promise<boolean>;
  /** Every Beemesh pod on this node, so a restarted agent can adopt them. */
  list(): Promise<PodListing>;
  capacity(): Promise<NodeCapacity>;
}

// ---------------------------------------------------------------------------
// Errors: one class per failure, cause kept (STYLE §7).

export class RuntimeError extends Error {
  override name = "RuntimeError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`runtime: ${message}`, options);
  }
}

export class PodNotFoundError extends RuntimeError {
  override name = "PodNotFoundError";
  constructor(
    readonly podName: string,
    options?: { cause?: unknown },
  ) {
    super(`pod ${podName} not found`, options);
  }
}

export class PodExistsError extends RuntimeError {
  override name = "PodExistsError";
  constructor(
    readonly podName: string,
    options?: { cause?: unknown },
  ) {
    super(`pod ${podName} already exists`, options);
  }
}

export class InvalidDeploySpecError extends RuntimeError {
  override name = "InvalidDeploySpecError";
  constructor(
    readonly problems: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`invalid deploy spec: ${problems.join("; ")}`, options);
  }
}

export class InsufficientCapacityError extends RuntimeError {
  override name = "InsufficientCapacityError";
  constructor(
    readonly podName: string,
    readonly requested: ResourceLimits,
    readonly free: ResourceAmounts,
  ) {
    super(
      `pod ${podName} needs ${requested.cpuMillis}m cpu/${requested.memoryBytes}B memory; ` +
        `free ${free.cpuMillis}m/${free.memoryBytes}B/${free.pods} pods`,
    );
  }
}

export class DeployFailedError extends RuntimeError {
  override name = "DeployFailedError";
  constructor(
    readonly podName: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`deploy of ${podName} failed: ${detail}`, options);
  }
}

/** A runtime CLI or API call that failed or timed out. */
export class RuntimeCommandError extends RuntimeError {
  override name = "RuntimeCommandError";
  constructor(
    readonly command: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly timedOut: boolean,
    options?: { cause?: unknown },
  ) {
    const what = timedOut ? "timed out" : `exited with ${exitCode ?? "signal"}`;
    super(`${command.join(" ")} ${what}: ${stderr.trim().slice(0, 500)}`, options);
  }
}

/** The runtime itself is missing or unreachable (no podman binary, no API server). */
export class RuntimeUnavailableError extends RuntimeError {
  override name = "RuntimeUnavailableError";
}
