// Where the dispatcher's workloads come from: its own API's object store
// (bare hosts) or a Kubernetes cluster's CRs (informer/). Either gives the same
// stream: every current object, a "synced" mark, then changes; and a status
// write with optimistic concurrency.
import {
  API_VERSION,
  parseWorkload,
  type Workload,
  type WorkloadKind,
  type WorkloadStatus,
} from "../../../protocol/index.js";
import type { Logger } from "../../common/log.js";
import { ApiError } from "../api/status.js";
import { beemeshRegistry } from "../api/beemesh-kinds.js";
import type { ResourceKind } from "../api/kinds.js";
import { ResourceService } from "../api/resource.js";
import type { KubeObject, ObjectStore, StoreWatch } from "../store/index.js";
import { Channel } from "./channel.js";
import type { GoneWorkload } from "./fanout.js";

export type SourceEvent =
  | { type: "upsert"; workload: Workload }
  | { type: "delete"; gone: GoneWorkload }
  /** Every object that existed at (re)start was delivered; records without an object are orphans. */
  | { type: "synced"; live: ReadonlyMap<string, string> };

export type StatusWriteOutcome = "written" | "conflict" | "gone";

export interface WorkloadSource {
  /** Runs until `signal` aborts; lists again (with deletes for what vanished) after a broken watch. */
  events(signal: AbortSignal): AsyncIterable<SourceEvent>;
  get(kind: WorkloadKind, ns: string, name: string): Promise<Workload | undefined>;
  /** Replaces the status if `w` is still the stored version (its resourceVersion). */
  writeStatus(w: Workload, status: WorkloadStatus): Promise<StatusWriteOutcome>;
}

export const FIELD_MANAGER = "beemesh-dispatcher";

export const KIND_NAMES: Record<WorkloadKind, { kind: string; plural: string }> = {
  Deployment: { kind: "BeemeshDeployment", plural: "beemeshdeployments" },
  StatefulSet: { kind: "BeemeshStatefulSet", plural: "beemeshstatefulsets" },
};

export function sourceKey(kind: WorkloadKind, ns: string, name: string): string {
  return `${kind}/${ns}/${name}`;
}

export function keyOfWorkload(w: Workload): string {
  return sourceKey(
    w.kind === "BeemeshStatefulSet" ? "StatefulSet" : "Deployment",
    w.metadata.namespace ?? "",
    w.metadata.name ?? "",
  );
}

/** Parses an object from a store or a cluster; undefined (logged) when it is not a valid workload. */
export function toWorkload(obj: unknown, log: Logger): Workload | undefined {
  const parsed = parseWorkload(obj);
  if (parsed.ok) return parsed.value;
  const meta = (obj as { metadata?: { namespace?: string; name?: string } } | undefined)?.metadata;
  log.warn("dispatcher: ignoring an object that is not a valid workload", {
    ns: meta?.namespace,
    name: meta?.name,
    err: parsed.error,
  });
  return undefined;
}

export interface StoreSourceOptions {
  store: ObjectStore;
  logger: Logger;
  /** Wait before listing again after a watch broke (default 1000 ms). */
  relistDelayMs?: number;
}

const WORKLOAD_KINDS: readonly WorkloadKind[] = ["Deployment", "StatefulSet"];

/** The dispatcher's own API objects (KV or memory store). */
export class StoreWorkloadSource implements WorkloadSource {
  private readonly store: ObjectStore;
  private readonly log: Logger;
  private readonly service: ResourceService;
  private readonly kinds: Record<WorkloadKind, ResourceKind>;
  private readonly relistDelayMs: number;

  constructor(opts: StoreSourceOptions) {
    this.store = opts.store;
    this.log = opts.logger;
    this.service = new ResourceService({ store: opts.store });
    const registry = beemeshRegistry();
    const find = (k: WorkloadKind) => {
      const found = registry.byKind(API_VERSION, KIND_NAMES[k].kind);
      if (!found) throw new Error(`dispatcher: the API registry lacks ${KIND_NAMES[k].kind}`);
      return found;
    };
    this.kinds = { Deployment: find("Deployment"), StatefulSet: find("StatefulSet") };
    this.relistDelayMs = opts.relistDelayMs ?? 1000;
  }

