// Replay protection (DESIGN §2): a nonce is remembered for as long as its
// message could still pass the skew check (ts + skew), and the cache is
// bounded. When it is full the entry with the oldest ts is evicted and that
// ts becomes a floor: anything at or below it can no longer be proven unseen,
// so it is refused too (a bounded cache must never open a replay hole).

export type NonceVerdict = "fresh" | "replay" | "below_floor";

interface Entry {
  key: string;
  ts: number;
}

export interface NonceCacheOptions {
  /** How long after its ts a message can still arrive (the skew window), ms. */
  windowMs: number;
  maxEntries?: number;
}

export class NonceCache {
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly keys = new Map<string, number>();
  /** Min-heap on ts. */
  private readonly heap: Entry[] = [];
  private floor = -Infinity;

  constructor(opts: NonceCacheOptions) {
    this.windowMs = opts.windowMs;
    this.maxEntries = opts.maxEntries ?? 100_000;
    if (!(this.maxEntries >= 1)) throw new RangeError("nonce cache: maxEntries must be at least 1");
  }

  get size(): number {
    return this.keys.size;
  }

  /** Records key (sender + nonce) seen at message time ts; nowMs prunes what can no longer pass the skew check. */
  check(key: string, ts: number, nowMs: number): NonceVerdict {
    this.prune(nowMs);
    if (this.keys.has(key)) return "replay";
    if (ts <= this.floor) return "below_floor";
    this.keys.set(key, ts);
    this.push({ key, ts });
    while (this.keys.size > this.maxEntries) {
      const evicted = this.pop();
      if (!evicted) break;
      this.keys.delete(evicted.key);
      this.floor = Math.max(this.floor, evicted.ts);
    }
    return "fresh";
  }

  private prune(nowMs: number): void {
    const cutoff = nowMs - this.windowMs;
    for (let top = this.heap[0]; top !== undefined && top.ts < cutoff; top = this.heap[0]) {
      this.pop();
      this.keys.delete(top.key);
    }
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.ts <= e.ts) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      let smallestTs = last.ts;
      if (l < h.length && h[l]!.ts < smallestTs) {
        smallest = l;
        smallestTs = h[l]!.ts;
      }
      if (r < h.length && h[r]!.ts < smallestTs) smallest = r;
      if (smallest === i) break;
      h[i] = h[smallest]!;
      i = smallest;
    }
    h[i] = last;
    return top;
  }
}
