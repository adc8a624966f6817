// The API resources of group beemesh.io/v1alpha1 (DESIGN §6). The top level,
// metadata and spec are closed (unknown fields are refused); these schemas
// also generate the CRDs' openAPIV3Schema (protocol/crd.ts).
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import {
  DateTime,
  Dns1123Label,
  Dns1123Subdomain,
  Int32,
  IntOrString,
  LabelSelector,
  NonNegativeInt,
  NonNegativeInt32,
  OpenObject,
  PERCENT_PATTERN,
  PortNumber,
  StringEnum,
  StringMap,
} from "./common.js";
import { PodTemplateSpec } from "./pod.js";

export const GROUP = "beemesh.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

export const OwnerReference = Type.Object(
  {
    apiVersion: Type.String({ minLength: 1 }),
    kind: Type.String({ minLength: 1 }),
    name: Type.String({ minLength: 1 }),
    uid: Type.String({ minLength: 1 }),
    controller: Type.Optional(Type.Boolean()),
    blockOwnerDeletion: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

/** metav1.ObjectMeta, every field of it (so closing it refuses only real typos). */
export const ObjectMeta = Type.Object(
  {
    name: Type.Optional(Dns1123Subdomain()),
    generateName: Type.Optional(Type.String({ maxLength: 253 })),
    namespace: Type.Optional(Dns1123Label()),
    selfLink: Type.Optional(Type.String()),
    uid: Type.Optional(Type.String({ maxLength: 128 })),
    resourceVersion: Type.Optional(Type.String()),
    generation: Type.Optional(NonNegativeInt()),
    creationTimestamp: Type.Optional(DateTime()),
    deletionTimestamp: Type.Optional(DateTime()),
    deletionGracePeriodSeconds: Type.Optional(NonNegativeInt()),
    labels: Type.Optional(StringMap()),
    annotations: Type.Optional(StringMap()),
    ownerReferences: Type.Optional(Type.Array(OwnerReference)),
    finalizers: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    managedFields: Type.Optional(Type.Array(OpenObject({ description: "metav1.ManagedFieldsEntry" }))),
  },
  { additionalProperties: false },
);
export type ObjectMeta = Static<typeof ObjectMeta>;

export const ListMeta = Type.Object(
  {
    resourceVersion: Type.Optional(Type.String()),
    continue: Type.Optional(Type.String()),
    remainingItemCount: Type.Optional(NonNegativeInt()),
    selfLink: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type ListMeta = Static<typeof ListMeta>;

const IntOrPercent = (defaultValue: number, description: string) =>
  IntOrString(
    { default: defaultValue, description },
    {
      integer: { minimum: 0, maximum: 2147483647 },
      string: { pattern: PERCENT_PATTERN, errorMessage: "must be a percentage between 0% and 100%" },
    },
  );

export const DeploymentStrategy = Type.Object(
  {
    type: Type.Optional(StringEnum(["RollingUpdate"] as const, { default: "RollingUpdate" })),
    rollingUpdate: Type.Optional(
      Type.Object(
        {
          maxSurge: Type.Optional(
            IntOrPercent(1, "replicas above spec.replicas during an update (count or percent)"),
          ),
          maxUnavailable: Type.Optional(
            IntOrPercent(0, "replicas below spec.replicas during an update (count or percent)"),
          ),
        },
        { additionalProperties: false, default: {} },
      ),
    ),
  },
  { additionalProperties: false, default: {}, description: "how a new template replaces the old one" },
);
export type DeploymentStrategy = Static<typeof DeploymentStrategy>;

/** StatefulSets replace members in place, one identity at a time; there is no surge. */
export const StatefulSetStrategy = Type.Object(
  {
    type: Type.Optional(StringEnum(["RollingUpdate"] as const, { default: "RollingUpdate" })),
    rollingUpdate: Type.Optional(
      Type.Object(
        {
          maxUnavailable: Type.Optional(
            IntOrPercent(1, "members that may be down at once during an update (count or percent)"),
          ),
        },
        { additionalProperties: false, default: {} },
      ),
    ),
  },
  { additionalProperties: false, default: {}, description: "how a new template replaces the old one" },
);
export type StatefulSetStrategy = Static<typeof StatefulSetStrategy>;

export const WatchdogSidecar = Type.Object(
  {
    image: Type.Optional(
      Type.String({ minLength: 1, description: "watchdog image; the dispatcher's default when absent" }),
    ),
    intervalSeconds: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 3600,
        default: 1,
        format: "int32",
        description: "heartbeat interval",
      }),
    ),
    ttlIntervals: Type.Optional(
      Type.Integer({
        minimum: 2,
        maximum: 100,
        default: 3,
        format: "int32",
        description: "a peer is dead after this many intervals without a heartbeat",
      }),
    ),
  },
  { additionalProperties: false, default: {} },
);
export type WatchdogSidecar = Static<typeof WatchdogSidecar>;

export const RaftSidecar = Type.Object(
  {
    image: Type.Optional(
      Type.String({ minLength: 1, description: "raft sidecar image; the dispatcher's default when absent" }),
    ),
    port: Type.Optional(
      PortNumber({ default: 7000, description: "localhost port the app uses to reach its sidecar" }),
    ),
    electionTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 50,
        maximum: 600000,
        default: 1000,
        format: "int32",
        description: "base election timeout; each member randomizes in [t, 2t)",
      }),
    ),
    heartbeatIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 10,
        maximum: 60000,
        default: 100,
        format: "int32",
        description: "leader heartbeat interval",
      }),
    ),
    snapshotThreshold: Type.Optional(
      Type.Integer({
        minimum: 1,
        default: 10000,
        format: "int64",
        description: "log entries between snapshots",
      }),
    ),
    cloneAfterMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 3600000,
        default: 5000,
        format: "int32",
        description: "a member silent this long is re-launched by the leader",
      }),
    ),
    dataDir: Type.Optional(
      Type.String({ minLength: 1, default: "/var/lib/beemesh/raft", description: "log and snapshots" }),
    ),
  },
  { additionalProperties: false, default: {} },
);
export type RaftSidecar = Static<typeof RaftSidecar>;

