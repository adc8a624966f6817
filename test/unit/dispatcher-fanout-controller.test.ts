// The fan-out controller against in-memory ports: manifests before Tasks,
// deterministic ids, checkpoints, crash and restart, scale, template change,
// StatefulSet scale-down and deletion. The fake stream drops a repeated task
// id the way JetStream's dedup window does.
import {
  parseBeemeshStatefulSet,
  type BeemeshStatefulSet,
  type Event,
  type ProviderRecord,
  type RemoveRequest,
  type Task,
  type WorkloadKind,
} from "../../protocol/index.js";
import { Fanout, type FanoutHooks, type LiveReplicas } from "../../controllers/dispatcher/fanout/index.js";
import {
  FakeManifests,
  FakeRecords,
  FakeStream,
  deployment,
  fakeFanoutOptions,
} from "../helpers/fanout-fakes.js";

interface World {
  stream: FakeStream;
  manifests: FakeManifests;
  records: FakeRecords;
  providers: ProviderRecord[];
  removed: Array<{ node: string; req: RemoveRequest }>;
  events: Array<{ event: Event; msgID: string }>;
}

function world(): World {
  const stream = new FakeStream();
  return {
    stream,
    manifests: new FakeManifests(stream.log),
    records: new FakeRecords(),
    providers: [],
    removed: [],
    events: [],
  };
}

function fanout(
  w: World,
  extra: {
    hooks?: FanoutHooks;
    checkpointEvery?: number;
    publishConcurrency?: number;
    liveReplicas?: LiveReplicas;
  } = {},
): Fanout {
  return new Fanout({
    ...fakeFanoutOptions(w),
    providers: {
      list: async (kind: WorkloadKind, ns: string, parent: string) =>
        w.providers.filter((p) => p.kind === kind && p.ns === ns && p.parent === parent),
    },
    remover: { remove: async (node: string, req: RemoveRequest) => void w.removed.push({ node, req }) },
    events: { publishEvent: async (event: Event, msgID: string) => void w.events.push({ event, msgID }) },
    ...extra,
  });
}

