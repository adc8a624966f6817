// Status aggregation: what `kubectl get bmd` shows, from provider records,
// heartbeats (fresh by their arrival time) and the dispatch record; written
// throttled, only when it changed, retried after a conflict.
import {
  parseBeemeshDeployment,
  parseBeemeshStatefulSet,
  type BeemeshDeployment,
  type Heartbeat,
  type ProviderRecord,
  type Workload,
  type WorkloadKind,
  type WorkloadStatus,
} from "../../protocol/index.js";
import {
  PodObservations,
  StatusController,
  computeStatus,
  minAvailable,
  sameStatus,
  type DispatchedView,
  type PodView,
} from "../../controllers/dispatcher/status/index.js";
import type {
  DispatchRecord,
  StatusWriteOutcome,
  WorkloadSource,
} from "../../controllers/dispatcher/fanout/index.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { sampleProvider } from "../helpers/bus.js";
import { waitFor } from "../helpers/wait.js";

function deployment(
  replicas: number,
  generation = 1,
  extra: Record<string, unknown> = {},
): BeemeshDeployment {
  const parsed = parseBeemeshDeployment({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: "web", namespace: "default", uid: "u1", generation, resourceVersion: "10" },
    spec: {
      replicas,
      selector: { matchLabels: { app: "web", tier: "front" } },
      template: {
        metadata: { labels: { app: "web", tier: "front" } },
        spec: { containers: [{ name: "a", image: "i" }] },
      },
      ...extra,
    },
  });
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

const pod = (name: string, generation: number, ready: boolean): PodView => ({
  pod: name,
  generation,
  running: true,
  ready,
});
const dispatched = (p: Partial<DispatchedView> = {}): DispatchedView => ({
  uid: "u1",
  generation: 1,
  template_generation: 1,
  replicas: 3,
  next: 3,
  ...p,
});
const NOW = "2026-03-01T10:00:00Z";
const cond = (s: WorkloadStatus, type: string) => s.conditions?.find((c) => c.type === type);

describe("computeStatus", () => {
  it("counts running, ready and updated pods; Available and Progressing say why", () => {
    const s = computeStatus({
      workload: deployment(3),
      pods: [pod("a", 1, true), pod("b", 1, true), pod("c", 1, false)],
      dispatched: dispatched(),
      nowIso: NOW,
    });
    expect(s).toMatchObject({
      replicas: 3,
      readyReplicas: 2,
      updatedReplicas: 3,
      observedGeneration: 1,
      selector: "app=web,tier=front",
    });
    expect(cond(s, "Available")).toMatchObject({
      status: "False",
      reason: "MinimumReplicasUnavailable",
      lastTransitionTime: NOW,
    });
    expect(cond(s, "Progressing")).toMatchObject({ status: "True", reason: "ReplicasUpdating" });
    const done = computeStatus({
      workload: deployment(3),
      pods: [pod("a", 1, true), pod("b", 1, true), pod("c", 1, true)],
      dispatched: dispatched(),
      nowIso: NOW,
    });
    expect(cond(done, "Available")).toMatchObject({ status: "True", reason: "MinimumReplicasAvailable" });
    expect(cond(done, "Progressing")).toMatchObject({ status: "True", reason: "NewReplicasAvailable" });
  });

  it("updated counts pods from the generation the current template first had; observedGeneration waits for the fan-out", () => {
    const w = deployment(2, 3);
    const s = computeStatus({
      workload: w,
      pods: [pod("old", 1, true), pod("new", 2, true)],
      dispatched: dispatched({ generation: 3, template_generation: 2, replicas: 2, next: 2 }),
      nowIso: NOW,
    });
    expect(s).toMatchObject({ updatedReplicas: 1, observedGeneration: 3 });
    const pending = computeStatus({
      workload: w,
      pods: [],
      dispatched: dispatched({ generation: 3, replicas: 2, next: 1 }),
      nowIso: NOW,
    });
    expect(pending.observedGeneration).toBeUndefined();
    expect(cond(pending, "Progressing")?.reason).toBe("NewGenerationPending");
    // A record of another object with the same name does not count.
    expect(
      computeStatus({
        workload: w,
        pods: [],
        dispatched: dispatched({ uid: "other", generation: 3 }),
        nowIso: NOW,
      }).observedGeneration,
    ).toBeUndefined();
  });

  it("keeps lastTransitionTime while a condition's status stays, so equal statuses are not rewritten", () => {
    const w = deployment(1);
    const first = computeStatus({
      workload: w,
      pods: [pod("a", 1, true)],
      dispatched: dispatched({ replicas: 1, next: 1 }),
      nowIso: NOW,
    });
    w.status = first;
    const again = computeStatus({
      workload: w,
      pods: [pod("a", 1, true)],
      dispatched: dispatched({ replicas: 1, next: 1 }),
      nowIso: "2026-03-01T11:00:00Z",
    });
    expect(sameStatus(first, again)).toBe(true);
    const flipped = computeStatus({
      workload: w,
      pods: [],
      dispatched: dispatched({ replicas: 1, next: 1 }),
      nowIso: "2026-03-01T11:00:00Z",
    });
    expect(cond(flipped, "Available")?.lastTransitionTime).toBe("2026-03-01T11:00:00Z");
  });

  it("needs spec - maxUnavailable ready replicas, or a Raft quorum for a StatefulSet", () => {
    expect(minAvailable(deployment(4))).toBe(4);
    expect(minAvailable(deployment(4, 1, { strategy: { rollingUpdate: { maxUnavailable: "50%" } } }))).toBe(
      2,
    );
    const sts = parseBeemeshStatefulSet({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshStatefulSet",
      metadata: { name: "db", namespace: "default", uid: "u2" },
      spec: {
        replicas: 5,
        serviceName: "db",
        selector: { matchLabels: { a: "b" } },
        template: { metadata: { labels: { a: "b" } }, spec: { containers: [{ name: "a", image: "i" }] } },
      },
    });
    if (!sts.ok) throw sts.error;
    expect(minAvailable(sts.value)).toBe(3);
  });
});

