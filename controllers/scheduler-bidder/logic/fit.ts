// Fit check of a task against one node (DESIGN §3 step 2). Every check runs,
// so a task that does not fit carries all its reasons into the Bid and, from
// there, into the lease-keeper's `unschedulable` event.
import type {
  LabelSelector,
  LabelSelectorRequirement,
  NodeView,
  PlacementTask,
  PodOnNode,
  PortRequest,
  Resources,
  Taint,
  Toleration,
} from "./types.js";

export type FitReasonCode =
  | "InvalidRequest"
  | "InsufficientCPU"
  | "InsufficientMemory"
  | "TooManyPods"
  | "HostPortConflict"
  | "NodeSelectorMismatch"
  | "UntoleratedTaint"
  | "PodAffinity"
  | "PodAntiAffinity";

export interface FitReason {
  code: FitReasonCode;
  message: string;
}

export interface FitResult {
  fit: boolean;
  reasons: FitReason[];
}

/** Reasons that evicting pods can cure; the others rule a node out for good. */
export const RESOLVABLE_BY_EVICTION: ReadonlySet<FitReasonCode> = new Set<FitReasonCode>([
  "InsufficientCPU",
  "InsufficientMemory",
  "TooManyPods",
  "HostPortConflict",
  "PodAntiAffinity",
]);

/** Reasons as the wire carries them: "Code: message". */
export function reasonStrings(reasons: readonly FitReason[]): string[] {
  return reasons.map((r) => `${r.code}: ${r.message}`);
}

/** Sum of what the pods charge against allocatable. */
export function usedResources(pods: readonly PodOnNode[]): Resources {
  const used: Resources = { cpu_millis: 0, memory_bytes: 0, pods: 0 };
  for (const p of pods) {
    used.cpu_millis += p.charge.cpu_millis;
    used.memory_bytes += p.charge.memory_bytes;
    used.pods += p.charge.pods;
  }
  return used;
}

/** Kubernetes toleration matching: effect, then key/operator/value. */
export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect !== undefined && t.effect !== taint.effect) return false;
  const operator = t.operator ?? "Equal";
  if (operator === "Exists") {
    // An empty key with Exists tolerates every taint (of the matching effect).
    return t.key === undefined || t.key === "" || t.key === taint.key;
  }
  return t.key === taint.key && (t.value ?? "") === (taint.value ?? "");
}

export function isTolerated(taint: Taint, tolerations: readonly Toleration[] = []): boolean {
  return tolerations.some((t) => tolerates(t, taint));
}

/** Hard taints (NoSchedule, NoExecute) the task does not tolerate. */
export function untoleratedHardTaints(
  taints: readonly Taint[],
  tolerations?: readonly Toleration[],
): Taint[] {
  return taints.filter((taint) => taint.effect !== "PreferNoSchedule" && !isTolerated(taint, tolerations));
}

/** Soft taints (PreferNoSchedule) the task does not tolerate; they only lower the score. */
export function untoleratedSoftTaints(
  taints: readonly Taint[],
  tolerations?: readonly Toleration[],
): Taint[] {
  return taints.filter((taint) => taint.effect === "PreferNoSchedule" && !isTolerated(taint, tolerations));
}

function requirementMatches(req: LabelSelectorRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, req.key);
  const value = labels[req.key];
  const values = req.values ?? [];
  switch (req.operator) {
    case "In":
      return has && value !== undefined && values.includes(value);
    case "NotIn":
      return !has || value === undefined || !values.includes(value);
    case "Exists":
      return has;
    case "DoesNotExist":
      return !has;
  }
}

/** metav1.LabelSelector semantics: matchLabels and matchExpressions ANDed; empty matches all. */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  return (selector.matchExpressions ?? []).every((req) => requirementMatches(req, labels));
}

/** Label every pod carries implicitly, so anti-affinity can name "replicas of my parent". */
export const PARENT_LABEL = "beemesh.io/parent";

/** A pod's labels plus the implicit parent label. */
export function effectiveLabels(p: PodOnNode): Record<string, string> {
  return { ...p.labels, [PARENT_LABEL]: p.parent };
}

