// Writes each workload's status when what it shows changed: at most once per
// throttle interval per object, through the source's status path with
// optimistic concurrency (a conflict re-reads and tries again). Any dispatcher
// may run it; equal statuses are never written, so several agree quietly.
import type { Workload, WorkloadKind, WorkloadStatus } from "../../../protocol/index.js";
import type { Logger } from "../../common/log.js";
import type { DispatchRecord } from "../fanout/plan.js";
import type { RecordStore } from "../fanout/ports.js";
import type { WorkloadSource } from "../fanout/source.js";
import { computeStatus, sameStatus } from "./aggregate.js";
import type { PodObservations } from "./observations.js";

export interface StatusControllerOptions {
  source: WorkloadSource;
  records: RecordStore;
  observations: PodObservations;
  /** The dispatcher's latest copy of each workload, by key `<kind>/<ns>/<name>`. */
  cached: (key: string) => Workload | undefined;
  /** The dispatch record the fan-out last saw, if it keeps one. */
  cachedRecord?: (key: string) => DispatchRecord | undefined;
  monotonic: () => number;
  wallClock: () => Date;
  logger: Logger;
  /** Minimum time between two status computations of one object (default 500 ms). */
  throttleMs?: number;
  /** How long a provider record counts after its last refresh (default 60 s, the bucket's TTL). */
  providerTtlMs?: number;
  /** Status writes retried after a conflict (default 5). */
  maxAttempts?: number;
  onWrite?: (key: string) => void;
}

interface KeyState {
  lastRunMs: number;
  timer: NodeJS.Timeout | undefined;
  running: boolean;
  again: boolean;
}

const DEFAULT_WATCHDOG_INTERVAL_S = 1;
const DEFAULT_WATCHDOG_TTL_INTERVALS = 3;

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function splitKey(key: string): { kind: WorkloadKind; ns: string; name: string } | undefined {
  const [kind, ns, name] = key.split("/");
  if ((kind !== "Deployment" && kind !== "StatefulSet") || !ns || !name) return undefined;
  return { kind, ns, name };
}

/** The watchdog TTL of a Deployment (interval x intervals); heartbeats older than this do not count. */
export function heartbeatTtlMs(w: Workload): number {
  if (w.kind !== "BeemeshDeployment") return 0;
  const sc = w.spec.watchdogSidecar ?? {};
  return (
    (sc.intervalSeconds ?? DEFAULT_WATCHDOG_INTERVAL_S) *
    (sc.ttlIntervals ?? DEFAULT_WATCHDOG_TTL_INTERVALS) *
    1000
  );
}

export class StatusController {
  private readonly o: StatusControllerOptions;
  private readonly throttleMs: number;
  private readonly providerTtlMs: number;
  private readonly keys = new Map<string, KeyState>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly lastWritten = new Map<string, { against: string | undefined; status: WorkloadStatus }>();
  private stopped = false;
  /** Statuses written, for tests and metrics. */
  written = 0;

  constructor(opts: StatusControllerOptions) {
    this.o = opts;
    this.throttleMs = opts.throttleMs ?? 500;
    this.providerTtlMs = opts.providerTtlMs ?? 60_000;
  }

  /** Asks for the status of `key` to be brought up to date (soon, throttled). */
  touch(key: string): void {
    if (this.stopped) return;
    let s = this.keys.get(key);
    if (!s) {
      s = { lastRunMs: -Infinity, timer: undefined, running: false, again: false };
      this.keys.set(key, s);
    }
    if (s.running) {
      s.again = true;
      return;
    }
    if (s.timer !== undefined) return;
    const wait = Math.max(0, s.lastRunMs + this.throttleMs - this.o.monotonic());
    const state = s;
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.run(key, state);
    }, wait);
    state.timer.unref?.();
  }

  /** The workload is gone: drop its state. */
  forget(key: string): void {
    const s = this.keys.get(key);
    if (s?.timer !== undefined) clearTimeout(s.timer);
    this.keys.delete(key);
    this.lastWritten.delete(key);
    this.o.observations.forget(key);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.keys.values()) if (s.timer !== undefined) clearTimeout(s.timer);
    await Promise.allSettled([...this.inflight]);
  }

  private run(key: string, s: KeyState): void {
    if (this.stopped) return;
    s.running = true;
    s.again = false;
    s.lastRunMs = this.o.monotonic();
    const p = this.refresh(key)
      .catch((err: unknown) => this.o.logger.warn("status: update failed", { workload: key, err }))
      .finally(() => {
        s.running = false;
        this.inflight.delete(p);
        if (s.again && this.keys.get(key) === s) this.touch(key);
      });
    this.inflight.add(p);
  }

  /** The status `w` should show now. */
  statusOf(key: string, w: Workload, record: DispatchRecord | undefined): WorkloadStatus {
    return computeStatus({
      workload: w,
      pods: this.o.observations.views(key, this.o.monotonic(), {
        heartbeatTtlMs: heartbeatTtlMs(w),
        providerTtlMs: this.providerTtlMs,
      }),
      dispatched: record,
      nowIso: rfc3339(this.o.wallClock()),
    });
  }

  /** Brings the status of `key` up to date now, without the throttle. */
  async refresh(key: string): Promise<void> {
    const ref = splitKey(key);
    if (!ref) return;
    let w = this.o.cached(key);
    const maxAttempts = this.o.maxAttempts ?? 5;
    for (let attempt = 1; w !== undefined && !this.stopped; attempt++) {
      const record = this.o.cachedRecord?.(key) ?? (await this.o.records.get(ref))?.record;
      const status = this.statusOf(key, w, record);
      if (sameStatus(status, w.status)) return;
      // Our own write has not come back through the source yet: the copy is stale, not wrong.
      const mine = this.lastWritten.get(key);
      if (mine && mine.against === w.metadata.resourceVersion && sameStatus(status, mine.status)) return;
      const outcome = await this.o.source.writeStatus(w, status);
      if (outcome === "written") {
        this.written++;
        this.o.onWrite?.(key);
        this.lastWritten.set(key, { against: w.metadata.resourceVersion, status });
        return;
      }
      if (outcome === "gone" || attempt >= maxAttempts) return;
      // Someone wrote in between (a user, another dispatcher): read again and recompute.
      w = await this.o.source.get(ref.kind, ref.ns, ref.name);
    }
  }
}
