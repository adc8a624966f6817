// NATS subjects, stream and KV bucket names (DESIGN §2). Every variable part
// becomes one subject token, so it is checked: no dots, wildcards or spaces.
// Object names may be DNS-1123 subdomains with dots; nameToken() maps them to
// one token reversibly ('.' -> '_', which DNS names never contain).

export const DEFAULT_PREFIX = "beemesh";

export const STREAMS = { tasks: "SCHEDULER_TASKS", events: "SCHEDULER_EVENTS" } as const;

export const BUCKETS = {
  objects: "beemesh-objects",
  manifests: "beemesh-manifests",
  leases: "beemesh-leases",
  nodes: "beemesh-nodes",
  providers: "beemesh-providers",
} as const;
export type BucketName = (typeof BUCKETS)[keyof typeof BUCKETS];

/** Verbs a node agent answers on `<prefix>.node.<nodeId>.<verb>`. */
export const NODE_VERBS = { remove: "remove", logs: "logs", status: "status" } as const;
export type NodeVerb = (typeof NODE_VERBS)[keyof typeof NODE_VERBS];

export class SubjectError extends Error {
  override readonly name = "SubjectError";
}

// Printable ASCII without space, '.', '*', '>' (NATS token rules, kept strict).
const TOKEN = /^[\x21-\x29\x2b-\x2d\x2f-\x3d\x3f-\x7e]+$/;
const MAX_TOKEN = 255;

/** Problem with a subject token, or undefined when it is usable. */
export function tokenProblem(token: string): string | undefined {
  if (typeof token !== "string" || token.length === 0) return "must be a non-empty string";
  if (token.length > MAX_TOKEN) return `must be at most ${MAX_TOKEN} characters`;
  if (!TOKEN.test(token)) return "may not contain '.', '*', '>', whitespace or non-ASCII characters";
  return undefined;
}

export function isValidToken(token: string): boolean {
  return tokenProblem(token) === undefined;
}

/** The token, or a SubjectError naming what is wrong with it. */
export function token(value: string, what = "token"): string {
  const problem = tokenProblem(value);
  if (problem !== undefined)
    throw new SubjectError(`protocol: subject ${what} ${JSON.stringify(value)} ${problem}`);
  return value;
}

/** A DNS-1123 subdomain as one subject token ("a.b" -> "a_b"). */
export function nameToken(name: string): string {
  return token(name.replace(/\./g, "_"), "name");
}

/** The inverse of nameToken. */
export function nameFromToken(tok: string): string {
  return tok.replace(/_/g, ".");
}

/** Workload kinds as subject tokens. */
export const KIND_TOKENS = { Deployment: "deployment", StatefulSet: "statefulset" } as const;
export type KindToken = (typeof KIND_TOKENS)[keyof typeof KIND_TOKENS];

/** A prefix is one or more tokens ("beemesh", "region1.beemesh"). */
export function prefixProblem(prefix: string): string | undefined {
  if (typeof prefix !== "string" || prefix.length === 0) return "must be a non-empty string";
  for (const part of prefix.split(".")) {
    const p = tokenProblem(part);
    if (p !== undefined) return `token ${JSON.stringify(part)} ${p}`;
  }
  return undefined;
}

export interface Subjects {
  readonly prefix: string;
  /** Task for one shard. */
  tasks(shard: number): string;
  /** Every task shard (stream SCHEDULER_TASKS binds this). */
  readonly allTasks: string;
  proposals(taskId: string): string;
  readonly allProposals: string;
  leases(nodeId: string): string;
  events(kind: keyof typeof KIND_TOKENS, ns: string, name: string): string;
  /** Events filter; absent parts become wildcards. */
  eventsFilter(filter?: { kind?: keyof typeof KIND_TOKENS; ns?: string; name?: string }): string;
  /** Every event (stream SCHEDULER_EVENTS binds this). */
  readonly allEvents: string;
  watchdog(ns: string, deployment: string): string;
  raft(ns: string, statefulSet: string, ordinal: number): string;
  /** All members of one Raft group (`...<sts>.*`). */
  raftGroup(ns: string, statefulSet: string): string;
  node(nodeId: string, verb: string): string;
  /** Every verb of one node (`...node.<nodeId>.*`). */
  nodeAll(nodeId: string): string;
}

