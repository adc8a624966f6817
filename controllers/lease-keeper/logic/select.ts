// Choosing the winning bid (DESIGN §3 steps 3 and 5).
//
// Fitting bids always beat preempting ones. Among fitting bids: highest score,
// then lowest tieBreak(task_id, node_id), then lowest node_id. A preempting
// bid is usable only when every victim has strictly lower priority than the
// task; among those: lowest highest-victim-priority, then fewest victims, then
// the fitting order. Excluded nodes (failed or let their lease expire) are skipped.
import { tieBreak } from "../../scheduler-bidder/logic/hash.js";
import type { HashFn } from "../../scheduler-bidder/logic/hash.js";
import type { LeaseBid, LeaseTask } from "./types.js";

/** Replicas a usable bid offers (a bid from before batches offers one). */
export function offeredBy(bid: LeaseBid): number {
  return Math.max(1, bid.offered ?? 1);
}

export function isPreemptionAcceptable(bid: LeaseBid, task: LeaseTask): boolean {
  const victims = bid.victims ?? [];
  return !bid.fit && victims.length > 0 && victims.every((v) => v.priority < task.priority);
}

function maxVictimPriority(bid: LeaseBid): number {
  return Math.max(...(bid.victims ?? []).map((v) => v.priority));
}

export function compareFitting(a: LeaseBid, b: LeaseBid, hash: HashFn): number {
  if (a.score !== b.score) return b.score - a.score;
  const ha = tieBreak(a.task_id, a.node_id, hash);
  const hb = tieBreak(b.task_id, b.node_id, hash);
  if (ha !== hb) return ha - hb;
  return a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0;
}

export function comparePreempting(a: LeaseBid, b: LeaseBid, hash: HashFn): number {
  const pa = maxVictimPriority(a);
  const pb = maxVictimPriority(b);
  if (pa !== pb) return pa - pb;
  const na = a.victims?.length ?? 0;
  const nb = b.victims?.length ?? 0;
  if (na !== nb) return na - nb;
  return compareFitting(a, b, hash);
}

/** Usable bids, best first. */
export function rankBids(
  bids: Iterable<LeaseBid>,
  task: LeaseTask,
  hash: HashFn,
  excluded: ReadonlySet<string> = new Set(),
): LeaseBid[] {
  const all = [...bids].filter((b) => b.task_id === task.task_id && !excluded.has(b.node_id));
  const fitting = all.filter((b) => b.fit).sort((a, b) => compareFitting(a, b, hash));
  if (fitting.length > 0) return fitting;
  return all.filter((b) => isPreemptionAcceptable(b, task)).sort((a, b) => comparePreempting(a, b, hash));
}

export function bestBid(
  bids: Iterable<LeaseBid>,
  task: LeaseTask,
  hash: HashFn,
  excluded?: ReadonlySet<string>,
): LeaseBid | null {
  return rankBids(bids, task, hash, excluded)[0] ?? null;
}

/** Wire Events carry at most 64 reasons. */
export const MAX_REASONS = 64;

/** Why no bid was usable, one line per node and reason, for the `unschedulable` event. */
export function collectReasons(
  bids: Iterable<LeaseBid>,
  task: LeaseTask,
  excluded: ReadonlySet<string>,
): string[] {
  const sorted = [...bids].sort((a, b) => (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0));
  const reasons: string[] = [];
  for (const bid of sorted) {
    if (excluded.has(bid.node_id)) {
      reasons.push(`${bid.node_id}: excluded after a failure or an expired lease`);
      continue;
    }
    if (!bid.fit && (bid.victims?.length ?? 0) > 0 && !isPreemptionAcceptable(bid, task)) {
      reasons.push(`${bid.node_id}: preemption refused: a victim's priority is not below ${task.priority}`);
    }
    for (const r of bid.reasons) reasons.push(`${bid.node_id}: ${r}`);
    if (!bid.fit && bid.reasons.length === 0 && (bid.victims?.length ?? 0) === 0) {
      reasons.push(`${bid.node_id}: does not fit`);
    }
  }
  if (reasons.length === 0) reasons.push("no bids received in the selection window");
  if (reasons.length > MAX_REASONS) {
    const more = reasons.length - (MAX_REASONS - 1);
    return [...reasons.slice(0, MAX_REASONS - 1), `... and ${more} more`];
  }
  return reasons;
}