function providerRecord(
  pod: string,
  state: ProviderRecord["state"],
  generation = 1,
  kind: WorkloadKind = "Deployment",
  parent = "web",
): ProviderRecord {
  return sampleProvider(pod, state, { generation, kind, parent, ts: 1 });
}
const heartbeat = (pod: string, ready: boolean, generation = 1): Heartbeat => ({
  pod,
  node: "node-1",
  ns: "default",
  parent: "web",
  generation,
  healthy: true,
  ready,
  started_at: 0,
  spec_revision: 1,
  template_hash: "0123456789abcdef",
  slot: null,
  retiring: false,
  pending: [],
  ts: 1,
});

describe("PodObservations", () => {
  const fresh = { heartbeatTtlMs: 3000, providerTtlMs: 60_000 };

  it("a Deployment pod is ready only by a fresh heartbeat; running by a record or a heartbeat", () => {
    const obs = new PodObservations();
    obs.provider(providerRecord("web-a", "running"), 0);
    obs.provider(providerRecord("web-b", "starting"), 0);
    obs.provider(providerRecord("web-c", "failed"), 0);
    obs.heartbeat("Deployment", heartbeat("web-a", true), 1000);
    obs.heartbeat("Deployment", heartbeat("web-d", true, 2), 1000);
    expect(obs.views("Deployment/default/web", 2000, fresh)).toEqual([
      { pod: "web-a", generation: 1, running: true, ready: true },
      { pod: "web-b", generation: 1, running: true, ready: false },
      { pod: "web-d", generation: 2, running: true, ready: true },
    ]);
    // Heartbeats age out by arrival time. At 4500 ms web-a's watchdog has been
    // silent past the TTL: its pod (or node) is gone although its provider
    // record still says running; web-b's watchdog was never heard (still starting).
    expect(obs.views("Deployment/default/web", 4500, fresh).map((p) => [p.pod, p.ready])).toEqual([
      ["web-b", false],
    ]);
    obs.providerKeyGone("deployment.default.web.web-b");
    expect(obs.views("Deployment/default/web", 4500, fresh)).toEqual([]);
  });

  it("a Deployment pod that said farewell no longer runs; one heard again runs again", () => {
    const obs = new PodObservations();
    obs.provider(providerRecord("web-a", "running"), 0);
    obs.heartbeat("Deployment", { ...heartbeat("web-a", true), retiring: true }, 1000);
    expect(obs.views("Deployment/default/web", 1500, fresh)).toEqual([]);
    obs.provider(providerRecord("web-b", "running"), 0);
    obs.heartbeat("Deployment", heartbeat("web-b", true), 1000);
    expect(obs.views("Deployment/default/web", 4500, fresh)).toEqual([]);
    obs.heartbeat("Deployment", heartbeat("web-b", true), 5000);
    expect(obs.views("Deployment/default/web", 5500, fresh).map((p) => p.pod)).toEqual(["web-b"]);
  });

  it("a StatefulSet member is ready when its node reports it running; changes are announced", () => {
    const obs = new PodObservations();
    const seen: string[] = [];
    obs.onChange((k) => seen.push(k));
    obs.provider(providerRecord("db-0", "running", 1, "StatefulSet", "db"), 0);
    obs.heartbeat("Deployment", heartbeat("web-a", true), 0);
    obs.heartbeat("Deployment", { ...heartbeat("web-a", true), ts: 2 }, 100); // same counts: no announcement
    expect(obs.views("StatefulSet/default/db", 10, fresh)).toEqual([
      { pod: "db-0", generation: 1, running: true, ready: true },
    ]);
    expect(seen).toEqual(["StatefulSet/default/db", "Deployment/default/web"]);
    expect(obs.prune(120_000, 60_000).sort()).toEqual(["Deployment/default/web", "StatefulSet/default/db"]);
    expect(obs.keys()).toEqual([]);
  });
});

