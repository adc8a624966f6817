// The pod template embedded in BeemeshDeployment / BeemeshStatefulSet: the
// parts of core/v1 PodSpec a node agent can honour, spelled as Kubernetes
// spells them. Objects whose full shape is large and rarely inspected by
// Beemesh (securityContext, lifecycle, valueFrom, ...) are kept open with
// x-kubernetes-preserve-unknown-fields; everything else is closed.
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import {
  Dns1123Label,
  Dns1123Subdomain,
  Int32,
  IntOrString,
  LabelSelector,
  NonNegativeInt,
  NonNegativeInt32,
  OpenObject,
  PortNumber,
  QUANTITY_PATTERN,
  StringEnum,
  StringMap,
  Toleration,
} from "./common.js";

const StringList = (maxItems = 4096) => Type.Array(Type.String(), { maxItems });

const IANA_SVC_NAME = {
  maxLength: 15,
  pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
  errorMessage: "must be an IANA service name: at most 15 lower case alphanumeric characters or '-'",
};

/** A port by number or by the name of a container port. */
const PortOrName = () =>
  IntOrString({}, { integer: { minimum: 1, maximum: 65535 }, string: { minLength: 1, ...IANA_SVC_NAME } });

export const ContainerPort = Type.Object(
  {
    name: Type.Optional(Type.String(IANA_SVC_NAME)),
    containerPort: PortNumber(),
    hostPort: Type.Optional(PortNumber()),
    hostIP: Type.Optional(Type.String()),
    protocol: Type.Optional(StringEnum(["TCP", "UDP", "SCTP"] as const, { default: "TCP" })),
  },
  { additionalProperties: false },
);
export type ContainerPort = Static<typeof ContainerPort>;

export const EnvVar = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    value: Type.Optional(Type.String()),
    valueFrom: Type.Optional(OpenObject({ description: "core/v1 EnvVarSource" })),
  },
  { additionalProperties: false },
);
export type EnvVar = Static<typeof EnvVar>;

/** Quantities (cpu "500m", memory "128Mi") are int-or-string as in Kubernetes. */
export const ResourceList = () =>
  Type.Record(
    Type.String(),
    IntOrString(
      {},
      {
        integer: { minimum: 0 },
        string: {
          pattern: QUANTITY_PATTERN,
          errorMessage: "must be a non-negative quantity such as 500m or 128Mi",
        },
      },
    ),
  );

export const ResourceRequirements = Type.Object(
  {
    limits: Type.Optional(ResourceList()),
    requests: Type.Optional(ResourceList()),
  },
  { additionalProperties: false },
);
export type ResourceRequirements = Static<typeof ResourceRequirements>;

export const HTTPHeader = Type.Object(
  { name: Type.String({ minLength: 1 }), value: Type.String() },
  { additionalProperties: false },
);

export const HTTPGetAction = Type.Object(
  {
    path: Type.Optional(Type.String()),
    port: PortOrName(),
    host: Type.Optional(Type.String()),
    scheme: Type.Optional(StringEnum(["HTTP", "HTTPS"] as const)),
    httpHeaders: Type.Optional(Type.Array(HTTPHeader, { maxItems: 64 })),
  },
  { additionalProperties: false },
);

export const TCPSocketAction = Type.Object(
  { port: PortOrName(), host: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

export const ExecAction = Type.Object(
  { command: Type.Optional(StringList()) },
  { additionalProperties: false },
);

export const GRPCAction = Type.Object(
  { port: PortNumber(), service: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

/** A probe has exactly one handler (checked by the semantic rules). */
export const Probe = Type.Object(
  {
    httpGet: Type.Optional(HTTPGetAction),
    tcpSocket: Type.Optional(TCPSocketAction),
    exec: Type.Optional(ExecAction),
    grpc: Type.Optional(GRPCAction),
    initialDelaySeconds: Type.Optional(NonNegativeInt32()),
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 2147483647, format: "int32" })),
    periodSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 2147483647, format: "int32" })),
    successThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 2147483647, format: "int32" })),
    failureThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 2147483647, format: "int32" })),
    terminationGracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 1, format: "int64" })),
  },
  { additionalProperties: false },
);
export type Probe = Static<typeof Probe>;

