// Per-message authorization (DESIGN §5, defense in depth over NATS
// permissions): which SPIFFE IDs may send which message types on which
// subjects. A table of rules, each a subject family, the message types it
// covers and a small authorizer function (go-spiffe's authorizeId style).
// Pure: the payload arrives unparsed, so every field is read defensively.
import type { Principal, SpiffeId } from "../../identity/spiffe-id.js";
import { principalOf } from "../../identity/spiffe-id.js";
import { nameToken } from "../subjects.js";

export type SubjectFamily =
  "tasks" | "proposals" | "leases" | "events" | "watchdog" | "raft" | "node" | "inbox";

export interface AuthzInput {
  readonly sender: SpiffeId;
  readonly type: string;
  readonly subject: string;
  /** As received; authorizers must not trust its shape. */
  readonly payload: unknown;
}

export interface AuthzContext extends AuthzInput {
  readonly principal: Principal;
  readonly family: SubjectFamily;
  /** Subject tokens after the prefix, e.g. ["scheduler", "proposals", "<taskId>"]. */
  readonly tokens: readonly string[];
}

export type AuthzDecision = { readonly allow: true } | { readonly allow: false; readonly why: string };
export type Authorizer = (ctx: AuthzContext) => AuthzDecision;

export interface AuthzRule {
  readonly family: SubjectFamily;
  /** Message types this rule covers; "*" for any (raft RPCs, node verbs, replies). */
  readonly types: readonly string[] | "*";
  readonly authorize: Authorizer;
}

const ALLOW: AuthzDecision = { allow: true };
const deny = (why: string): AuthzDecision => ({ allow: false, why });

/** Reads a string field of an unparsed payload; undefined when absent or not a string. */
export function field(payload: unknown, name: string): string | undefined {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return undefined;
  if (!Object.prototype.hasOwnProperty.call(payload, name)) return undefined;
  const v = (payload as Record<string, unknown>)[name];
  return typeof v === "string" ? v : undefined;
}

const hasField = (payload: unknown, name: string): boolean =>
  typeof payload === "object" && payload !== null && Object.prototype.hasOwnProperty.call(payload, name);

// ------------------------------------------------------------ authorizers ---

export function anyOf(...authorizers: Authorizer[]): Authorizer {
  return (ctx) => {
    const whys: string[] = [];
    for (const a of authorizers) {
      const d = a(ctx);
      if (d.allow) return d;
      whys.push(d.why);
    }
    return deny(whys.join("; "));
  };
}

export function allOf(...authorizers: Authorizer[]): Authorizer {
  return (ctx) => {
    for (const a of authorizers) {
      const d = a(ctx);
      if (!d.allow) return d;
    }
    return ALLOW;
  };
}

/** A controller SVID /controller/<name>/<instance>. */
export const controller =
  (name: string): Authorizer =>
  ({ principal }) =>
    principal.kind === "controller" && principal.name === name ? ALLOW : deny(`not a ${name} controller`);

/** A person's SVID /user/<name> (beemeshctl). */
export const user: Authorizer = ({ principal }) => (principal.kind === "user" ? ALLOW : deny("not a user"));

/** Any verified sender of the trust domain (replies: the requester checks more). */
export const anySender: Authorizer = () => ALLOW;

/** A node SVID /node/<id> whose payload field names itself (a node bids only as itself). */
export const nodeAsItself =
  (payloadField: string, required = true): Authorizer =>
  ({ principal, payload }) => {
    if (principal.kind !== "node") return deny("not a node");
    if (!required && !hasField(payload, payloadField)) return ALLOW;
    const claimed = field(payload, payloadField);
    return claimed === principal.nodeId
      ? ALLOW
      : deny(`node ${principal.nodeId} sent ${payloadField}=${String(claimed)}`);
  };

const sameKind = (workloadKind: string, kind: string | undefined): boolean =>
  kind !== undefined && workloadKind.toLowerCase() === kind.toLowerCase();