function portKey(p: PortRequest): string {
  return `${p.protocol}/${p.port}`;
}

function validRequest(task: PlacementTask): string | null {
  const { cpu_millis, memory_bytes, ports } = task.reqs;
  if (!Number.isFinite(cpu_millis) || cpu_millis < 0)
    return `cpu_millis ${cpu_millis} is not a non-negative number`;
  if (!Number.isFinite(memory_bytes) || memory_bytes < 0)
    return `memory_bytes ${memory_bytes} is not a non-negative number`;
  const seen = new Set<string>();
  for (const p of ports) {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535)
      return `host port ${p.port} is out of range`;
    if (seen.has(portKey(p))) return `host port ${portKey(p)} is requested twice`;
    seen.add(portKey(p));
  }
  return null;
}

/** Does `task` fit on `node` as it is now (pods include pending reservations)? */
export function checkFit(task: PlacementTask, node: NodeView): FitResult {
  const reasons: FitReason[] = [];
  const invalid = validRequest(task);
  if (invalid !== null) return { fit: false, reasons: [{ code: "InvalidRequest", message: invalid }] };

  const used = usedResources(node.pods);
  const free: Resources = {
    cpu_millis: node.allocatable.cpu_millis - used.cpu_millis,
    memory_bytes: node.allocatable.memory_bytes - used.memory_bytes,
    pods: node.allocatable.pods - used.pods,
  };
  if (task.reqs.cpu_millis > free.cpu_millis) {
    reasons.push({
      code: "InsufficientCPU",
      message: `needs ${task.reqs.cpu_millis}m cpu, ${Math.max(0, free.cpu_millis)}m free`,
    });
  }
  if (task.reqs.memory_bytes > free.memory_bytes) {
    reasons.push({
      code: "InsufficientMemory",
      message: `needs ${task.reqs.memory_bytes} bytes of memory, ${Math.max(0, free.memory_bytes)} free`,
    });
  }
  if (free.pods < 1) {
    reasons.push({ code: "TooManyPods", message: `node runs its maximum of ${node.allocatable.pods} pods` });
  }

  const portsInUse = new Set(node.pods.flatMap((p) => p.ports.map(portKey)));
  const clashing = task.reqs.ports.map(portKey).filter((k) => portsInUse.has(k));
  if (clashing.length > 0) {
    reasons.push({ code: "HostPortConflict", message: `host ports in use: ${clashing.join(", ")}` });
  }

  const mismatched = Object.entries(task.node_selector ?? {})
    .filter(([k, v]) => node.labels[k] !== v)
    .map(([k, v]) => `${k}=${v}`);
  if (mismatched.length > 0) {
    reasons.push({ code: "NodeSelectorMismatch", message: `node lacks labels ${mismatched.join(", ")}` });
  }

  const hard = untoleratedHardTaints(node.taints, task.tolerations);
  if (hard.length > 0) {
    const names = hard.map((t) => `${t.key}${t.value !== undefined ? `=${t.value}` : ""}:${t.effect}`);
    reasons.push({ code: "UntoleratedTaint", message: `untolerated taints ${names.join(", ")}` });
  }

  const sameNs = node.pods.filter((p) => p.ns === task.ns);
  if (task.affinity !== undefined) {
    const selector = task.affinity;
    if (!sameNs.some((p) => selectorMatches(selector, effectiveLabels(p)))) {
      reasons.push({ code: "PodAffinity", message: "no pod on the node matches the affinity selector" });
    }
  }
  if (task.anti_affinity !== undefined) {
    const selector = task.anti_affinity;
    const clashingPods = sameNs
      .filter((p) => selectorMatches(selector, effectiveLabels(p)))
      .map((p) => p.pod);
    if (clashingPods.length > 0) {
      reasons.push({
        code: "PodAntiAffinity",
        message: `pods matching the anti-affinity selector run here: ${clashingPods.join(", ")}`,
      });
    }
  }

  return { fit: reasons.length === 0, reasons };
}
