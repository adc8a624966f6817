// Deterministic tie-break hash shared by bidders and lease-keepers.
// FNV-1a 32-bit over the UTF-8 bytes: tiny, pure, identical in every language,
// and good enough to spread ties evenly; it is not a security primitive.

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const utf8 = new TextEncoder();

/** FNV-1a 32-bit of the UTF-8 encoding of `s`, as an unsigned integer. */
export function fnv1a32(s: string): number {
  let h = FNV_OFFSET_BASIS;
  for (const byte of utf8.encode(s)) {
    h ^= byte;
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

export type HashFn = (s: string) => number;

/**
 * The tie-break of a (task, node) pair: `hash(task_id + "/" + node_id)`.
 * Lower wins. Every lease-keeper computes it itself, so a node cannot claim it.
 */
export function tieBreak(taskId: string, nodeId: string, hash: HashFn = fnv1a32): number {
  return hash(`${taskId}/${nodeId}`);
}
