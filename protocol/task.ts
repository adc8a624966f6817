// Reading a Task's batch (DESIGN §3.6) the same way everywhere.
import type { Task } from "./schema/messages.js";

/** How many replicas a Task stands for: its ordinals, else its count, else 1. */
export function taskReplicaCount(task: Pick<Task, "count" | "ordinal" | "ordinals">): number {
  if (task.ordinals !== undefined) return task.ordinals.length;
  if (task.ordinal !== undefined) return 1;
  return task.count ?? 1;
}

/** The StatefulSet ordinals a Task places, in order; empty for a Deployment task. */
export function taskOrdinals(task: Pick<Task, "ordinal" | "ordinals">): number[] {
  if (task.ordinals !== undefined) return [...task.ordinals];
  return task.ordinal !== undefined ? [task.ordinal] : [];
}
