// Time for the fake runtime, injected so tests and simulations move it
// forward themselves (STYLE §3).
import { setImmediate as nextTurn } from "node:timers/promises";

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

interface Sleeper {
  due: number;
  seq: number;
  wake: () => void;
}

// Binary min-heap by (due, seq): simulations park thousands of sleepers.
class SleeperHeap {
  private readonly items: Sleeper[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Sleeper | undefined {
    return this.items[0];
  }

  push(s: Sleeper): void {
    const a = this.items;
    a.push(s);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): Sleeper | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }

  private less(x: Sleeper, y: Sleeper): boolean {
    return x.due < y.due || (x.due === y.due && x.seq < y.seq);
  }
}

/** A clock that only moves when told to. */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private readonly sleepers = new SleeperHeap();

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((wake) => this.sleepers.push({ due: this.current + ms, seq: this.seq++, wake }));
  }

  /** Sleepers not yet woken. */
  get pending(): number {
    return this.sleepers.size;
  }

  /**
   * Moves time forward by ms, waking sleepers in due order; after each due
   * instant it lets woken code run before going on, so it sees that instant.
   */
  async advance(ms: number): Promise<void> {
    const target = this.current + Math.max(0, ms);
    for (
      let next = this.sleepers.peek();
      next !== undefined && next.due <= target;
      next = this.sleepers.peek()
    ) {
      const due = next.due;
      this.current = due;
      while (this.sleepers.peek()?.due === due) this.sleepers.pop()?.wake();
      await nextTurn();
    }
    this.current = target;
  }
}
