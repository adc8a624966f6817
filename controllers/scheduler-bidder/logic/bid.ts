// What a node answers to a task: a fitting bid, a preempting bid naming its
// victims, or a non-fitting bid that carries the reasons.
import { checkFit, reasonStrings } from "./fit.js";
import { planPreemption, withoutPods } from "./preempt.js";
import { DEFAULT_SCORE_WEIGHTS, scoreTask } from "./score.js";
import type { ScoreWeights } from "./score.js";
import type { NodeView, PlacementTask, PodOnNode, Victim } from "./types.js";

export interface BidDecision {
  fit: boolean;
  score: number;
  reasons: string[];
  /** Set only on a preempting bid (fit false, victims of strictly lower priority). */
  victims?: Victim[];
  /** The victims' ledger keys, in the same order (a batch pod's task id is not unique on a node). */
  victimKeys?: string[];
}

export function toVictim(p: PodOnNode): Victim {
  return { ns: p.ns, pod: p.pod, task_id: p.task_id, priority: p.priority };
}

export interface EvaluateOptions {
  weights?: Readonly<ScoreWeights>;
  /** Whether this node offers preemption at all (default true). */
  preemption?: boolean;
}

export function evaluateTask(
  task: PlacementTask,
  node: NodeView,
  options: EvaluateOptions = {},
): BidDecision {
  const weights = options.weights ?? DEFAULT_SCORE_WEIGHTS;
  const fit = checkFit(task, node);
  if (fit.fit) return { fit: true, score: scoreTask(task, node, weights).score, reasons: [] };
  const reasons = reasonStrings(fit.reasons);
  if (options.preemption !== false) {
    const victims = planPreemption(task, node);
    if (victims !== null && victims.length > 0) {
      const score = scoreTask(task, withoutPods(node, victims), weights).score;
      return {
        fit: false,
        score,
        reasons,
        victims: victims.map(toVictim),
        victimKeys: victims.map((v) => v.key ?? v.task_id),
      };
    }
  }
  return { fit: false, score: 0, reasons };
}
