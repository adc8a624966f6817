// Wire messages (DESIGN §2): snake_case JSON, times in milliseconds since the
// Unix epoch, ids as ULIDs. Every message object is closed: a field this
// version does not know is refused, so a typo never passes silently.
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import {
  Base64,
  Dns1123Label,
  Dns1123Subdomain,
  Int32,
  KvKey,
  LabelSelector,
  NonNegativeInt,
  NonNegativeInt32,
  Nonce,
  PortNumber,
  Sha256Hex,
  StringEnum,
  StringMap,
  Taint,
  TimestampMs,
  Toleration,
  Ulid,
} from "./common.js";

/** Largest batch one Task may stand for (DESIGN §3.6). */
export const MAX_BATCH = 100_000;

export const WorkloadKind = StringEnum(["Deployment", "StatefulSet"] as const);
export type WorkloadKind = Static<typeof WorkloadKind>;

/** Node ids are DNS-1123 labels so they are safe as subject tokens and SPIFFE path segments. */
export const NodeId = (description = "id of a node agent") => Dns1123Label({ description });

const ReasonList = () => Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 64 });

export const Protocol = StringEnum(["TCP", "UDP", "SCTP"] as const);
export type Protocol = Static<typeof Protocol>;

export const PortRequest = Type.Object(
  { port: PortNumber(), protocol: Protocol },
  { additionalProperties: false },
);
export type PortRequest = Static<typeof PortRequest>;

export const ManifestRef = Type.Object(
  {
    key: KvKey({ description: "key of the rendered manifest in the beemesh-manifests bucket" }),
    sha256: Sha256Hex({
      description: "sha256 of the manifest bytes; a node refuses a manifest that does not match",
    }),
  },
  { additionalProperties: false },
);
export type ManifestRef = Static<typeof ManifestRef>;

export const TaskRequirements = Type.Object(
  {
    cpu_millis: NonNegativeInt(),
    memory_bytes: NonNegativeInt(),
    ports: Type.Array(PortRequest, { maxItems: 256, description: "host ports that must be free" }),
  },
  { additionalProperties: false },
);
export type TaskRequirements = Static<typeof TaskRequirements>;

export const QosClass = StringEnum(["Guaranteed", "Burstable", "BestEffort"] as const);
export type QosClass = Static<typeof QosClass>;

export const TaskOrigin = StringEnum(["dispatcher", "clone"] as const);
export type TaskOrigin = Static<typeof TaskOrigin>;

/**
 * A request to place replicas of one pod template. `count` (default 1) or the
 * `ordinals` list makes it a batch; a StatefulSet task names its ordinals
 * (`ordinal` for one, `ordinals` for several), a Deployment task names none.
 */
export const Task = Type.Object(
  {
    task_id: Ulid(),
    kind: WorkloadKind,
    ns: Dns1123Label(),
    parent: Dns1123Subdomain(),
    parent_uid: Type.String({ minLength: 1, maxLength: 128 }),
    generation: NonNegativeInt(),
    ordinal: Type.Optional(NonNegativeInt32()),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BATCH })),
    ordinals: Type.Optional(
      Type.Array(NonNegativeInt32(), { minItems: 1, maxItems: MAX_BATCH, uniqueItems: true }),
    ),
    manifest_ref: ManifestRef,
    reqs: TaskRequirements,
    priority: Int32(),
    qos: QosClass,
    affinity: Type.Optional(LabelSelector({ description: "the node must already run a pod matching this" })),
    anti_affinity: Type.Optional(LabelSelector({ description: "the node must not run a pod matching this" })),
    node_selector: Type.Optional(StringMap()),
    tolerations: Type.Optional(Type.Array(Toleration, { maxItems: 64 })),
    hints: Type.Optional(StringMap()),
    attempt: NonNegativeInt32(),
    origin: TaskOrigin,
    nonce: Nonce(),
    ts: TimestampMs(),
  },
  { additionalProperties: false },
);
export type Task = Static<typeof Task>;

export const PreemptVictim = Type.Object(
  {
    ns: Dns1123Label(),
    pod: Dns1123Subdomain(),
    task_id: Ulid(),
    priority: Int32(),
  },
  { additionalProperties: false },
);
export type PreemptVictim = Static<typeof PreemptVictim>;

