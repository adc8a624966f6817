// Time as a dependency (STYLE §3): code that waits or reads the time takes a
// Clock, so tests can use a fake one or a real one with short TTLs.
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls fn once after ms; the returned function cancels it. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // Identity timers must never keep a process alive on their own.
    t.unref();
    return () => clearTimeout(t);
  },
};