/** Subject builders under `prefix` (default "beemesh"). Throws SubjectError on a bad prefix or token. */
export function subjects(prefix: string = DEFAULT_PREFIX): Subjects {
  const problem = prefixProblem(prefix);
  if (problem !== undefined)
    throw new SubjectError(`protocol: subject prefix ${JSON.stringify(prefix)}: ${problem}`);
  const p = prefix;
  const ordinalToken = (ordinal: number) => {
    if (!Number.isSafeInteger(ordinal) || ordinal < 0)
      throw new SubjectError(`protocol: ordinal ${ordinal} is not a non-negative integer`);
    return String(ordinal);
  };
  const shardToken = (shard: number) => {
    if (!Number.isSafeInteger(shard) || shard < 0)
      throw new SubjectError(`protocol: shard ${shard} is not a non-negative integer`);
    return String(shard);
  };
  return {
    prefix: p,
    tasks: (shard) => `${p}.scheduler.tasks.${shardToken(shard)}`,
    allTasks: `${p}.scheduler.tasks.*`,
    proposals: (taskId) => `${p}.scheduler.proposals.${token(taskId, "task id")}`,
    allProposals: `${p}.scheduler.proposals.*`,
    leases: (nodeId) => `${p}.scheduler.leases.${token(nodeId, "node id")}`,
    events: (kind, ns, name) =>
      `${p}.scheduler.events.${KIND_TOKENS[kind]}.${token(ns, "namespace")}.${nameToken(name)}`,
    eventsFilter: (filter = {}) => {
      const kind = filter.kind ? KIND_TOKENS[filter.kind] : "*";
      const ns = filter.ns !== undefined ? token(filter.ns, "namespace") : "*";
      const name = filter.name !== undefined ? nameToken(filter.name) : "*";
      return `${p}.scheduler.events.${kind}.${ns}.${name}`;
    },
    allEvents: `${p}.scheduler.events.>`,
    watchdog: (ns, deployment) => `${p}.watchdog.${token(ns, "namespace")}.${nameToken(deployment)}`,
    raft: (ns, sts, ordinal) =>
      `${p}.raft.${token(ns, "namespace")}.${nameToken(sts)}.${ordinalToken(ordinal)}`,
    raftGroup: (ns, sts) => `${p}.raft.${token(ns, "namespace")}.${nameToken(sts)}.*`,
    node: (nodeId, verb) => `${p}.node.${token(nodeId, "node id")}.${token(verb, "verb")}`,
    nodeAll: (nodeId) => `${p}.node.${token(nodeId, "node id")}.*`,
  };
}

/**
 * The shard of a task among `shards`: FNV-1a (32 bit) of the task id's UTF-8
 * bytes, modulo `shards`. Stable across processes and versions; changing it
 * would strand tasks on shards nobody listens to.
 */
export function shardOf(taskId: string, shards: number): number {
  if (!Number.isSafeInteger(shards) || shards < 1)
    throw new RangeError(`protocol: shard count ${shards} must be a positive integer`);
  return fnv1a32(taskId) % shards;
}

export function fnv1a32(text: string): number {
  const bytes = new TextEncoder().encode(text);
  let hash = 0x811c9dc5;
  for (const b of bytes) {
    hash ^= b;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

const KV_TOKEN = /^[-/_=a-zA-Z0-9]+$/;

/** A KV key part: NATS KV allows only [-/_=a-zA-Z0-9] between the dots. */
function kvToken(value: string, what: string): string {
  if (typeof value !== "string" || !KV_TOKEN.test(value) || value.length > MAX_TOKEN) {
    throw new SubjectError(
      `protocol: KV key ${what} ${JSON.stringify(value)} must be 1 to ${MAX_TOKEN} characters of [-/_=a-zA-Z0-9]`,
    );
  }
  return value;
}

const kvName = (name: string) => kvToken(typeof name === "string" ? name.replace(/\./g, "_") : name, "name");

/** KV keys; names with dots go through the same mapping as nameToken. */
export const kvKeys = {
  /** beemesh-objects: `<plural>.<ns>.<name>`, e.g. `beemeshdeployments.default.web`. */
  object: (plural: string, ns: string, name: string) =>
    `${kvToken(plural, "resource")}.${kvToken(ns, "namespace")}.${kvName(name)}`,
  /** beemesh-manifests: content-addressed by the manifest's sha256. */
  manifest: (sha256: string) => {
    if (!/^[0-9a-f]{64}$/.test(sha256))
      throw new SubjectError(`protocol: manifest key ${JSON.stringify(sha256)} is not a sha256 hex digest`);
    return `sha256.${sha256}`;
  },
  /** beemesh-leases: the lease of one task. */
  taskLease: (taskId: string) => `task.${kvToken(taskId, "task id")}`,
  /** beemesh-leases: the identity lease of one StatefulSet ordinal (held by the Raft leader that clones it). */
  identityLease: (ns: string, statefulSet: string, ordinal: number) => {
    if (!Number.isSafeInteger(ordinal) || ordinal < 0)
      throw new SubjectError(`protocol: ordinal ${ordinal} is not a non-negative integer`);
    return `identity.${kvToken(ns, "namespace")}.${kvName(statefulSet)}.${ordinal}`;
  },
  /** beemesh-leases: a clone slot of a Deployment, bounding clones during a partition heal. */
  cloneSlot: (ns: string, deployment: string, generation: number, slot: number) => {
    for (const n of [generation, slot]) {
      if (!Number.isSafeInteger(n) || n < 0)
        throw new SubjectError(`protocol: clone slot part ${n} is not a non-negative integer`);
    }
    return `clone.${kvToken(ns, "namespace")}.${kvName(deployment)}.${generation}.${slot}`;
  },
  /** beemesh-nodes: one node's status. */
  node: (nodeId: string) => kvToken(nodeId, "node id"),
  /** beemesh-providers: `<kind>.<ns>.<parent>.<pod>`. */
  provider: (kind: keyof typeof KIND_TOKENS, ns: string, parent: string, pod: string) =>
    `${KIND_TOKENS[kind]}.${kvToken(ns, "namespace")}.${kvName(parent)}.${kvName(pod)}`,
} as const;
