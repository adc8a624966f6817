// Watchdog settings (STYLE §8): all optional, defaults, one parse that
// refuses contradictions.

export interface WatchdogOptions {
  /** Heartbeat interval (DESIGN §4: 1 s). */
  intervalMs?: number;
  /** Peers are alive while their last heartbeat is younger than ttlIntervals * intervalMs (3). */
  ttlIntervals?: number;
  /** Consecutive failed probes before healthy/ready turns false (3). */
  failureThreshold?: number;
  /** Consecutive ready probes before ready turns true (2). */
  successThreshold?: number;
  /** Own slot (and, as leader, pending clones' slots) renewed this often (2000 ms). */
  slotRenewMs?: number;
  /** The slot store's TTL (bucket max_age); renewals must come well within it (10000 ms). */
  slotTtlMs?: number;
  /** A clone not heartbeating after this long is given up and its slot released (60000 ms). */
  cloneGraceMs?: number;
  /** A refused slot index is not tried again before this (1000 ms). */
  slotRetryMs?: number;
  /**
   * How long a clone waits for the dispatch record to reach the object's template
   * before its slot is released and the clone tried again after slotRetryMs
   * (default: the TTL; at most half of cloneGraceMs).
   */
  recordWaitMs?: number;
  /** No cloning before this long after start, so the first heartbeats are heard (default: the TTL). */
  startupGraceMs?: number;
  /**
   * Retire when the own slot could not be renewed for slotTtlMs - fenceMarginMs (store
   * unreachable). Off by default: availability first, see README.md.
   */
  strictFencing?: boolean;
  fenceMarginMs?: number;
}

export type WatchdogSettings = Required<WatchdogOptions>;

export class WatchdogOptionsError extends Error {
  override name = "WatchdogOptionsError";
}

export function defaultWatchdogOptions(): WatchdogSettings {
  return {
    intervalMs: 1000,
    ttlIntervals: 3,
    failureThreshold: 3,
    successThreshold: 2,
    slotRenewMs: 2000,
    slotTtlMs: 10_000,
    cloneGraceMs: 60_000,
    slotRetryMs: 1000,
    recordWaitMs: 3000,
    startupGraceMs: 3000,
    strictFencing: false,
    fenceMarginMs: 2000,
  };
}

export function parseWatchdogOptions(options: WatchdogOptions = {}): WatchdogSettings {
  const d = defaultWatchdogOptions();
  const s: WatchdogSettings = { ...d };
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) (s as unknown as Record<string, unknown>)[k] = v;
  }
  if (options.startupGraceMs === undefined) s.startupGraceMs = s.intervalMs * s.ttlIntervals;
  if (options.recordWaitMs === undefined)
    s.recordWaitMs = Math.min(s.intervalMs * s.ttlIntervals, s.cloneGraceMs / 2);
  const positive: (keyof WatchdogSettings)[] = [
    "intervalMs",
    "ttlIntervals",
    "failureThreshold",
    "successThreshold",
    "slotRenewMs",
    "slotTtlMs",
    "cloneGraceMs",
    "slotRetryMs",
    "recordWaitMs",
  ];
  for (const k of positive) {
    const v = s[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new WatchdogOptionsError(`watchdog: ${k} must be a positive number, got ${String(v)}`);
    }
  }
  if (s.startupGraceMs < 0 || s.fenceMarginMs < 0) {
    throw new WatchdogOptionsError("watchdog: startupGraceMs and fenceMarginMs must not be negative");
  }
  if (s.slotRenewMs * 2 > s.slotTtlMs) {
    throw new WatchdogOptionsError(
      `watchdog: slotRenewMs (${s.slotRenewMs}) must be at most half of slotTtlMs (${s.slotTtlMs})`,
    );
  }
  if (s.recordWaitMs * 2 > s.cloneGraceMs) {
    // A clone still waiting for its record when the grace gives its slot up would run without one.
    throw new WatchdogOptionsError(
      `watchdog: recordWaitMs (${s.recordWaitMs}) must be at most half of cloneGraceMs (${s.cloneGraceMs})`,
    );
  }
  if (s.strictFencing && s.fenceMarginMs >= s.slotTtlMs - s.slotRenewMs) {
    throw new WatchdogOptionsError("watchdog: fenceMarginMs leaves no time to renew before fencing");
  }
  return s;
}

/** Surge and unavailability as used by the logic: both zero would stall a rollout, so surge becomes 1. */
export function effectiveStrategy(spec: { max_surge: number; max_unavailable: number }): {
  surge: number;
  unavailable: number;
} {
  const surge = Math.max(0, Math.floor(spec.max_surge));
  const unavailable = Math.max(0, Math.floor(spec.max_unavailable));
  return surge === 0 && unavailable === 0 ? { surge: 1, unavailable: 0 } : { surge, unavailable };
}

/**
 * Slot keys are `<prefix>/slot-<i>`. The default prefix is `<ns>/<parent>`; the I/O
 * layer should append the parent's uid so a deleted and re-created Deployment of
 * the same name starts with its own slots.
 */
export function defaultSlotPrefix(ns: string, parent: string): string {
  return `${ns}/${parent}`;
}

export function slotKey(prefix: string, index: number): string {
  return `${prefix}/slot-${index}`;
}