function statefulSet(generation: number, replicas: number): BeemeshStatefulSet {
  const parsed = parseBeemeshStatefulSet({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshStatefulSet",
    metadata: { name: "db", namespace: "default", uid: "uid-db", generation },
    spec: {
      replicas,
      serviceName: "db",
      selector: { matchLabels: { app: "db" } },
      template: {
        metadata: { labels: { app: "db" } },
        spec: { containers: [{ name: "app", image: "localhost/db:1" }] },
      },
    },
  });
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

const slotsOf = (tasks: Task[], generation: number) =>
  tasks.filter((t) => t.generation === generation).map((t) => t.manifest_ref.key).length;

describe("fan-out of a BeemeshDeployment", () => {
  it("stores the manifest before the first Task, then publishes N Tasks on their shards", async () => {
    const w = world();
    const result = await fanout(w).reconcile(deployment(1, 3));
    expect(result).toMatchObject({ reason: "new", generation: 1, published: 3, duplicates: 0 });
    expect(w.stream.log[0]).toMatch(/^manifest sha256\./);
    expect(w.stream.log.slice(1).every((l) => l.startsWith("task "))).toBe(true);
    expect(w.stream.accepted).toHaveLength(3);
    for (const [i, t] of w.stream.accepted.entries()) {
      expect(w.manifests.stored.has(t.manifest_ref.key)).toBe(true);
      expect(w.stream.subjects[i]).toMatch(/^beemesh\.scheduler\.tasks\.[0-3]$/);
    }
    expect(result.record).toMatchObject({
      generation: 1,
      replicas: 3,
      first: 0,
      next: 3,
      template_generation: 1,
    });
    expect(result.record?.manifests).toEqual([
      { key: w.stream.accepted[0]!.manifest_ref.key, sha256: w.stream.accepted[0]!.manifest_ref.sha256 },
    ]);
    // Level-based: the same object again publishes nothing.
    expect(await fanout(w).reconcile(deployment(1, 3))).toMatchObject({ reason: "up-to-date", published: 0 });
    expect(w.stream.attempts).toBe(3);
  });

  it("with no replica alive: scale up publishes only the new slots; a template change N for the new generation; scale down none", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 3));
    expect(await f.reconcile(deployment(2, 5))).toMatchObject({ reason: "scaled-up", published: 2 });
    expect(slotsOf(w.stream.accepted, 2)).toBe(2);
    expect(await f.reconcile(deployment(3, 5, "localhost/app:2"))).toMatchObject({
      reason: "template-changed",
      published: 5,
    });
    expect(slotsOf(w.stream.accepted, 3)).toBe(5);
    expect(
      new Set(w.stream.accepted.filter((t) => t.generation === 3).map((t) => t.manifest_ref.key)).size,
    ).toBe(1);
    expect(await f.reconcile(deployment(4, 2, "localhost/app:2"))).toMatchObject({
      reason: "scaled-down",
      published: 0,
    });
    expect(await f.reconcile(deployment(5, 4, "localhost/app:2"))).toMatchObject({
      reason: "scaled-up",
      published: 2,
    });
    const rec = w.records.current();
    expect(rec).toMatchObject({ generation: 5, replicas: 4, next: 4, template_generation: 3 });
    expect(w.stream.accepted).toHaveLength(3 + 2 + 5 + 2);
  });

  it("a dispatcher that dies after the manifests and k of N Tasks is replaced without duplicates", async () => {
    const w = world();
    const crash = new Error("killed");
    const hooks: FanoutHooks = {
      afterTaskPublished: (_t, index) => {
        if (index === 1) throw crash;
      },
    };
    await expect(fanout(w, { hooks, publishConcurrency: 1 }).reconcile(deployment(1, 5))).rejects.toBe(crash);
    expect(w.stream.accepted).toHaveLength(2);
    // The record names the generation's manifests before the first Task, with no progress yet.
    const early = w.records.current();
    expect(early).toMatchObject({ generation: 1, next: 0, manifests: [{ key: expect.any(String) }] });
    expect(early.task?.reqs).toBeDefined();
    const result = await fanout(w).reconcile(deployment(1, 5));
    expect(result).toMatchObject({ reason: "resume", published: 5, duplicates: 2 });
    expect(w.stream.accepted).toHaveLength(5);
    expect(new Set(w.stream.accepted.map((t) => t.task_id)).size).toBe(5);
  });

  it("a crash between storing the manifests and the first Task leaves nothing published; the restart publishes N", async () => {
    const w = world();
    const hooks: FanoutHooks = {
      afterManifestsStored: () => {
        throw new Error("killed");
      },
    };
    await expect(fanout(w, { hooks }).reconcile(deployment(1, 4))).rejects.toThrow("killed");
    expect(w.manifests.stored.size).toBe(1);
    expect(w.stream.accepted).toHaveLength(0);
    expect(await fanout(w).reconcile(deployment(1, 4))).toMatchObject({ published: 4, duplicates: 0 });
  });

  it("checkpoints progress, so a restart re-publishes at most the Tasks since the last checkpoint", async () => {
    const w = world();
    const hooks: FanoutHooks = {
      afterTaskPublished: (_t, index) => {
        if (index === 4) throw new Error("killed");
      },
    };
    await expect(
      fanout(w, { hooks, checkpointEvery: 2, publishConcurrency: 1 }).reconcile(deployment(1, 6)),
    ).rejects.toThrow("killed");
    expect(w.records.current()).toMatchObject({ generation: 1, first: 0, next: 4 });
    const result = await fanout(w).reconcile(deployment(1, 6));
    expect(result).toMatchObject({ reason: "resume", published: 2, duplicates: 1 });
    expect(w.stream.accepted).toHaveLength(6);
  });

  it("two dispatchers reconciling at once publish each Task once and agree on the record", async () => {
    const w = world();
    const [a, b] = await Promise.all([
      fanout(w).reconcile(deployment(1, 8)),
      fanout(w).reconcile(deployment(1, 8)),
    ]);
    expect(a.published + b.published).toBe(16);
    expect(w.stream.accepted).toHaveLength(8);
    expect(w.records.current()).toMatchObject({ generation: 1, next: 8 });
  });

  it("an object being deleted (deletionTimestamp) gets no Tasks", async () => {
    const w = world();
    const d = deployment(2, 3);
    d.metadata.deletionTimestamp = "2026-01-01T00:00:10Z";
    expect(await fanout(w).reconcile(d)).toMatchObject({ reason: "deleting", published: 0 });
    expect(w.stream.attempts).toBe(0);
  });
});

