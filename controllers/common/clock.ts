// Time for controller drivers (STYLE §3): wall time for message timestamps,
// a monotonic clock for every duration judged locally (lease expiry, bid
// holds), and timers, all injectable so tests can replace them.

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

/** One re-armable timer: `arm(at)` keeps the earliest deadline, `fire` runs once per expiry. */
export class Alarm {
  private handle: unknown;
  private at: number | null = null;

  constructor(
    private readonly clock: ControllerClock,
    private readonly fire: () => void,
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
        this.fire();
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
