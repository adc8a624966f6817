// Deterministic bid score in [0, 1000] (DESIGN §3 step 2).
//
//   score = round(1000 * (wLeast*L + wSpread*S + wHints*H + wTaints*T) / (wLeast + wSpread + wHints + wTaints))
//
// L  least-allocated after placement: (cpuWeight * freeCpu + memWeight * freeMem) / (cpuWeight + memWeight),
//    each free fraction = (allocatable - used - request) / allocatable, clamped to [0, 1].
// S  spread: 1 / (1 + n), n = pods of the same ns/parent already on the node (reservations included),
//    so each replica already here costs more, and no count ever ties with a smaller one.
// H  hints: matched hint weight / total hint weight (1 when the task has no hints). Hints are
//    `node-label/<key>: <value>` (weight 1 each) and `node: <node_id>` (weight 1); others are ignored.
// T  soft taints: 1 / (1 + untolerated PreferNoSchedule taints on the node).
//
// Defaults: wLeast 4, wSpread 3, wHints 2, wTaints 1; cpuWeight = memWeight = 1. Equal scores are
// broken elsewhere by tieBreak(task_id, node_id) (hash.ts), never by the node's own claim.
import { untoleratedSoftTaints, usedResources } from "./fit.js";
import type { NodeView, PlacementTask } from "./types.js";

export interface ScoreWeights {
  least: number;
  spread: number;
  hints: number;
  taints: number;
  cpu: number;
  memory: number;
}

export const DEFAULT_SCORE_WEIGHTS: Readonly<ScoreWeights> = {
  least: 4,
  spread: 3,
  hints: 2,
  taints: 1,
  cpu: 1,
  memory: 1,
};

export const MAX_SCORE = 1000;
export const NODE_LABEL_HINT_PREFIX = "node-label/";
export const NODE_HINT = "node";

export interface ScoreBreakdown {
  score: number;
  leastAllocated: number;
  spread: number;
  hints: number;
  taints: number;
}

function freeFraction(allocatable: number, used: number, request: number): number {
  if (allocatable <= 0) return 0;
  return Math.min(1, Math.max(0, (allocatable - used - request) / allocatable));
}

/** Fraction of the task's hints the node satisfies (1 when there are none). */
export function hintsFactor(task: PlacementTask, node: NodeView): number {
  let total = 0;
  let matched = 0;
  for (const [key, value] of Object.entries(task.hints ?? {})) {
    if (key.startsWith(NODE_LABEL_HINT_PREFIX)) {
      total += 1;
      if (node.labels[key.slice(NODE_LABEL_HINT_PREFIX.length)] === value) matched += 1;
    } else if (key === NODE_HINT) {
      total += 1;
      if (node.node_id === value) matched += 1;
    }
  }
  return total === 0 ? 1 : matched / total;
}

/** 1 / (1 + soft taints the task does not tolerate). */
export function softTaintFactor(task: PlacementTask, node: NodeView): number {
  return 1 / (1 + untoleratedSoftTaints(node.taints, task.tolerations).length);
}

/**
 * Score of placing `task` on `node` as it is (call it on the view with victims removed when
 * the bid preempts). Does not check fit.
 */
export function scoreTask(
  task: PlacementTask,
  node: NodeView,
  weights: Readonly<ScoreWeights> = DEFAULT_SCORE_WEIGHTS,
): ScoreBreakdown {
  const used = usedResources(node.pods);
  const cpuFree = freeFraction(node.allocatable.cpu_millis, used.cpu_millis, task.reqs.cpu_millis);
  const memFree = freeFraction(node.allocatable.memory_bytes, used.memory_bytes, task.reqs.memory_bytes);
  const resourceWeight = weights.cpu + weights.memory;
  const leastAllocated =
    resourceWeight > 0 ? (weights.cpu * cpuFree + weights.memory * memFree) / resourceWeight : 0;

  const siblings = node.pods.filter((p) => p.ns === task.ns && p.parent === task.parent).length;
  const spread = 1 / (1 + siblings);
  const hints = hintsFactor(task, node);
  const taints = softTaintFactor(task, node);

  const totalWeight = weights.least + weights.spread + weights.hints + weights.taints;
  const weighted =
    weights.least * leastAllocated +
    weights.spread * spread +
    weights.hints * hints +
    weights.taints * taints;
  const raw = totalWeight > 0 ? weighted / totalWeight : 0;
  const score = Math.min(MAX_SCORE, Math.max(0, Math.round(MAX_SCORE * raw)));
  return { score, leastAllocated, spread, hints, taints };
}
