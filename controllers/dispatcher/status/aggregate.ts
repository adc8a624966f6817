// status of a workload from what the mesh reports about its pods (provider
// records, heartbeats) and what the fan-out recorded. Pure: the caller passes
// the pods it considers alive and the time for a changed condition.
import {
  canonicalJson,
  selectorToString,
  type Condition,
  type Workload,
  type WorkloadStatus,
} from "../../../protocol/index.js";

/** One pod as the status sees it. */
export interface PodView {
  readonly pod: string;
  readonly generation: number;
  readonly running: boolean;
  readonly ready: boolean;
}

/** The part of the dispatch record the status needs. */
export interface DispatchedView {
  readonly uid: string;
  readonly generation: number;
  readonly template_generation: number;
  readonly replicas: number;
  readonly next: number;
}

export interface StatusInputs {
  readonly workload: Workload;
  readonly pods: readonly PodView[];
  readonly dispatched: DispatchedView | undefined;
  /** RFC 3339 time stamped on a condition whose status changes. */
  readonly nowIso: string;
}

export const CONDITION = { available: "Available", progressing: "Progressing" } as const;

/** An int-or-percent against a total, rounded as Kubernetes does (down for maxUnavailable). */
export function resolveIntOrPercent(
  value: number | string | undefined,
  total: number,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value === "number") return value;
  const m = /^(\d+)%$/.exec(value);
  if (!m) return fallback;
  return Math.floor((Number(m[1]) * total) / 100);
}

/** Ready replicas a workload needs to be Available: spec - maxUnavailable, or a Raft quorum. */
export function minAvailable(w: Workload): number {
  const desired = w.spec.replicas ?? 1;
  if (w.kind === "BeemeshStatefulSet") return desired === 0 ? 0 : Math.floor(desired / 2) + 1;
  const unavailable = resolveIntOrPercent(w.spec.strategy?.rollingUpdate?.maxUnavailable, desired, 0);
  return Math.max(0, desired - unavailable);
}

function condition(
  previous: readonly Condition[] | undefined,
  next: Omit<Condition, "lastTransitionTime">,
  nowIso: string,
): Condition {
  const before = previous?.find((c) => c.type === next.type);
  const lastTransitionTime =
    before && before.status === next.status && before.lastTransitionTime ? before.lastTransitionTime : nowIso;
  return { ...next, lastTransitionTime };
}

export function computeStatus(input: StatusInputs): WorkloadStatus {
  const w = input.workload;
  const generation = w.metadata.generation ?? 1;
  const desired = w.spec.replicas ?? 1;
  const previous = w.status;
  const d = input.dispatched && input.dispatched.uid === w.metadata.uid ? input.dispatched : undefined;
  const running = input.pods.filter((p) => p.running);
  const replicas = running.length;
  const readyReplicas = running.filter((p) => p.ready).length;
  const updatedReplicas = d ? running.filter((p) => p.generation >= d.template_generation).length : 0;
  const observedGeneration =
    d && d.next >= d.replicas ? Math.min(d.generation, generation) : previous?.observedGeneration;
  const need = minAvailable(w);
  const available = readyReplicas >= need;
  const caughtUp = observedGeneration === generation;
  const complete = caughtUp && updatedReplicas >= desired && readyReplicas >= desired && replicas <= desired;
  const conditions: Condition[] = [
    condition(
      previous?.conditions,
      {
        type: CONDITION.available,
        status: available ? "True" : "False",
        observedGeneration: generation,
        reason: available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
        message: `${readyReplicas} of ${desired} replicas ready, ${need} needed`,
      },
      input.nowIso,
    ),
    condition(
      previous?.conditions,
      {
        type: CONDITION.progressing,
        status: "True",
        observedGeneration: generation,
        reason: !caughtUp ? "NewGenerationPending" : complete ? "NewReplicasAvailable" : "ReplicasUpdating",
        message: !caughtUp
          ? `generation ${generation} is not fully dispatched yet`
          : complete
            ? `${w.kind === "BeemeshStatefulSet" ? "BeemeshStatefulSet" : "BeemeshDeployment"} "${w.metadata.name ?? ""}" has its replicas on the current template`
            : `${updatedReplicas} of ${desired} replicas updated, ${readyReplicas} ready, ${replicas} running`,
      },
      input.nowIso,
    ),
  ];
  let selector: string | undefined;
  try {
    selector = selectorToString(w.spec.selector);
  } catch {
    selector = previous?.selector;
  }
  return {
    replicas,
    readyReplicas,
    updatedReplicas,
    ...(observedGeneration !== undefined ? { observedGeneration } : {}),
    ...(selector !== undefined ? { selector } : {}),
    conditions,
  };
}

/** Whether two statuses are the same document (so no write is needed). */
export function sameStatus(a: WorkloadStatus | undefined, b: WorkloadStatus | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return canonicalJson(a) === canonicalJson(b);
}