/** A node's offer for a Task: `offered` replicas of the batch, with the pods it would evict if any. */
export const Bid = Type.Object(
  {
    task_id: Ulid(),
    node_id: NodeId(),
    score: Type.Number({ minimum: -1e12, maximum: 1e12 }),
    fit: Type.Boolean(),
    reasons: ReasonList(),
    capabilities: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 64 }),
    offered: Type.Integer({ minimum: 0, maximum: MAX_BATCH }),
    victims: Type.Optional(Type.Array(PreemptVictim, { minItems: 1, maxItems: 256 })),
    nonce: Nonce(),
    ts: TimestampMs(),
  },
  { additionalProperties: false },
);
export type Bid = Static<typeof Bid>;

/**
 * An award. Exactly one of `task_id` (a task lease) or `identity` (the KV key of
 * an identity or clone-slot lease) is set. `fencing_token` is the lease's KV
 * revision; runtimes record it with the pod so a stale winner is recognised.
 */
export const Lease = Type.Object(
  {
    task_id: Type.Optional(Ulid()),
    identity: Type.Optional(KvKey()),
    winner_id: Type.String({ minLength: 1, maxLength: 2048, pattern: "^[\\x21-\\x7e]+$" }),
    expires_at: TimestampMs({ description: "advisory; expiry is judged by the observer's monotonic clock" }),
    version: NonNegativeInt(),
    fencing_token: NonNegativeInt(),
    granted: Type.Integer({ minimum: 1, maximum: MAX_BATCH }),
    first: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: MAX_BATCH - 1,
        description:
          "a batch share: this lease grants replicas first..first+granted-1 of the task (default 0)",
      }),
    ),
    ts: Type.Optional(TimestampMs()),
  },
  { additionalProperties: false },
);
export type Lease = Static<typeof Lease>;

export const EVENT_STATUSES = [
  "leased",
  "deployed",
  "failed",
  "preempted",
  "removed",
  "expired",
  "cloned",
  "retired",
  "unschedulable",
] as const;
export const EventStatus = StringEnum(EVENT_STATUSES);
export type EventStatus = Static<typeof EventStatus>;

/** The audit record of one step in a task's life (stream SCHEDULER_EVENTS). */
export const Event = Type.Object(
  {
    task_id: Ulid(),
    node_id: Type.Optional(NodeId()),
    status: EventStatus,
    kind: WorkloadKind,
    ns: Dns1123Label(),
    parent: Dns1123Subdomain(),
    pod: Type.Optional(Dns1123Subdomain()),
    ordinal: Type.Optional(NonNegativeInt32()),
    attempt: Type.Optional(NonNegativeInt32()),
    fencing_token: Type.Optional(NonNegativeInt()),
    details: Type.Optional(Type.String({ maxLength: 4096 })),
    reasons: Type.Optional(ReasonList()),
    ts: TimestampMs(),
  },
  { additionalProperties: false },
);
export type Event = Static<typeof Event>;

/** A clone a watchdog is waiting for: its slot is held, its pod has not heartbeated yet. */
export const PendingClone = Type.Object(
  {
    slot: NonNegativeInt32(),
    claim: Type.String({
      minLength: 1,
      maxLength: 253,
      pattern: "^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$",
      description: "who holds the slot: the clone's task id (ULID) or a pod name",
    }),
    age_ms: NonNegativeInt({
      description: "how long the sender has known it (relative, so skew does not matter)",
    }),
  },
  { additionalProperties: false },
);
export type PendingClone = Static<typeof PendingClone>;

/**
 * A watchdog's presence and health, sent every interval on its Deployment's
 * subject. Besides health it carries what its peers' replica logic counts
 * (DESIGN §4): the object revision and template it follows, its clone slot,
 * a farewell flag, and the clones it waits for.
 */
export const Heartbeat = Type.Object(
  {
    pod: Dns1123Subdomain(),
    node: NodeId(),
    ns: Dns1123Label(),
    parent: Dns1123Subdomain(),
    generation: NonNegativeInt(),
    healthy: Type.Boolean(),
    ready: Type.Boolean(),
    task_id: Type.Optional(Ulid()),
    started_at: TimestampMs({
      description: "when the pod started (sender's clock); the newest retire first",
    }),
    spec_revision: NonNegativeInt({
      description: "KV revision of the Deployment object the sender has seen",
    }),
    template_hash: Type.String({
      minLength: 1,
      maxLength: 128,
      pattern: "^[A-Za-z0-9_-]+$",
      description: "template hash the sender's pod was rendered from",
    }),
    slot: Type.Union([NonNegativeInt32(), Type.Null()], { description: "clone slot held, null when none" }),
    retiring: Type.Boolean({ description: "a farewell: do not count the sender from now on" }),
    pending: Type.Array(PendingClone, { maxItems: 1024 }),
    seq: Type.Optional(NonNegativeInt()),
    ts: TimestampMs(),
  },
  { additionalProperties: false },
);
export type Heartbeat = Static<typeof Heartbeat>;