describe("later generations of a BeemeshDeployment with live watchdogs", () => {
  const running = (w: World, n: number) => {
    w.providers = w.providers.filter((p) => p.parent !== "web");
    for (let i = 0; i < n; i++) w.providers.push(provider("Deployment", "web", `web-${i}`, `node-${i}`));
  };

  it("create -> template change -> scale: Tasks only at creation; the record follows every generation", async () => {
    const w = world();
    const f = fanout(w);
    expect(await f.reconcile(deployment(1, 3))).toMatchObject({ reason: "new", published: 3 });
    running(w, 3);
    const changed = await f.reconcile(deployment(2, 3, "localhost/app:2"));
    expect(changed).toMatchObject({
      reason: "template-changed",
      published: 0,
      byWatchdogs: true,
      live: 3,
    });
    // The watchdogs' clones read the new manifest from the record: stored, and named there.
    const manifest = changed.record!.manifests[0]!;
    expect(w.manifests.stored.has(manifest.key)).toBe(true);
    expect(manifest.key).not.toBe(w.stream.accepted[0]!.manifest_ref.key);
    expect(changed.record).toMatchObject({
      generation: 2,
      template_generation: 2,
      replicas: 3,
      first: 3,
      next: 3,
    });
    expect(changed.record!.task).toBeDefined();
    expect(await f.reconcile(deployment(3, 5, "localhost/app:2"))).toMatchObject({
      reason: "scaled-up",
      published: 0,
      byWatchdogs: true,
    });
    expect(await f.reconcile(deployment(4, 1, "localhost/app:2"))).toMatchObject({
      reason: "scaled-down",
      published: 0,
    });
    expect(w.stream.accepted).toHaveLength(3);
    expect(w.records.current()).toMatchObject({
      generation: 4,
      replicas: 1,
      next: 1,
      template_generation: 2,
    });
    // Level-based: the same generation again changes nothing.
    expect(await f.reconcile(deployment(4, 1, "localhost/app:2"))).toMatchObject({ reason: "up-to-date" });
  });

  it("scale to 0 -> scale to 3 publishes 3 Tasks, even while the old pods are still on their way out", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 2));
    running(w, 2);
    expect(await f.reconcile(deployment(2, 0))).toMatchObject({ reason: "scaled-down", published: 0 });
    // Their provider records linger until their nodes removed them; every watchdog retires on seeing 0.
    const up = await f.reconcile(deployment(3, 3));
    expect(up).toMatchObject({ reason: "scaled-up", published: 3, byWatchdogs: false });
    expect(w.stream.accepted.filter((t) => t.generation === 3)).toHaveLength(3);
    expect(up.record).toMatchObject({ generation: 3, first: 0, next: 3 });
    // Once they run, the next change is theirs again.
    running(w, 3);
    expect(await f.reconcile(deployment(4, 3, "localhost/app:2"))).toMatchObject({
      published: 0,
      byWatchdogs: true,
    });
  });

  it("with every replica gone (no record, or failed ones) the dispatcher publishes the change itself", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 3));
    running(w, 3);
    for (const p of w.providers) p.state = "failed";
    expect(await f.reconcile(deployment(2, 3, "localhost/app:2"))).toMatchObject({
      reason: "template-changed",
      published: 3,
      byWatchdogs: false,
      live: 0,
    });
    w.providers.length = 0;
    expect(await f.reconcile(deployment(3, 4, "localhost/app:2"))).toMatchObject({
      reason: "scaled-up",
      published: 1,
      live: 0,
    });
  });

  it("counts live replicas only when a later generation needs it, through the port it is given", async () => {
    const w = world();
    const asked: string[] = [];
    let live = 2;
    const f = fanout(w, {
      liveReplicas: {
        count: async (kind, ns, parent) => {
          asked.push(`${kind}/${ns}/${parent}`);
          return live;
        },
      },
    });
    await f.reconcile(deployment(1, 2));
    await f.reconcile(deployment(1, 2));
    await f.reconcile(statefulSet(1, 1));
    await f.reconcile(statefulSet(2, 2));
    expect(asked).toEqual([]);
    expect(await f.reconcile(deployment(2, 4))).toMatchObject({ published: 0, byWatchdogs: true });
    expect(asked).toEqual(["Deployment/default/web"]);
    // None left: the new slot gets a Task, and its watchdog clones what else is missing.
    live = 0;
    expect(await f.reconcile(deployment(3, 5))).toMatchObject({ published: 1, byWatchdogs: false });
  });

  it("a census that fails fails the reconcile before anything is recorded (the queue retries it)", async () => {
    const w = world();
    const failure = new Error("kv down");
    let fail = false;
    const f = fanout(w, {
      liveReplicas: {
        count: async () => {
          if (fail) throw failure;
          return 1;
        },
      },
    });
    await f.reconcile(deployment(1, 2));
    fail = true;
    await expect(f.reconcile(deployment(2, 2, "localhost/app:2"))).rejects.toBe(failure);
    expect(w.records.current().generation).toBe(1);
    fail = false;
    expect(await f.reconcile(deployment(2, 2, "localhost/app:2"))).toMatchObject({ byWatchdogs: true });
  });
});

