// Pure mapping between a pod's identity (task, lease) and the labels every
// runtime stores with it, so a restarted node agent can read them back.
import type { PodIdentity, ResourceLimits, WorkloadKind } from "./types.js";

export const LABEL = {
  taskId: "beemesh.io/task-id",
  parent: "beemesh.io/parent",
  ns: "beemesh.io/ns",
  kind: "beemesh.io/kind",
  ordinal: "beemesh.io/ordinal",
  generation: "beemesh.io/generation",
  fencingToken: "beemesh.io/fencing-token",
  cpuMillis: "beemesh.io/cpu-millis",
  memoryBytes: "beemesh.io/memory-bytes",
  managedBy: "app.kubernetes.io/managed-by",
} as const;

export const MANAGED_BY = "beemesh";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const UNSIGNED = /^(0|[1-9][0-9]*)$/;

export function isDnsLabel(s: string): boolean {
  return s.length <= 63 && DNS_LABEL.test(s);
}

/** An object name (a DNS-1123 subdomain, dots allowed) short enough for a label value. */
export function isNameLabelValue(s: string): boolean {
  return s.length <= 63 && DNS_SUBDOMAIN.test(s);
}

export function isLabelValue(s: string): boolean {
  return s.length <= 63 && LABEL_VALUE.test(s);
}

export function isWorkloadKind(s: string): s is WorkloadKind {
  return s === "Deployment" || s === "StatefulSet";
}

function isUnsigned(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** Problems with an identity, empty when it can be written as labels. */
export function identityProblems(identity: PodIdentity): string[] {
  const problems: string[] = [];
  if (identity.taskId.length === 0 || !isLabelValue(identity.taskId))
    problems.push("taskId is not a label value");
  if (!isDnsLabel(identity.ns)) problems.push("ns is not a DNS-1123 label");
  // Workload names may have dots ("web.v2"); the label value holds at most 63 characters.
  if (!isNameLabelValue(identity.parent))
    problems.push("parent is not a DNS-1123 subdomain of at most 63 characters");
  if (!isWorkloadKind(identity.kind)) problems.push("kind must be Deployment or StatefulSet");
  if (identity.ordinal !== undefined && !isUnsigned(identity.ordinal)) problems.push("ordinal must be >= 0");
  if (identity.kind === "StatefulSet" && identity.ordinal === undefined)
    problems.push("StatefulSet needs an ordinal");
  if (!isUnsigned(identity.generation)) problems.push("generation must be an integer >= 0");
  if (!isUnsigned(identity.fencingToken)) problems.push("fencingToken must be an integer >= 0");
  return problems;
}

export function limitsProblems(limits: ResourceLimits): string[] {
  const problems: string[] = [];
  if (!isUnsigned(limits.cpuMillis)) problems.push("limits.cpuMillis must be an integer >= 0");
  if (!isUnsigned(limits.memoryBytes)) problems.push("limits.memoryBytes must be an integer >= 0");
  return problems;
}

export function identityLabels(identity: PodIdentity, limits: ResourceLimits): Record<string, string> {
  const labels: Record<string, string> = {
    [LABEL.taskId]: identity.taskId,
    [LABEL.parent]: identity.parent,
    [LABEL.ns]: identity.ns,
    [LABEL.kind]: identity.kind,
    [LABEL.generation]: String(identity.generation),
    [LABEL.fencingToken]: String(identity.fencingToken),
    [LABEL.cpuMillis]: String(limits.cpuMillis),
    [LABEL.memoryBytes]: String(limits.memoryBytes),
    [LABEL.managedBy]: MANAGED_BY,
  };
  if (identity.ordinal !== undefined) labels[LABEL.ordinal] = String(identity.ordinal);
  return labels;
}

export type LabelParse =
  { ok: true; identity: PodIdentity; limits: ResourceLimits } | { ok: false; reason: string };

class LabelProblem extends Error {}

/** Reads back what identityLabels wrote; anything else is reported, not guessed. */
export function parseIdentityLabels(labels: Readonly<Record<string, string>> | null | undefined): LabelParse {
  if (!labels) return { ok: false, reason: "no labels" };
  const text = (key: string): string => {
    const raw = labels[key];
    if (raw === undefined || raw === "") throw new LabelProblem(`missing ${key}`);
    return raw;
  };
  const unsigned = (key: string): number => {
    const raw = text(key);
    if (!UNSIGNED.test(raw) || !Number.isSafeInteger(Number(raw))) {
      throw new LabelProblem(`${key} is not an unsigned integer`);
    }
    return Number(raw);
  };
  try {
    const kind = text(LABEL.kind);
    if (!isWorkloadKind(kind)) throw new LabelProblem(`${LABEL.kind} must be Deployment or StatefulSet`);
    const identity: PodIdentity = {
      taskId: text(LABEL.taskId),
      ns: text(LABEL.ns),
      parent: text(LABEL.parent),
      kind,
      generation: unsigned(LABEL.generation),
      fencingToken: unsigned(LABEL.fencingToken),
    };
    if (labels[LABEL.ordinal] !== undefined) identity.ordinal = unsigned(LABEL.ordinal);
    const limits: ResourceLimits = {
      cpuMillis: unsigned(LABEL.cpuMillis),
      memoryBytes: unsigned(LABEL.memoryBytes),
    };
    const problems = identityProblems(identity);
    if (problems.length > 0) return { ok: false, reason: problems.join("; ") };
    return { ok: true, identity, limits };
  } catch (err) {
    if (err instanceof LabelProblem) return { ok: false, reason: err.message };
    throw err;
  }
}