export const NodeResources = Type.Object(
  {
    cpu_millis: NonNegativeInt(),
    memory_bytes: NonNegativeInt(),
    pods: NonNegativeInt32(),
  },
  { additionalProperties: false },
);
export type NodeResources = Static<typeof NodeResources>;

/** What a node agent publishes about itself (bucket beemesh-nodes). */
export const NodeStatus = Type.Object(
  {
    node_id: NodeId(),
    capacity: NodeResources,
    allocatable: NodeResources,
    used: NodeResources,
    labels: StringMap(),
    taints: Type.Array(Taint, { maxItems: 64 }),
    shards: Type.Array(NonNegativeInt32(), { maxItems: 65536, uniqueItems: true }),
    last_seen: TimestampMs(),
  },
  { additionalProperties: false },
);
export type NodeStatus = Static<typeof NodeStatus>;

export const ProviderState = StringEnum(["starting", "running", "failed", "stopped"] as const);
export type ProviderState = Static<typeof ProviderState>;

/** Which node runs which pod of which workload (bucket beemesh-providers, refreshed with a TTL). */
export const ProviderRecord = Type.Object(
  {
    ns: Dns1123Label(),
    kind: WorkloadKind,
    parent: Dns1123Subdomain(),
    pod: Dns1123Subdomain(),
    node_id: NodeId(),
    task_id: Ulid(),
    fencing_token: NonNegativeInt(),
    generation: NonNegativeInt(),
    ordinal: Type.Optional(NonNegativeInt32()),
    state: ProviderState,
    ts: TimestampMs(),
  },
  { additionalProperties: false },
);
export type ProviderRecord = Static<typeof ProviderRecord>;

/** A request to one node agent to remove a pod (retire, preempt, delete). */
export const RemoveRequest = Type.Object(
  {
    ns: Dns1123Label(),
    kind: WorkloadKind,
    parent: Dns1123Subdomain(),
    pod: Dns1123Subdomain(),
    task_id: Type.Optional(Ulid()),
    fencing_token: Type.Optional(NonNegativeInt()),
    reason: StringEnum(["retire", "preempt", "delete", "scale-down", "update"] as const),
    ts: TimestampMs(),
  },
  { additionalProperties: false },
);
export type RemoveRequest = Static<typeof RemoveRequest>;

export const SPIFFE_ID_PATTERN = "^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$";

export const SignatureAlg = StringEnum(["ES256"] as const);
export type SignatureAlg = Static<typeof SignatureAlg>;

export const Signature = Type.Object(
  {
    spiffe_id: Type.String({
      minLength: 10,
      maxLength: 2048,
      pattern: SPIFFE_ID_PATTERN,
      errorMessage: "must be a SPIFFE ID: spiffe://<trust domain>/<path>",
    }),
    cert: Base64(16384, { description: "the signer's X.509-SVID, DER, base64" }),
    alg: SignatureAlg,
    value: Base64(1024, { description: "signature over signingBytes(), base64" }),
  },
  { additionalProperties: false },
);
export type Signature = Static<typeof Signature>;

export const MESSAGE_TYPE_PATTERN = "^[A-Z][A-Za-z0-9]{0,63}$";

/**
 * Every message on the bus. `payload` is checked by the parser that `type`
 * names; the signature covers type, subject, payload, nonce, ts and spiffe_id
 * (see canonical.ts signingBytes).
 */
export const Envelope = Type.Object(
  {
    type: Type.String({
      pattern: MESSAGE_TYPE_PATTERN,
      errorMessage: "must be a message type name like Task",
    }),
    payload: Type.Unknown(),
    sig: Signature,
    nonce: Nonce(),
    ts: TimestampMs(),
  },
  { additionalProperties: false },
);
export type Envelope = Static<typeof Envelope>;