export const Replicas = () =>
  Type.Integer({
    minimum: 0,
    maximum: 2147483647,
    format: "int32",
    default: 1,
    description: "desired number of pods",
  });

export const BeemeshDeploymentSpec = Type.Object(
  {
    replicas: Type.Optional(Replicas()),
    selector: LabelSelector({ description: "must match the template's labels" }),
    template: PodTemplateSpec,
    strategy: Type.Optional(DeploymentStrategy),
    watchdogSidecar: Type.Optional(WatchdogSidecar),
    priority: Type.Optional(Int32({ description: "scheduling priority; higher may preempt lower" })),
  },
  { additionalProperties: false },
);
export type BeemeshDeploymentSpec = Static<typeof BeemeshDeploymentSpec>;

export const BeemeshStatefulSetSpec = Type.Object(
  {
    replicas: Type.Optional(Replicas()),
    serviceName: Dns1123Label({ description: "stable network identity of the members; required" }),
    selector: LabelSelector({ description: "must match the template's labels" }),
    template: PodTemplateSpec,
    strategy: Type.Optional(StatefulSetStrategy),
    raftSidecar: Type.Optional(RaftSidecar),
    priority: Type.Optional(Int32({ description: "scheduling priority; higher may preempt lower" })),
  },
  { additionalProperties: false },
);
export type BeemeshStatefulSetSpec = Static<typeof BeemeshStatefulSetSpec>;

export const Condition = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 316 }),
    status: StringEnum(["True", "False", "Unknown"] as const),
    observedGeneration: Type.Optional(NonNegativeInt()),
    lastTransitionTime: Type.Optional(DateTime()),
    reason: Type.Optional(Type.String({ maxLength: 1024 })),
    message: Type.Optional(Type.String({ maxLength: 32768 })),
  },
  { additionalProperties: false },
);
export type Condition = Static<typeof Condition>;

export const WorkloadStatus = Type.Object(
  {
    replicas: Type.Optional(NonNegativeInt32({ description: "pods seen running" })),
    readyReplicas: Type.Optional(NonNegativeInt32({ description: "pods seen ready" })),
    updatedReplicas: Type.Optional(NonNegativeInt32({ description: "pods of the current generation" })),
    observedGeneration: Type.Optional(NonNegativeInt()),
    selector: Type.Optional(
      Type.String({ description: "spec.selector as a string, for the scale subresource" }),
    ),
    conditions: Type.Optional(Type.Array(Condition)),
  },
  { additionalProperties: false },
);
export type WorkloadStatus = Static<typeof WorkloadStatus>;

export const BeemeshDeployment = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION),
    kind: Type.Literal("BeemeshDeployment"),
    metadata: ObjectMeta,
    spec: BeemeshDeploymentSpec,
    status: Type.Optional(WorkloadStatus),
  },
  {
    additionalProperties: false,
    description: "A stateless workload kept at spec.replicas by watchdog sidecars.",
  },
);
export type BeemeshDeployment = Static<typeof BeemeshDeployment>;

export const BeemeshStatefulSet = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION),
    kind: Type.Literal("BeemeshStatefulSet"),
    metadata: ObjectMeta,
    spec: BeemeshStatefulSetSpec,
    status: Type.Optional(WorkloadStatus),
  },
  {
    additionalProperties: false,
    description: "A stateful workload whose members <name>-0..N-1 keep a Raft group through their sidecars.",
  },
);
export type BeemeshStatefulSet = Static<typeof BeemeshStatefulSet>;

export const BeemeshDeploymentList = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION),
    kind: Type.Literal("BeemeshDeploymentList"),
    metadata: Type.Optional(ListMeta),
    items: Type.Array(BeemeshDeployment),
  },
  { additionalProperties: false },
);
export type BeemeshDeploymentList = Static<typeof BeemeshDeploymentList>;

export const BeemeshStatefulSetList = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION),
    kind: Type.Literal("BeemeshStatefulSetList"),
    metadata: Type.Optional(ListMeta),
    items: Type.Array(BeemeshStatefulSet),
  },
  { additionalProperties: false },
);
export type BeemeshStatefulSetList = Static<typeof BeemeshStatefulSetList>;

/** Names the dispatcher gives the injected sidecars; user containers may not take them. */
export const WATCHDOG_CONTAINER_NAME = "beemesh-watchdog";
export const RAFT_CONTAINER_NAME = "beemesh-raft";
