// Preemption planning (DESIGN §3 step 5): which lower-priority pods on this
// node, once evicted, let a task fit that does not fit now.
//
// Candidates are preemptible pods of strictly lower priority, taken lowest
// priority first, then newest first (least work lost), then by pod name. They
// are added one by one until the task fits; then every victim is offered a
// reprieve in reverse order (highest priority first) and kept running if the
// task still fits without evicting it. The result is irreducible (no victim
// can be spared), which is what "minimal" means here: the minimum-cardinality
// set is a knapsack problem and not worth it for one node.
import { checkFit, RESOLVABLE_BY_EVICTION } from "./fit.js";
import type { NodeView, PlacementTask, PodOnNode } from "./types.js";

function without(node: NodeView, victims: readonly PodOnNode[]): NodeView {
  const gone = new Set(victims);
  return { ...node, pods: node.pods.filter((p) => !gone.has(p)) };
}

/** Order in which pods are considered for eviction. */
export function evictionOrder(a: PodOnNode, b: PodOnNode): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (a.started_at_ms !== b.started_at_ms) return b.started_at_ms - a.started_at_ms;
  return a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0;
}

/**
 * The victims whose eviction makes `task` fit on `node`, or null when no set of
 * lower-priority pods would (or the task does not need preemption: it fits).
 */
export function planPreemption(task: PlacementTask, node: NodeView): PodOnNode[] | null {
  const initial = checkFit(task, node);
  if (initial.fit) return null;
  if (initial.reasons.some((r) => !RESOLVABLE_BY_EVICTION.has(r.code))) return null;

  const candidates = node.pods.filter((p) => p.preemptible && p.priority < task.priority).sort(evictionOrder);
  const victims: PodOnNode[] = [];
  let fits = false;
  for (const candidate of candidates) {
    victims.push(candidate);
    if (checkFit(task, without(node, victims)).fit) {
      fits = true;
      break;
    }
  }
  if (!fits) return null;

  for (const victim of [...victims].reverse()) {
    const spared = victims.filter((v) => v !== victim);
    if (checkFit(task, without(node, spared)).fit) victims.splice(victims.indexOf(victim), 1);
  }
  return victims;
}

export { without as withoutPods };