  async get(kind: WorkloadKind, ns: string, name: string): Promise<Workload | undefined> {
    const obj = await this.store.get(this.kinds[kind], ns, name);
    return obj ? toWorkload(obj, this.log) : undefined;
  }

  async writeStatus(w: Workload, status: WorkloadStatus): Promise<StatusWriteOutcome> {
    const kind = this.kinds[w.kind === "BeemeshStatefulSet" ? "StatefulSet" : "Deployment"];
    const ns = w.metadata.namespace ?? "";
    const name = w.metadata.name ?? "";
    try {
      await this.service.replace(
        kind,
        ns,
        name,
        { ...w, status },
        { dryRun: false, fieldManager: FIELD_MANAGER, fieldValidation: "Ignore", warnings: [] },
        "status",
      );
      return "written";
    } catch (err) {
      if (err instanceof ApiError && err.code === 409) return "conflict";
      if (err instanceof ApiError && err.code === 404) return "gone";
      throw err;
    }
  }

  events(signal: AbortSignal): AsyncIterable<SourceEvent> {
    const out = new Channel<SourceEvent>();
    void this.run(out, signal).then(
      () => out.end(),
      (err: unknown) => out.fail(err),
    );
    return out;
  }

  private async run(out: Channel<SourceEvent>, signal: AbortSignal): Promise<void> {
    // What the last list and watch showed, so a relist can report what vanished in between.
    const known = new Map<string, GoneWorkload>();
    while (!signal.aborted && !out.closed) {
      let watches: StoreWatch[] = [];
      try {
        const seen = new Map<string, GoneWorkload>();
        const live = new Map<string, string>();
        const from: Partial<Record<WorkloadKind, number>> = {};
        for (const k of WORKLOAD_KINDS) {
          const listed = await this.store.list(this.kinds[k]);
          from[k] = listed.revision;
          for (const obj of listed.items) {
            const w = toWorkload(obj, this.log);
            if (!w) continue;
            const gone = goneOf(k, obj);
            seen.set(sourceKey(k, gone.ns, gone.name), gone);
            live.set(sourceKey(k, gone.ns, gone.name), gone.uid ?? "");
            out.push({ type: "upsert", workload: w });
          }
        }
        for (const [key, gone] of known) if (!seen.has(key)) out.push({ type: "delete", gone });
        known.clear();
        for (const [key, gone] of seen) known.set(key, gone);
        out.push({ type: "synced", live });
        watches = await Promise.all(
          WORKLOAD_KINDS.map((k) => this.store.watch(this.kinds[k], { fromRevision: from[k] ?? 0 })),
        );
        await this.pump(watches, out, known, signal);
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn("dispatcher: object watch broke; listing again", { err });
      } finally {
        for (const w of watches) w.stop();
      }
      if (!signal.aborted) await delay(this.relistDelayMs, signal);
    }
  }

  /** Forwards the merged watches until one ends or fails, or the signal aborts. */
  private async pump(
    watches: StoreWatch[],
    out: Channel<SourceEvent>,
    known: Map<string, GoneWorkload>,
    signal: AbortSignal,
  ): Promise<void> {
    const stop = () => watches.forEach((w) => w.stop());
    signal.addEventListener("abort", stop, { once: true });
    try {
      await Promise.race(
        WORKLOAD_KINDS.map(async (k, i) => {
          for await (const ev of watches[i]!) {
            const gone = goneOf(k, ev.type === "DELETED" && ev.previous ? ev.previous : ev.object);
            const key = sourceKey(k, gone.ns, gone.name);
            if (ev.type === "DELETED") {
              known.delete(key);
              out.push({ type: "delete", gone });
              continue;
            }
            const w = toWorkload(ev.object, this.log);
            if (!w) continue;
            known.set(key, gone);
            out.push({ type: "upsert", workload: w });
          }
          throw new Error(`watch of ${KIND_NAMES[k].plural} ended`);
        }),
      );
    } finally {
      signal.removeEventListener("abort", stop);
    }
  }
}

function goneOf(kind: WorkloadKind, obj: KubeObject): GoneWorkload {
  const m = obj.metadata;
  return {
    kind,
    ns: m.namespace,
    name: m.name,
    ...(m.uid ? { uid: m.uid } : {}),
    ...(typeof m.generation === "number" ? { generation: m.generation } : {}),
  };
}

/** Resolves after ms, or at once when the signal aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