/** A workload SVID /ns/<ns>/<kind>/<parent>/<pod> acting for its own ns and parent (payload ns/parent). */
export const workloadOfOwnParent: Authorizer = ({ principal, payload }) => {
  if (principal.kind !== "workload") return deny("not a workload");
  const ns = field(payload, "ns");
  const parent = field(payload, "parent");
  if (ns !== principal.ns || parent !== principal.parent) {
    return deny(`workload of ${principal.ns}/${principal.parent} sent for ${String(ns)}/${String(parent)}`);
  }
  if (hasField(payload, "kind") && !sameKind(principal.workloadKind, field(payload, "kind"))) {
    return deny(`workload of kind ${principal.workloadKind} sent kind ${String(field(payload, "kind"))}`);
  }
  return ALLOW;
};

/**
 * A lease-keeper republishes a Task nobody could take (no bid, or every
 * bidder failed) with a higher attempt; it never introduces a first attempt.
 */
export const keeperRepublish: Authorizer = allOf(controller("lease-keeper"), ({ payload }) => {
  const attempt =
    typeof payload === "object" && payload !== null
      ? (payload as Record<string, unknown>)["attempt"]
      : undefined;
  return typeof attempt === "number" && attempt >= 1
    ? ALLOW
    : deny(`a lease-keeper only republishes (attempt >= 1), got attempt=${String(attempt)}`);
});

/** A workload may publish clone Tasks, and only for its own parent. */
export const workloadClone: Authorizer = allOf(workloadOfOwnParent, ({ payload }) =>
  field(payload, "origin") === "clone" ? ALLOW : deny("a workload may publish clone tasks only"),
);

/** The workload's own pod (retire itself, heartbeat as itself). */
export const workloadOwnPod: Authorizer = allOf(workloadOfOwnParent, ({ principal, payload }) =>
  principal.kind === "workload" && field(payload, "pod") === principal.pod
    ? ALLOW
    : deny(
        `workload pod ${principal.kind === "workload" ? principal.pod : "?"} sent pod=${String(field(payload, "pod"))}`,
      ),
);

/**
 * An object name as it appears in one subject token, by the very mapping the
 * senders' subjects are built with (subjects.ts nameToken: "a.b" -> "a_b").
 * Undefined for a name no subject can carry; never throws.
 */
export const asSubjectToken = (name: string): string | undefined => {
  try {
    return nameToken(name);
  } catch {
    return undefined;
  }
};

/** Subject token i must equal payload field f (a message cannot claim another subject's object). */
export const subjectMatchesPayload =
  (bindings: ReadonlyArray<readonly [tokenIndex: number, payloadField: string]>): Authorizer =>
  ({ tokens, payload }) => {
    for (const [i, f] of bindings) {
      const token = tokens[i];
      const value = field(payload, f);
      if (token === undefined || value === undefined || asSubjectToken(value) !== token) {
        return deny(`subject token ${String(token)} does not match ${f}=${String(field(payload, f))}`);
      }
    }
    return ALLOW;
  };

/** The subject's token count, so an authorizer's token indices mean what they say. */
export const subjectLength =
  (n: number): Authorizer =>
  ({ tokens }) =>
    tokens.length === n ? ALLOW : deny(`subject has ${tokens.length} tokens after the prefix, expected ${n}`);

/** A workload SVID of the StatefulSet the raft subject names: raft.<ns>.<statefulset>.<ordinal>. */
export const raftPeer: Authorizer = ({ principal, tokens }) => {
  if (principal.kind !== "workload") return deny("not a workload");
  if (!sameKind(principal.workloadKind, "statefulset")) return deny("not a StatefulSet member");
  return principal.ns === tokens[1] && asSubjectToken(principal.parent) === tokens[2]
    ? ALLOW
    : deny(
        `member of ${principal.ns}/${principal.parent} on raft subject of ${String(tokens[1])}/${String(tokens[2])}`,
      );
};

// ------------------------------------------------------------ the table ---