function provider(
  kind: WorkloadKind,
  parent: string,
  pod: string,
  node: string,
  ordinal?: number,
): ProviderRecord {
  return {
    ns: "default",
    kind,
    parent,
    pod,
    node_id: node,
    task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
    fencing_token: 7,
    generation: 1,
    ...(ordinal !== undefined ? { ordinal } : {}),
    state: "running",
    ts: 1,
  };
}

describe("fan-out of a BeemeshStatefulSet", () => {
  it("stores one manifest per ordinal and publishes one Task per ordinal", async () => {
    const w = world();
    const result = await fanout(w).reconcile(statefulSet(1, 3));
    expect(result.published).toBe(3);
    expect(w.manifests.stored.size).toBe(3);
    expect(w.stream.accepted.map((t) => t.ordinal).sort()).toEqual([0, 1, 2]);
    expect(result.record?.manifests).toHaveLength(3);
  });

  it("scale-down asks the nodes running the ordinals above the new count to remove them", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(statefulSet(1, 3));
    w.providers.push(
      provider("StatefulSet", "db", "db-0", "node-a", 0),
      provider("StatefulSet", "db", "db-1", "node-b", 1),
      provider("StatefulSet", "db", "db-2", "node-c", 2),
    );
    const result = await f.reconcile(statefulSet(2, 1));
    expect(result).toMatchObject({ reason: "scaled-down", published: 0, removed: 2 });
    expect(w.removed.map((r) => [r.node, r.req.pod, r.req.reason]).sort()).toEqual([
      ["node-b", "db-1", "scale-down"],
      ["node-c", "db-2", "scale-down"],
    ]);
    expect(w.removed[0]!.req.fencing_token).toBe(7);
  });
});

describe("retiring a deleted workload", () => {
  it("asks node agents to remove its pods, publishes one notice and forgets the record", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 2));
    w.providers.push(
      provider("Deployment", "web", "web-a", "node-a"),
      provider("Deployment", "web", "web-b", "node-b"),
    );
    w.providers.push(provider("Deployment", "other", "other-a", "node-a"));
    const result = await f.retire({
      kind: "Deployment",
      ns: "default",
      name: "web",
      uid: "uid-1",
      generation: 1,
    });
    expect(result).toEqual({ asked: 2, removed: 2 });
    expect(w.removed.map((r) => r.req.pod).sort()).toEqual(["web-a", "web-b"]);
    expect(w.removed.every((r) => r.req.reason === "delete")).toBe(true);
    expect(w.events).toHaveLength(1);
    expect(w.events[0]).toMatchObject({
      msgID: "delete-uid-1",
      event: { status: "removed", parent: "web", kind: "Deployment" },
    });
    expect(w.records.map.size).toBe(0);
  });

  it("leaves a newer object of the same name alone", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 2));
    w.providers.push(provider("Deployment", "web", "web-a", "node-a"));
    expect(await f.retire({ kind: "Deployment", ns: "default", name: "web", uid: "uid-0" })).toEqual({
      asked: 0,
      removed: 0,
    });
    expect(w.removed).toHaveLength(0);
    expect(w.records.map.size).toBe(1);
  });

  it("finds records whose object is gone (deleted while no dispatcher watched)", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 1));
    await f.reconcile(statefulSet(1, 1));
    const orphans = await f.orphans(new Map([["StatefulSet/default/db", "uid-db"]]));
    expect(orphans.map((o) => `${o.kind}/${o.name}`)).toEqual(["Deployment/web"]);
    // Same name, other uid: the record is of an object that no longer exists.
    expect(
      (
        await f.orphans(
          new Map([
            ["Deployment/default/web", "uid-2"],
            ["StatefulSet/default/db", "uid-db"],
          ]),
        )
      ).length,
    ).toBe(1);
  });
});