class FakeSource implements WorkloadSource {
  current: Workload;
  writes: WorkloadStatus[] = [];
  conflictsLeft = 0;
  constructor(w: Workload) {
    this.current = w;
  }
  events(): AsyncIterable<never> {
    return { [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined) }) };
  }
  async get() {
    return structuredClone(this.current);
  }
  async writeStatus(w: Workload, status: WorkloadStatus): Promise<StatusWriteOutcome> {
    if (this.conflictsLeft > 0) {
      this.conflictsLeft--;
      // Someone else changed the object meanwhile.
      this.current = {
        ...this.current,
        metadata: {
          ...this.current.metadata,
          resourceVersion: String(Number(this.current.metadata.resourceVersion) + 1),
        },
      };
      return "conflict";
    }
    if (w.metadata.resourceVersion !== this.current.metadata.resourceVersion) return "conflict";
    this.writes.push(status);
    this.current = {
      ...this.current,
      status,
      metadata: {
        ...this.current.metadata,
        resourceVersion: String(Number(this.current.metadata.resourceVersion) + 1),
      },
    };
    return "written";
  }
}

describe("StatusController", () => {
  const record: DispatchRecord = {
    kind: "Deployment",
    ns: "default",
    name: "web",
    uid: "u1",
    generation: 1,
    template_generation: 1,
    template_hash: "h",
    replicas: 2,
    first: 0,
    next: 2,
    manifests: [],
    ts: 0,
  };

  let computations = 0;
  function setup(source: FakeSource, obs: PodObservations, throttleMs = 200) {
    let mono = 0;
    computations = 0;
    const ctl = new StatusController({
      source,
      // Read once per computation (no cached record is given).
      records: {
        get: async () => (computations++, { record, revision: 1 }),
        put: async () => 1,
        delete: async () => undefined,
        list: async () => [],
      },
      observations: obs,
      cached: () => source.current,
      monotonic: () => (mono += 1),
      wallClock: () => new Date(Date.UTC(2026, 0, 1)),
      logger: memoryLogger("status"),
      throttleMs,
    });
    return ctl;
  }

  it("many touches inside the throttle interval give one computation and one write", async () => {
    const source = new FakeSource(deployment(2));
    const obs = new PodObservations();
    obs.heartbeat("Deployment", heartbeat("web-a", true), 0);
    const ctl = setup(source, obs);
    for (let i = 0; i < 20; i++) ctl.touch("Deployment/default/web");
    await waitFor(() => source.writes.length === 1, { what: "the status write" });
    expect(source.writes[0]).toMatchObject({ replicas: 1, readyReplicas: 1, observedGeneration: 1 });
    expect(computations).toBe(1);
    // Nothing changed: computing again gives the same status and writes nothing.
    await ctl.refresh("Deployment/default/web");
    await ctl.stop();
    expect(computations).toBe(2);
    expect(source.writes).toHaveLength(1);
    expect(ctl.written).toBe(1);
  });

  it("a conflict re-reads the object and writes again", async () => {
    const source = new FakeSource(deployment(2));
    source.conflictsLeft = 2;
    const ctl = setup(source, new PodObservations(), 0);
    ctl.touch("Deployment/default/web");
    await waitFor(() => source.writes.length === 1, { what: "the status write after conflicts" });
    await ctl.stop();
    expect(source.current.metadata.resourceVersion).toBe("13");
  });
});