export const DEFAULT_RULES: readonly AuthzRule[] = [
  // Only dispatchers and users publish new workloads; workloads publish clones for their own
  // parent; lease-keepers republish tasks that found no taker.
  {
    family: "tasks",
    types: ["Task"],
    authorize: allOf(subjectLength(3), anyOf(controller("dispatcher"), user, workloadClone, keeperRepublish)),
  },
  // Only /node/<id> bids, only as itself, and only on the proposals subject of that task.
  {
    family: "proposals",
    types: ["Bid"],
    authorize: allOf(subjectLength(3), nodeAsItself("node_id"), subjectMatchesPayload([[2, "task_id"]])),
  },
  // Only lease-keepers award.
  { family: "leases", types: ["Lease"], authorize: allOf(subjectLength(3), controller("lease-keeper")) },
  // events.<kind>.<ns>.<name>: nodes (as themselves), lease-keepers, dispatchers, workloads of that parent.
  {
    family: "events",
    types: ["Event"],
    authorize: allOf(
      subjectLength(5),
      subjectMatchesPayload([
        [3, "ns"],
        [4, "parent"],
      ]),
      anyOf(
        nodeAsItself("node_id", false),
        controller("lease-keeper"),
        controller("dispatcher"),
        workloadOfOwnParent,
      ),
    ),
  },
  // watchdog.<ns>.<deployment>: a pod of that Deployment, as itself.
  {
    family: "watchdog",
    types: ["Heartbeat"],
    authorize: allOf(
      subjectLength(3),
      subjectMatchesPayload([
        [1, "ns"],
        [2, "parent"],
      ]),
      workloadOwnPod,
    ),
  },
  { family: "raft", types: "*", authorize: allOf(subjectLength(4), raftPeer) },
  // node.<nodeId>.<verb>: removal by dispatchers, users, or a pod retiring itself.
  {
    family: "node",
    types: ["RemoveRequest"],
    authorize: allOf(subjectLength(3), anyOf(controller("dispatcher"), user, workloadOwnPod)),
  },
  { family: "node", types: "*", authorize: allOf(subjectLength(3), anyOf(controller("dispatcher"), user)) },
  { family: "inbox", types: "*", authorize: anySender },
];

const FAMILY_OF: Record<string, SubjectFamily> = {
  "scheduler.tasks": "tasks",
  "scheduler.proposals": "proposals",
  "scheduler.leases": "leases",
  "scheduler.events": "events",
};

/** The family of a subject and its tokens after the prefix; undefined outside the mesh's subjects. */
export function classifySubject(
  subject: string,
  prefix: string,
): { family: SubjectFamily; tokens: string[] } | undefined {
  if (subject.startsWith("_INBOX.")) return { family: "inbox", tokens: subject.split(".") };
  if (!subject.startsWith(`${prefix}.`)) return undefined;
  const tokens = subject.slice(prefix.length + 1).split(".");
  if (tokens.some((t) => t.length === 0)) return undefined;
  const [a, b] = tokens;
  const two = FAMILY_OF[`${a}.${b}`];
  if (two) return { family: two, tokens };
  if (a === "watchdog" || a === "raft" || a === "node") return { family: a, tokens };
  return undefined;
}

export interface AuthzOptions {
  prefix?: string;
  /** Replaces the table (tests, or controllers with their own subjects). */
  rules?: readonly AuthzRule[];
  /** Added in front of the table. */
  extraRules?: readonly AuthzRule[];
}

export type MessageAuthorizer = (input: AuthzInput) => AuthzDecision;

/** The first rule whose family and types match decides; no rule means deny. */
export function createAuthorizer(opts: AuthzOptions = {}): MessageAuthorizer {
  const prefix = opts.prefix ?? "beemesh";
  const rules = [...(opts.extraRules ?? []), ...(opts.rules ?? DEFAULT_RULES)];
  return (input) => {
    const where = classifySubject(input.subject, prefix);
    if (!where) return deny(`subject ${input.subject} is outside the mesh's subjects`);
    const rule = rules.find(
      (r) => r.family === where.family && (r.types === "*" || r.types.includes(input.type)),
    );
    if (!rule) return deny(`no rule lets anyone send ${input.type} on ${where.family} subjects`);
    return rule.authorize({
      ...input,
      principal: principalOf(input.sender),
      family: where.family,
      tokens: where.tokens,
    });
  };
}
