// Time for controller drivers and runtimes (STYLE §3): wall time for message
// timestamps, a monotonic clock for every duration judged locally (lease
// expiry, bid holds), and timers, all injectable so tests can replace them
// (ManualClock: time moves only when a test or a simulation moves it).
import { setImmediate as nextTurn } from "node:timers/promises";
import { MinHeap } from "./min-heap.js";

export interface ControllerClock {
  /** Milliseconds since the Unix epoch (wire `ts` fields). */
  now(): number;
  /** Monotonic milliseconds; only differences mean anything. */
  monotonic(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: ControllerClock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, ms)),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Resolves after `ms` of the clock's time (at once for ms <= 0). */
export function sleep(clock: ControllerClock, ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((wake) => clock.setTimeout(wake, ms));
}

interface ManualTimer {
  due: number;
  seq: number;
  fire: () => void;
  cancelled: boolean;
}

/** A clock that only moves when told to; wall and monotonic time are the same number. */
export class ManualClock implements ControllerClock {
  private current: number;
  private seq = 0;
  private live = 0;
  private readonly timers = new MinHeap<ManualTimer>(
    (x, y) => x.due < y.due || (x.due === y.due && x.seq < y.seq),
  );

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  monotonic(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer: ManualTimer = {
      due: this.current + Math.max(0, ms),
      seq: this.seq++,
      fire: fn,
      cancelled: false,
    };
    this.timers.push(timer);
    this.live++;
    return timer;
  }

  clearTimeout(handle: unknown): void {
    const timer = handle as ManualTimer | undefined;
    if (timer === undefined || timer.cancelled) return;
    // Left in the heap: skipped when its time comes.
    timer.cancelled = true;
    this.live--;
  }

  /** Timers not yet fired or cleared. */
  get pending(): number {
    return this.live;
  }

  /**
   * Moves time forward by ms, firing timers in due order; after each due
   * instant it lets woken code run before going on, so it sees that instant.
   */
  async advance(ms: number): Promise<void> {
    const target = this.current + Math.max(0, ms);
    for (let next = this.timers.peek(); next !== undefined && next.due <= target; next = this.timers.peek()) {
      const due = next.due;
      this.current = due;
      while (this.timers.peek()?.due === due) {
        const timer = this.timers.pop()!;
        if (timer.cancelled) continue;
        timer.cancelled = true;
        this.live--;
        timer.fire();
      }
      await nextTurn();
    }
    this.current = target;
  }
}

/**
 * One re-armable timer: `arm(at)` keeps the earliest deadline, `fire` runs once
 * per expiry and is told the deadline it was due at (how late it fired is the
 * event loop's lag).
 */
export class Alarm {
  private handle: unknown;
  private at: number | null = null;

  constructor(
    private readonly clock: ControllerClock,
    private readonly fire: (dueAt: number) => void,
  ) {}

  /** Wakes at monotonic time `at` unless an earlier wake is already set. */
  arm(at: number): void {
    if (this.at !== null && this.at <= at) return;
    this.cancel();
    this.at = at;
    this.handle = this.clock.setTimeout(
      () => {
        this.at = null;
        this.handle = undefined;
        this.fire(at);
      },
      Math.ceil(at - this.clock.monotonic()),
    );
  }

  cancel(): void {
    if (this.handle !== undefined) this.clock.clearTimeout(this.handle);
    this.handle = undefined;
    this.at = null;
  }

  get armedAt(): number | null {
    return this.at;
  }
}