export const VolumeMount = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    mountPath: Type.String({ minLength: 1 }),
    readOnly: Type.Optional(Type.Boolean()),
    subPath: Type.Optional(Type.String()),
    subPathExpr: Type.Optional(Type.String()),
    mountPropagation: Type.Optional(StringEnum(["None", "HostToContainer", "Bidirectional"] as const)),
  },
  { additionalProperties: false },
);
export type VolumeMount = Static<typeof VolumeMount>;

export const Container = Type.Object(
  {
    name: Dns1123Label(),
    image: Type.String({ minLength: 1, description: "container image reference; required" }),
    command: Type.Optional(StringList()),
    args: Type.Optional(StringList()),
    workingDir: Type.Optional(Type.String()),
    env: Type.Optional(Type.Array(EnvVar, { maxItems: 4096 })),
    envFrom: Type.Optional(
      Type.Array(OpenObject({ description: "core/v1 EnvFromSource" }), { maxItems: 256 }),
    ),
    ports: Type.Optional(Type.Array(ContainerPort, { maxItems: 256 })),
    resources: Type.Optional(ResourceRequirements),
    livenessProbe: Type.Optional(Probe),
    readinessProbe: Type.Optional(Probe),
    startupProbe: Type.Optional(Probe),
    volumeMounts: Type.Optional(Type.Array(VolumeMount, { maxItems: 256 })),
    imagePullPolicy: Type.Optional(StringEnum(["Always", "IfNotPresent", "Never"] as const)),
    securityContext: Type.Optional(OpenObject({ description: "core/v1 SecurityContext" })),
    lifecycle: Type.Optional(OpenObject({ description: "core/v1 Lifecycle" })),
    terminationMessagePath: Type.Optional(Type.String()),
    terminationMessagePolicy: Type.Optional(StringEnum(["File", "FallbackToLogsOnError"] as const)),
    stdin: Type.Optional(Type.Boolean()),
    stdinOnce: Type.Optional(Type.Boolean()),
    tty: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type Container = Static<typeof Container>;

/**
 * A volume: its name plus one source. The sources Beemesh's runtimes mount are
 * spelled out; any other core/v1 source is kept as given (the object is open).
 */
export const Volume = Type.Object(
  {
    name: Dns1123Label(),
    emptyDir: Type.Optional(
      Type.Object(
        { medium: Type.Optional(Type.String()), sizeLimit: Type.Optional(IntOrString()) },
        { additionalProperties: false },
      ),
    ),
    hostPath: Type.Optional(
      Type.Object(
        { path: Type.String({ minLength: 1 }), type: Type.Optional(Type.String()) },
        { additionalProperties: false },
      ),
    ),
    persistentVolumeClaim: Type.Optional(
      Type.Object(
        { claimName: Type.String({ minLength: 1 }), readOnly: Type.Optional(Type.Boolean()) },
        { additionalProperties: false },
      ),
    ),
    configMap: Type.Optional(OpenObject({ description: "core/v1 ConfigMapVolumeSource" })),
    secret: Type.Optional(OpenObject({ description: "core/v1 SecretVolumeSource" })),
  },
  { "x-kubernetes-preserve-unknown-fields": true },
);
export type Volume = Static<typeof Volume>;

export const NodeSelectorRequirement = Type.Object(
  {
    key: Type.String({ minLength: 1 }),
    operator: StringEnum(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] as const),
    values: Type.Optional(StringList()),
  },
  { additionalProperties: false },
);

export const NodeSelectorTerm = Type.Object(
  {
    matchExpressions: Type.Optional(Type.Array(NodeSelectorRequirement)),
    matchFields: Type.Optional(Type.Array(NodeSelectorRequirement)),
  },
  { additionalProperties: false },
);

const Weight = () => Type.Integer({ minimum: 1, maximum: 100, format: "int32" });

export const NodeAffinity = Type.Object(
  {
    requiredDuringSchedulingIgnoredDuringExecution: Type.Optional(
      Type.Object({ nodeSelectorTerms: Type.Array(NodeSelectorTerm) }, { additionalProperties: false }),
    ),
    preferredDuringSchedulingIgnoredDuringExecution: Type.Optional(
      Type.Array(
        Type.Object({ weight: Weight(), preference: NodeSelectorTerm }, { additionalProperties: false }),
      ),
    ),
  },
  { additionalProperties: false },
);

export const PodAffinityTerm = Type.Object(
  {
    labelSelector: Type.Optional(LabelSelector()),
    namespaces: Type.Optional(StringList()),
    namespaceSelector: Type.Optional(LabelSelector()),
    topologyKey: Type.String({ minLength: 1 }),
    matchLabelKeys: Type.Optional(StringList()),
    mismatchLabelKeys: Type.Optional(StringList()),
  },
  { additionalProperties: false },
);

export const PodAffinity = Type.Object(
  {
    requiredDuringSchedulingIgnoredDuringExecution: Type.Optional(Type.Array(PodAffinityTerm)),
    preferredDuringSchedulingIgnoredDuringExecution: Type.Optional(
      Type.Array(
        Type.Object({ weight: Weight(), podAffinityTerm: PodAffinityTerm }, { additionalProperties: false }),
      ),
    ),
  },
  { additionalProperties: false },
);

export const Affinity = Type.Object(
  {
    nodeAffinity: Type.Optional(NodeAffinity),
    podAffinity: Type.Optional(PodAffinity),
    podAntiAffinity: Type.Optional(PodAffinity),
  },
  { additionalProperties: false },
);
export type Affinity = Static<typeof Affinity>;

export const PodSpec = Type.Object(
  {
    containers: Type.Array(Container, { minItems: 1, maxItems: 64 }),
    initContainers: Type.Optional(Type.Array(Container, { maxItems: 64 })),
    volumes: Type.Optional(Type.Array(Volume, { maxItems: 256 })),
    restartPolicy: Type.Optional(
      StringEnum(["Always", "OnFailure", "Never"] as const, { default: "Always" }),
    ),
    terminationGracePeriodSeconds: Type.Optional(NonNegativeInt()),
    activeDeadlineSeconds: Type.Optional(Type.Integer({ minimum: 1, format: "int64" })),
    dnsPolicy: Type.Optional(
      StringEnum(["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] as const),
    ),
    dnsConfig: Type.Optional(OpenObject({ description: "core/v1 PodDNSConfig" })),
    nodeSelector: Type.Optional(StringMap()),
    nodeName: Type.Optional(Dns1123Subdomain()),
    serviceAccountName: Type.Optional(Dns1123Subdomain()),
    automountServiceAccountToken: Type.Optional(Type.Boolean()),
    hostNetwork: Type.Optional(Type.Boolean()),
    hostPID: Type.Optional(Type.Boolean()),
    hostIPC: Type.Optional(Type.Boolean()),
    shareProcessNamespace: Type.Optional(Type.Boolean()),
    hostname: Type.Optional(Dns1123Label()),
    subdomain: Type.Optional(Dns1123Label()),
    hostAliases: Type.Optional(
      Type.Array(
        Type.Object(
          { ip: Type.String({ minLength: 1 }), hostnames: Type.Optional(StringList()) },
          {
            additionalProperties: false,
          },
        ),
      ),
    ),
    securityContext: Type.Optional(OpenObject({ description: "core/v1 PodSecurityContext" })),
    imagePullSecrets: Type.Optional(
      Type.Array(Type.Object({ name: Type.String({ minLength: 1 }) }, { additionalProperties: false })),
    ),
    affinity: Type.Optional(Affinity),
    tolerations: Type.Optional(Type.Array(Toleration, { maxItems: 64 })),
    topologySpreadConstraints: Type.Optional(
      Type.Array(OpenObject({ description: "core/v1 TopologySpreadConstraint" })),
    ),
    priorityClassName: Type.Optional(Type.String()),
    priority: Type.Optional(Int32()),
    schedulerName: Type.Optional(Type.String()),
    runtimeClassName: Type.Optional(Type.String()),
    enableServiceLinks: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PodSpec = Static<typeof PodSpec>;

/** Metadata a pod template may carry (labels select its replicas). */
export const PodTemplateMetadata = Type.Object(
  {
    name: Type.Optional(Dns1123Subdomain()),
    namespace: Type.Optional(Dns1123Label()),
    labels: Type.Optional(StringMap()),
    annotations: Type.Optional(StringMap()),
  },
  { additionalProperties: false },
);

export const PodTemplateSpec = Type.Object(
  {
    metadata: Type.Optional(PodTemplateMetadata),
    spec: PodSpec,
  },
  { additionalProperties: false },
);
export type PodTemplateSpec = Static<typeof PodTemplateSpec>;
