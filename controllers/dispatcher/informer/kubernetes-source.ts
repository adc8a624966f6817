// Workloads from a Kubernetes cluster (DESIGN §6, kind): informers on the
// BeemeshDeployment and BeemeshStatefulSet CRs (list + watch through
// CustomObjectsApi), status written through the status subresource with the
// object's resourceVersion, so a concurrent writer makes it a 409 to retry.
// Optionally mirrors each CR into the beemesh-objects KV bucket, where the
// watchdog sidecars read their Deployment's spec (DESIGN §4).
import {
  ApiException,
  CustomObjectsApi,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type ObjectCache,
} from "@kubernetes/client-node";
import {
  GROUP,
  VERSION,
  type Workload,
  type WorkloadKind,
  type WorkloadStatus,
} from "../../../protocol/index.js";
import type { Logger } from "../../common/log.js";
import { Channel } from "../fanout/channel.js";
import type { GoneWorkload } from "../fanout/fanout.js";
import {
  KIND_NAMES,
  delay,
  sourceKey,
  toWorkload,
  type SourceEvent,
  type StatusWriteOutcome,
  type WorkloadSource,
} from "../fanout/source.js";
import type { ObjectMirror } from "./mirror.js";

export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** Copies every CR into the KV objects bucket (for the watchdogs); absent: no copy. */
  mirror?: ObjectMirror;
  /** Wait before restarting an informer that stopped on an error (default 2000 ms). */
  restartDelayMs?: number;
}

const WORKLOAD_KINDS: readonly WorkloadKind[] = ["Deployment", "StatefulSet"];

type CrInformer = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

function httpCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const code = (err as { code?: unknown; statusCode?: unknown } | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

function goneOf(kind: WorkloadKind, obj: KubernetesObject): GoneWorkload {
  const m = obj.metadata ?? {};
  return {
    kind,
    ns: m.namespace ?? "",
    name: m.name ?? "",
    ...(m.uid ? { uid: m.uid } : {}),
    ...(typeof m.generation === "number" ? { generation: m.generation } : {}),
  };
}

export class KubernetesWorkloadSource implements WorkloadSource {
  private readonly api: CustomObjectsApi;
  private readonly o: KubernetesSourceOptions;

  constructor(opts: KubernetesSourceOptions) {
    this.o = opts;
    this.api = opts.kubeConfig.makeApiClient(CustomObjectsApi);
  }

  async get(kind: WorkloadKind, ns: string, name: string): Promise<Workload | undefined> {
    try {
      const obj: unknown = await this.api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: KIND_NAMES[kind].plural,
        name,
      });
      return toWorkload(obj, this.o.logger);
    } catch (err) {
      if (httpCode(err) === 404) return undefined;
      throw err;
    }
  }

  async writeStatus(w: Workload, status: WorkloadStatus): Promise<StatusWriteOutcome> {
    const kind: WorkloadKind = w.kind === "BeemeshStatefulSet" ? "StatefulSet" : "Deployment";
    try {
      await this.api.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace: w.metadata.namespace ?? "",
        plural: KIND_NAMES[kind].plural,
        name: w.metadata.name ?? "",
        // metadata.resourceVersion makes the replace conditional on our copy being current.
        body: { ...w, status },
      });
      return "written";
    } catch (err) {
      const code = httpCode(err);
      if (code === 409) return "conflict";
      if (code === 404) return "gone";
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

  private informerFor(kind: WorkloadKind): CrInformer {
    const plural = KIND_NAMES[kind].plural;
    const list = async () =>
      (await this.api.listCustomObjectForAllNamespaces({
        group: GROUP,
        version: VERSION,
        resourcePlural: plural,
      })) as KubernetesListObject<KubernetesObject>;
    return makeInformer<KubernetesObject>(this.o.kubeConfig, `/apis/${GROUP}/${VERSION}/${plural}`, list);
  }

  private async run(out: Channel<SourceEvent>, signal: AbortSignal): Promise<void> {
    const log = this.o.logger;
    const mirror = this.o.mirror;
    const informers = WORKLOAD_KINDS.map((kind) => ({
      kind,
      informer: this.informerFor(kind),
      failed: false,
    }));
    const upsert = (kind: WorkloadKind) => (obj: KubernetesObject) => {
      const w = toWorkload(obj, log);
      if (!w) return;
      if (mirror)
        void mirror
          .upsert(kind, w)
          .catch((err: unknown) => log.warn("informer: mirror write failed", { err }));
      out.push({ type: "upsert", workload: w });
    };
    const remove = (kind: WorkloadKind) => (obj: KubernetesObject) => {
      const gone = goneOf(kind, obj);
      if (mirror)
        void mirror.remove(gone).catch((err: unknown) => log.warn("informer: mirror delete failed", { err }));
      out.push({ type: "delete", gone });
    };
    for (const entry of informers) {
      entry.informer.on("add", upsert(entry.kind));
      entry.informer.on("update", upsert(entry.kind));
      entry.informer.on("delete", remove(entry.kind));
      entry.informer.on("error", (err?: unknown) => {
        entry.failed = true;
        if (!signal.aborted) log.warn("informer: stopped on an error; restarting", { kind: entry.kind, err });
      });
    }
    const stopAll = () => Promise.all(informers.map((e) => e.informer.stop()));
    signal.addEventListener("abort", () => void stopAll(), { once: true });
    try {
      // start() lists, delivers every object as "add", then opens the watch; an
      // error is reported through the "error" callback, not by rejecting.
      let synced = false;
      while (!signal.aborted && !synced) {
        for (const e of informers) e.failed = false;
        await Promise.all(informers.map((e) => e.informer.start()));
        synced = informers.every((e) => !e.failed);
        if (!synced) {
          await stopAll();
          await delay(this.o.restartDelayMs ?? 2000, signal);
        }
      }
      if (signal.aborted) return;
      const live = new Map<string, string>();
      for (const { kind, informer } of informers) {
        for (const obj of informer.list()) {
          const g = goneOf(kind, obj);
          live.set(sourceKey(kind, g.ns, g.name), g.uid ?? "");
        }
      }
      out.push({ type: "synced", live });
      // Keep restarting informers that stopped on an error until the signal aborts.
      while (!signal.aborted) {
        await delay(this.o.restartDelayMs ?? 2000, signal);
        for (const e of informers) {
          if (!e.failed || signal.aborted) continue;
          e.failed = false;
          await e.informer.start();
        }
      }
    } finally {
      await stopAll();
    }
  }
}
