// Lease-keeper settings (STYLE §8: all optional, defaults, validated once).
import { fnv1a32 } from "../../scheduler-bidder/logic/hash.js";
import type { HashFn } from "../../scheduler-bidder/logic/hash.js";

export interface LeaseKeeperOptions {
  /** Selection window (DESIGN §3: 250 ms). */
  windowMs?: number;
  /** The window is windowMs ± windowJitterMs, drawn from the injected random (100 ms). */
  windowJitterMs?: number;
  /** Lease TTL judged on the observer's monotonic clock since the last renewal seen (3000 ms). */
  leaseTtlMs?: number;
  /** Re-award after expiry or failure waits base * 2^(n-1), capped (100 ms .. 5000 ms). */
  reawardBaseMs?: number;
  reawardCapMs?: number;
  /** An unschedulable task retries after base * 2^(n-1), capped (500 ms .. 30000 ms). */
  unschedulableBaseMs?: number;
  unschedulableCapMs?: number;
  /**
   * Most replicas one share of a batch grants (default 100000, no cap). A share
   * is re-awarded whole, so smaller shares find a new home more easily.
   */
  maxShareReplicas?: number;
  /** Tie-break hash (FNV-1a 32 by default). */
  hash?: HashFn;
}

export type LeaseKeeperSettings = Required<LeaseKeeperOptions>;

export class LeaseKeeperOptionsError extends Error {
  override name = "LeaseKeeperOptionsError";
}

export function defaultLeaseKeeperOptions(): LeaseKeeperSettings {
  return {
    windowMs: 250,
    windowJitterMs: 100,
    leaseTtlMs: 3000,
    reawardBaseMs: 100,
    reawardCapMs: 5000,
    unschedulableBaseMs: 500,
    unschedulableCapMs: 30_000,
    maxShareReplicas: 100_000,
    hash: fnv1a32,
  };
}

export function parseLeaseKeeperOptions(options: LeaseKeeperOptions = {}): LeaseKeeperSettings {
  const s: LeaseKeeperSettings = { ...defaultLeaseKeeperOptions() };
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) (s as unknown as Record<string, unknown>)[k] = v;
  }
  const positive: (keyof LeaseKeeperSettings)[] = [
    "windowMs",
    "leaseTtlMs",
    "reawardBaseMs",
    "reawardCapMs",
    "unschedulableBaseMs",
    "unschedulableCapMs",
    "maxShareReplicas",
  ];
  for (const k of positive) {
    const v = s[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new LeaseKeeperOptionsError(`lease-keeper: ${k} must be a positive number, got ${String(v)}`);
    }
  }
  if (!Number.isFinite(s.windowJitterMs) || s.windowJitterMs < 0 || s.windowJitterMs >= s.windowMs) {
    throw new LeaseKeeperOptionsError(
      `lease-keeper: windowJitterMs must be in [0, windowMs), got ${s.windowJitterMs}`,
    );
  }
  if (!Number.isSafeInteger(s.maxShareReplicas)) {
    throw new LeaseKeeperOptionsError(
      `lease-keeper: maxShareReplicas must be a positive integer, got ${s.maxShareReplicas}`,
    );
  }
  if (s.reawardCapMs < s.reawardBaseMs || s.unschedulableCapMs < s.unschedulableBaseMs) {
    throw new LeaseKeeperOptionsError("lease-keeper: a backoff cap is below its base");
  }
  return s;
}

/** base * 2^(n-1) for the n-th retry (n >= 1), capped. */
export function backoffMs(n: number, baseMs: number, capMs: number): number {
  const exp = Math.min(Math.max(0, n - 1), 30);
  return Math.min(capMs, baseMs * 2 ** exp);
}
