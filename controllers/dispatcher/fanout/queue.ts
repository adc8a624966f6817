// A keyed work queue (controller-runtime's model): one run per key at a time,
// the latest item for a key replaces an older pending one, a failed run comes
// back after an exponential backoff, a bounded number of keys run at once.

export interface KeyedQueueOptions<T> {
  handle: (key: string, item: T) => Promise<void>;
  /** Keys handled at once (default 8). */
  concurrency?: number;
  /** First retry delay, doubled per failure up to maxBackoffMs (defaults 100 ms, 30 s). */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called on each failure with the attempt count; return false to drop the item (a terminal error). */
  onError?: (key: string, err: unknown, attempt: number) => boolean;
}

interface Slot<T> {
  item: T;
  attempt: number;
}

export class KeyedQueue<T> {
  private readonly o: KeyedQueueOptions<T>;
  private readonly pending = new Map<string, Slot<T>>();
  private readonly ready: string[] = [];
  private readonly running = new Set<string>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private idleWaiters: Array<() => void> = [];
  private stopped = false;

  constructor(opts: KeyedQueueOptions<T>) {
    this.o = opts;
  }

  get size(): number {
    return this.pending.size + this.running.size;
  }

  add(key: string, item: T): void {
    if (this.stopped) return;
    const retry = this.retryTimers.get(key);
    if (retry !== undefined) {
      // New information beats waiting out the backoff of the old.
      clearTimeout(retry);
      this.retryTimers.delete(key);
    }
    const had = this.pending.has(key);
    this.pending.set(key, { item, attempt: this.failures.get(key) ?? 0 });
    if (!had && !this.running.has(key)) this.ready.push(key);
    this.pump();
  }

  /**
   * Adds `item` only when nothing is pending or waiting to retry for `key`, so
   * an occasional item (a revival) never replaces a pending one (an upsert).
   */
  offer(key: string, item: T): boolean {
    if (this.stopped || this.pending.has(key) || this.retryTimers.has(key)) return false;
    this.add(key, item);
    return true;
  }

  /** Resolves once nothing is pending, running or waiting to retry. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops taking work, cancels retries and waits for the runs in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.pending.clear();
    this.ready.length = 0;
    while (this.running.size > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    this.notifyIdle();
  }

  private isIdle(): boolean {
    return this.pending.size === 0 && this.running.size === 0 && this.retryTimers.size === 0;
  }

  private notifyIdle(): void {
    if (!this.isIdle() && !this.stopped) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private pump(): void {
    const limit = Math.max(1, this.o.concurrency ?? 8);
    while (!this.stopped && this.running.size < limit && this.ready.length > 0) {
      const key = this.ready.shift()!;
      const slot = this.pending.get(key);
      if (!slot || this.running.has(key)) continue;
      this.pending.delete(key);
      this.running.add(key);
      void this.run(key, slot);
    }
  }

  private async run(key: string, slot: Slot<T>): Promise<void> {
    try {
      await this.o.handle(key, slot.item);
      this.failures.delete(key);
    } catch (err) {
      const attempt = slot.attempt + 1;
      const keep = this.o.onError?.(key, err, attempt) ?? true;
      if (keep && !this.stopped) {
        this.failures.set(key, attempt);
        if (!this.pending.has(key)) this.scheduleRetry(key, { item: slot.item, attempt }, attempt);
      } else this.failures.delete(key);
    } finally {
      this.running.delete(key);
      // A newer item arrived while this one ran: it goes next.
      if (this.pending.has(key) && !this.ready.includes(key)) this.ready.push(key);
      this.pump();
      this.notifyIdle();
    }
  }

  private scheduleRetry(key: string, slot: Slot<T>, attempt: number): void {
    const base = this.o.baseBackoffMs ?? 100;
    const max = this.o.maxBackoffMs ?? 30_000;
    const wait = Math.min(max, base * 2 ** Math.min(attempt - 1, 30));
    const timer = setTimeout(() => {
      this.retryTimers.delete(key);
      if (this.stopped || this.pending.has(key)) return this.notifyIdle();
      this.pending.set(key, slot);
      if (!this.running.has(key)) this.ready.push(key);
      this.pump();
    }, wait);
    timer.unref?.();
    this.retryTimers.set(key, timer);
  }
}
