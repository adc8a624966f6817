// What the mesh last said about each workload's pods: provider records (from
// node agents, in KV) and heartbeats (from watchdogs, on the bus), each with
// the local monotonic time it arrived. Only the arrival time decides
// freshness, never a sender's wall clock. A cache rebuilt from its sources
// after a restart, so it holds nothing that matters.
import {
  nameFromToken,
  type Heartbeat,
  type ProviderRecord,
  type WorkloadKind,
} from "../../../protocol/index.js";
import { isUp } from "../fanout/ports.js";
import type { PodEvidence } from "../logic/revive.js";
import type { PodView } from "./aggregate.js";

interface Seen<T> {
  value: T;
  atMs: number;
}

interface WorkloadPods {
  providers: Map<string, Seen<ProviderRecord>>;
  heartbeats: Map<string, Seen<Heartbeat>>;
}

export interface Freshness {
  /** A heartbeat counts this long after it arrived (the watchdog TTL). */
  heartbeatTtlMs: number;
  /** A provider record counts this long after its last refresh arrived. */
  providerTtlMs: number;
}

export function workloadKeyOf(kind: WorkloadKind, ns: string, name: string): string {
  return `${kind}/${ns}/${name}`;
}

/** One pod's provider record and heartbeat as of `nowMs`: the entries, and those still fresh. */
function sample(e: WorkloadPods, pod: string, nowMs: number, f: Freshness) {
  const p = e.providers.get(pod);
  const h = e.heartbeats.get(pod);
  const freshP = p !== undefined && nowMs - p.atMs <= f.providerTtlMs ? p.value : undefined;
  const freshH = h !== undefined && nowMs - h.atMs <= f.heartbeatTtlMs ? h.value : undefined;
  return { h, freshP, freshH, providerUp: freshP !== undefined && isUp(freshP.state) };
}

const KIND_OF_TOKEN: Record<string, WorkloadKind> = { deployment: "Deployment", statefulset: "StatefulSet" };

export class PodObservations {
  private readonly byWorkload = new Map<string, WorkloadPods>();
  private readonly listeners = new Set<(key: string) => void>();

  /** Called with the workload key whenever something about its pods changed. */
  onChange(listener: (key: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private entry(key: string): WorkloadPods {
    let e = this.byWorkload.get(key);
    if (!e) {
      e = { providers: new Map(), heartbeats: new Map() };
      this.byWorkload.set(key, e);
    }
    return e;
  }

  private changed(key: string): void {
    for (const l of this.listeners) l(key);
  }

  provider(record: ProviderRecord, atMs: number): void {
    const key = workloadKeyOf(record.kind, record.ns, record.parent);
    this.entry(key).providers.set(record.pod, { value: record, atMs });
    this.changed(key);
  }

  /** A provider key was deleted: `<kind>.<ns>.<parent>.<pod>` with names in token form. */
  providerKeyGone(kvKey: string): void {
    const [kindToken, ns, parentToken, podToken] = kvKey.split(".");
    const kind = kindToken !== undefined ? KIND_OF_TOKEN[kindToken] : undefined;
    if (!kind || !ns || !parentToken || !podToken) return;
    const key = workloadKeyOf(kind, ns, nameFromToken(parentToken));
    const e = this.byWorkload.get(key);
    if (e?.providers.delete(nameFromToken(podToken))) this.changed(key);
  }

  heartbeat(kind: WorkloadKind, hb: Heartbeat, atMs: number): void {
    const key = workloadKeyOf(kind, hb.ns, hb.parent);
    const e = this.entry(key);
    const before = e.heartbeats.get(hb.pod)?.value;
    e.heartbeats.set(hb.pod, { value: hb, atMs });
    // Only a change of what the status counts needs a recompute; the sweep handles expiry.
    if (
      !before ||
      before.ready !== hb.ready ||
      before.healthy !== hb.healthy ||
      before.generation !== hb.generation
    ) {
      this.changed(key);
    }
  }

  forget(key: string): void {
    this.byWorkload.delete(key);
  }

  /** Workloads with anything observed (the sweep re-checks them as heartbeats age). */
  keys(): string[] {
    return [...this.byWorkload.keys()];
  }

  /**
   * The pods of one workload as of `nowMs`. Running: a fresh provider record
   * that is starting or running, or a fresh heartbeat; for a Deployment, not a
   * pod whose heartbeats stopped or said farewell. Ready: a fresh heartbeat
   * that says ready and healthy; for a StatefulSet (no watchdog) also a
   * running provider record.
   */
  views(key: string, nowMs: number, f: Freshness): PodView[] {
    const e = this.byWorkload.get(key);
    if (!e) return [];
    const kind = key.startsWith("StatefulSet/") ? "StatefulSet" : "Deployment";
    const pods = new Set([...e.providers.keys(), ...e.heartbeats.keys()]);
    const out: PodView[] = [];
    for (const pod of [...pods].sort()) {
      const { h, freshP, freshH, providerUp } = sample(e, pod, nowMs, f);
      // A Deployment pod whose watchdog was heard and then fell silent (or said
      // farewell) is gone with its pod or node, although the provider record of
      // a dead node lives on until its TTL: counting it would keep a healed
      // Deployment at N+1 running and short of "complete" for up to a minute.
      const watchdogGone =
        kind === "Deployment" && h !== undefined && (freshH === undefined || h.value.retiring);
      const running = !watchdogGone && (providerUp || freshH !== undefined);
      if (!running) continue;
      const ready =
        freshH !== undefined
          ? freshH.ready && freshH.healthy
          : kind === "StatefulSet" && freshP?.state === "running";
      out.push({ pod, generation: freshH?.generation ?? freshP?.generation ?? 0, running, ready });
    }
    return out;
  }

  /**
   * What the revival decision weighs per pod of one workload as of `nowMs`:
   * whether its heartbeat is fresh (and not a farewell), stale or never seen,
   * and the node of a fresh provider record that says starting or running.
   */
  evidence(key: string, nowMs: number, f: Freshness): PodEvidence[] {
    const e = this.byWorkload.get(key);
    if (!e) return [];
    const out: PodEvidence[] = [];
    for (const pod of new Set([...e.providers.keys(), ...e.heartbeats.keys()])) {
      const { h, freshP, freshH, providerUp } = sample(e, pod, nowMs, f);
      const heartbeat =
        h === undefined ? "none" : freshH !== undefined && !h.value.retiring ? "fresh" : "stale";
      out.push({ pod, heartbeat, ...(providerUp ? { providerNode: freshP!.node_id } : {}) });
    }
    return out;
  }

  /**
   * Drops entries older than `maxAgeMs`, so the cache does not grow without
   * bound; returns the workloads that lost something.
   */
  prune(nowMs: number, maxAgeMs: number): string[] {
    const touched: string[] = [];
    for (const [key, e] of this.byWorkload) {
      const before = e.providers.size + e.heartbeats.size;
      for (const [pod, s] of e.providers) if (nowMs - s.atMs > maxAgeMs) e.providers.delete(pod);
      for (const [pod, s] of e.heartbeats) if (nowMs - s.atMs > maxAgeMs) e.heartbeats.delete(pod);
      const after = e.providers.size + e.heartbeats.size;
      if (after !== before) touched.push(key);
      if (after === 0) this.byWorkload.delete(key);
    }
    return touched;
  }
}
