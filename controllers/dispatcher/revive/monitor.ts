// Drives the revival decision (../logic/revive.ts): follows the dispatch
// records, weighs each Deployment's pods as the status feeds see them on a
// timer, asks nodes whether they are still there, and hands a due revival to
// the dispatcher's work queue (one run per key, beside its reconciles).
import type { Workload } from "../../../protocol/index.js";
import type { Logger } from "../../common/log.js";
import type { DispatchRecord } from "../fanout/plan.js";
import { templateHash } from "../fanout/render.js";
import {
  decideRevival,
  initialReviveState,
  parseReviveSettings,
  type NodeVerdict,
  type ReviveDecision,
  type ReviveSettings,
  type ReviveState,
  type ReviveTarget,
  type ReviveVerdict,
} from "../logic/revive.js";
import { heartbeatTtlMs } from "../status/controller.js";
import type { PodObservations } from "../status/observations.js";

/** there: the node's agent answered; gone: nobody answers for it (or not in time); unknown: asking failed otherwise. */
export type NodeAnswer = "there" | "gone" | "unknown";

export interface NodeProber {
  probe(nodeId: string): Promise<NodeAnswer>;
}

export interface ReviveMonitorOptions {
  settings?: Partial<ReviveSettings>;
  observations: Pick<PodObservations, "evidence">;
  /** The dispatcher's latest copy of a workload, by key `<kind>/<ns>/<name>`. */
  workload: (key: string) => Workload | undefined;
  prober: NodeProber;
  /** Whether the dispatcher's NATS connection is up. */
  connected: () => boolean;
  /** Hands a due revival to the work queue; `round` is the record's round the decision saw. */
  revive: (key: string, w: Workload, round: number) => void;
  monotonic: () => number;
  logger: Logger;
  /** How long a provider record counts after its last refresh (the status's setting). */
  providerTtlMs: number;
  /** Decisions are taken this often (default: a tenth of the grace, between 100 ms and 1 s). */
  checkEveryMs?: number;
  /** Each decision, for tests and metrics. */
  onDecision?: (key: string, d: ReviveDecision) => void;
}

interface Entry {
  record: DispatchRecord;
  state: ReviveState | undefined;
  verdict: ReviveVerdict | undefined;
}

export class ReviveMonitor {
  readonly settings: ReviveSettings;
  private readonly o: ReviveMonitorOptions;
  private readonly entries = new Map<string, Entry>();
  private readonly nodes = new Map<string, NodeVerdict>();
  private readonly probing = new Map<string, Promise<void>>();
  private readonly hashes = new Map<string, { version: string; hash: string }>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: ReviveMonitorOptions) {
    this.o = opts;
    this.settings = parseReviveSettings(opts.settings);
  }

  /**
   * A dispatch record from the KV feed (undefined: deleted). `initial`: it came
   * with the watch's starting snapshot, so it existed before this dispatcher looked.
   */
  record(key: string, record: DispatchRecord | undefined, initial: boolean): void {
    if (record === undefined || record.kind !== "Deployment") {
      this.entries.delete(key);
      this.hashes.delete(key);
      return;
    }
    const known = this.entries.get(key);
    if (known) known.record = record;
    else this.entries.set(key, { record, state: initialReviveState(record, initial), verdict: undefined });
  }

  start(): void {
    const every = this.o.checkEveryMs ?? Math.min(1000, Math.max(100, this.settings.graceMs / 10));
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.probing.values()]);
  }

  /** One round of decisions over every Deployment with a record. */
  check(): void {
    if (this.stopped) return;
    const now = this.o.monotonic();
    const connected = this.o.connected();
    for (const [node, v] of this.nodes) if (now - v.atMs > this.o.providerTtlMs) this.nodes.delete(node);
    for (const [key, entry] of this.entries) {
      const w = this.o.workload(key);
      const d = decideRevival(
        entry.state,
        {
          nowMs: now,
          connected,
          target: w ? this.targetOf(key, w) : undefined,
          record: entry.record,
          pods: w
            ? this.o.observations.evidence(key, now, {
                heartbeatTtlMs: heartbeatTtlMs(w),
                providerTtlMs: this.o.providerTtlMs,
              })
            : [],
          nodes: this.nodes,
        },
        this.settings,
      );
      entry.state = d.state;
      if (d.verdict !== entry.verdict) {
        if (d.verdict === "dead")
          this.o.logger.info("revive: no live replica; waiting out the grace", {
            workload: key,
            graceMs: this.settings.graceMs,
          });
        else if (entry.verdict === "dead" && d.verdict !== "due")
          this.o.logger.info("revive: a replica is live again", { workload: key, verdict: d.verdict });
        entry.verdict = d.verdict;
      }
      for (const node of d.probe) this.probe(node);
      if (d.revive && w) this.o.revive(key, w, d.revive.round);
      this.o.onDecision?.(key, d);
    }
  }

  private targetOf(key: string, w: Workload): ReviveTarget {
    const generation = w.metadata.generation ?? 1;
    const version = `${w.metadata.uid ?? ""}/${generation}`;
    let cached = this.hashes.get(key);
    if (cached?.version !== version) {
      // The hash of a template changes only with the generation; computing it per check would cost.
      cached = { version, hash: templateHash(w) };
      this.hashes.set(key, cached);
    }
    return {
      uid: w.metadata.uid ?? "",
      generation,
      replicas: w.spec.replicas ?? 1,
      templateHash: cached.hash,
      deleting: w.metadata.deletionTimestamp !== undefined,
    };
  }

  private probe(node: string): void {
    if (this.probing.has(node) || this.stopped) return;
    const p = this.o.prober
      .probe(node)
      .then((answer) => {
        if (answer === "unknown") return;
        const before = this.nodes.get(node);
        this.nodes.set(node, { gone: answer === "gone", atMs: this.o.monotonic() });
        if (answer === "gone" && before?.gone !== true)
          this.o.logger.info("revive: a node named by provider records does not answer", { node });
      })
      .catch((err: unknown) => this.o.logger.debug("revive: node probe failed", { node, err }))
      .finally(() => this.probing.delete(node));
    this.probing.set(node, p);
  }
}
