// The dispatcher's object store on a real nats-server KV bucket (DESIGN §2):
// resourceVersion = KV revision, create refuses a second create, update is a
// compare-and-set, watch translates KV PUT/DEL into ADDED/MODIFIED/DELETED.
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { withTimeout } from "../helpers/wait.js";
import {
  AlreadyExistsError,
  ConflictError,
  KvObjectStore,
  NotFoundError,
  ObjectTooLargeError,
  ResourceExpiredError,
  parseFieldSelector,
  parseLabelSelector,
  type KubeObject,
  type StoreEvent,
  type StoreWatch,
} from "../../controllers/dispatcher/store/index.js";

// Each test gets its own resource in the one bucket the dispatcher role may write.
let resSeq = 0;
const freshRes = () => ({ group: "beemesh.io", plural: `things${++resSeq}` });

function obj(
  name: string,
  ns = "default",
  labels: Record<string, string> = { app: name },
  replicas = 1,
): KubeObject {
  return {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name, namespace: ns, labels },
    spec: { replicas },
  };
}

async function take(w: StoreWatch, n: number): Promise<StoreEvent[]> {
  const out: StoreEvent[] = [];
  const it = w[Symbol.asyncIterator]();
  while (out.length < n) {
    const r = await withTimeout(it.next(), 5000, `watch event ${out.length + 1} of ${n}`);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

const summary = (evs: StoreEvent[]) => evs.map((e) => `${e.type} ${e.object.metadata.name}@${e.revision}`);

let nats: NatsFixture;
let nc: NatsConnection;
let store: KvObjectStore;

beforeAll(async () => {
  nats = await startNats();
  nc = await nats.connectAs(await nats.issue("dispatcher"));
  store = await KvObjectStore.open({ nc });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("KV object store", () => {
  test("the dispatcher role opens the bucket beemesh-objects; keys follow the protocol layout", async () => {
    const res = freshRes();
    expect(store.bucket).toBe("beemesh-objects");
    const created = await store.create(res, obj("first"));
    const raw = await new Kvm(nc).open(store.bucket);
    const entry = await raw.get(`${res.plural}.default.first`);
    expect(entry?.revision).toBe(Number(created.metadata.resourceVersion));
    // The stored value carries no resourceVersion of its own: the revision is the truth.
    expect(entry?.json<KubeObject>().metadata.resourceVersion).toBeUndefined();
  });

  test("resourceVersion is the KV revision; create refuses a second create; update is compare-and-set", async () => {
    const res = freshRes();
    const base = await store.currentRevision();
    const a = await store.create(res, obj("web"));
    expect(a.metadata.resourceVersion).toBe(String(base + 1));
    await expect(store.create(res, obj("web"))).rejects.toBeInstanceOf(AlreadyExistsError);
    const b = await store.update(res, { ...a, spec: { replicas: 2 } }, base + 1);
    expect(b.metadata.resourceVersion).toBe(String(base + 2));
    await expect(store.update(res, { ...a, spec: { replicas: 3 } }, base + 1)).rejects.toBeInstanceOf(
      ConflictError,
    );
    await expect(store.update(res, obj("nope"), base + 2)).rejects.toBeInstanceOf(NotFoundError);
    const read = await store.get(res, "default", "web");
    expect(read).toMatchObject({ spec: { replicas: 2 }, metadata: { resourceVersion: String(base + 2) } });
  });

  test("names with dots map to one key token and come back unchanged", async () => {
    const res = freshRes();
    await store.create(res, obj("api.v2"));
    expect((await store.get(res, "default", "api.v2"))?.metadata.name).toBe("api.v2");
    const { items } = await store.list(res, { namespace: "default" });
    expect(items.map((o) => o.metadata.name)).toEqual(["api.v2"]);
  });

  test("delete returns the last state with the deletion's revision; a stale guard is a conflict", async () => {
    const res = freshRes();
    const a = await store.create(res, obj("gone", "default", { app: "gone" }, 4));
    await expect(store.delete(res, "default", "gone", 99)).rejects.toBeInstanceOf(ConflictError);
    const last = await store.delete(res, "default", "gone", Number(a.metadata.resourceVersion));
    expect(last.spec).toEqual({ replicas: 4 });
    expect(Number(last.metadata.resourceVersion)).toBeGreaterThan(Number(a.metadata.resourceVersion));
    expect(await store.get(res, "default", "gone")).toBeUndefined();
    await expect(store.delete(res, "default", "gone")).rejects.toBeInstanceOf(NotFoundError);
    // A deleted name can be created again.
    await expect(store.create(res, obj("gone"))).resolves.toBeDefined();
  });

  test("list filters by namespace, labels and fields and returns a revision to watch from", async () => {
    const res = freshRes();
    await store.create(res, obj("a", "ns1", { tier: "web" }));
    await store.create(res, obj("b", "ns1", { tier: "db" }));
    await store.create(res, obj("c", "ns2", { tier: "web" }));
    const otherRes = freshRes();
    const last = await store.create(otherRes, obj("other", "ns1"));
    const all = await store.list(res);
    expect(all.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual([
      "ns1/a",
      "ns1/b",
      "ns2/c",
    ]);
    expect(all.revision).toBeGreaterThanOrEqual(Number(last.metadata.resourceVersion));
    expect((await store.list(res, { namespace: "ns1" })).items.map((o) => o.metadata.name)).toEqual([
      "a",
      "b",
    ]);
    const web = await store.list(res, { labelSelector: parseLabelSelector("tier=web") });
    expect(web.items.map((o) => o.metadata.name)).toEqual(["a", "c"]);
    const byName = await store.list(res, { fieldSelector: parseFieldSelector("metadata.name=c") });
    expect(byName.items.map((o) => o.metadata.name)).toEqual(["c"]);
    expect((await store.list(res, { namespace: "empty" })).items).toEqual([]);
  });

  test("a watch from no revision replays current objects as ADDED, then follows changes", async () => {
    const res = freshRes();
    const x = await store.create(res, obj("x"));
    const gone = await store.create(res, obj("y"));
    await store.delete(res, "default", "y", Number(gone.metadata.resourceVersion));
    const w = await store.watch(res, {});
    expect(summary(await take(w, 1))).toEqual([`ADDED x@${x.metadata.resourceVersion}`]);
    const x2 = await store.update(res, { ...x, spec: { replicas: 9 } }, Number(x.metadata.resourceVersion));
    const y = await store.create(res, obj("y"));
    const evs = await take(w, 2);
    expect(summary(evs)).toEqual([
      `MODIFIED x@${x2.metadata.resourceVersion}`,
      `ADDED y@${y.metadata.resourceVersion}`,
    ]);
    expect(evs[0]!.previous?.spec).toEqual({ replicas: 1 });
    w.stop();
  });

  test("a watch resumed from a revision reports what happened after it, with previous states", async () => {
    const res = freshRes();
    const a = await store.create(res, obj("a"));
    const r = Number(a.metadata.resourceVersion);
    await store.update(res, { ...a, spec: { replicas: 2 } }, r);
    await store.create(res, obj("b"));
    await store.delete(res, "default", "a");
    const w = await store.watch(res, { fromRevision: r });
    const evs = await take(w, 3);
    expect(summary(evs)).toEqual([`MODIFIED a@${r + 1}`, `ADDED b@${r + 2}`, `DELETED a@${r + 3}`]);
    expect(evs[0]!.previous?.spec).toEqual({ replicas: 1 });
    expect(evs[2]!.object.spec).toEqual({ replicas: 2 });
    w.stop();
  });

  test("a label selector turns objects leaving it into DELETED and entering it into ADDED", async () => {
    const res = freshRes();
    const w = await store.watch(res, {
      fromRevision: await store.currentRevision(),
      labelSelector: parseLabelSelector("tier=web"),
    });
    const a = await store.create(res, obj("a", "default", { tier: "web" }));
    const r = Number(a.metadata.resourceVersion);
    const moved = await store.update(res, { ...a, metadata: { ...a.metadata, labels: { tier: "db" } } }, r);
    await store.update(res, { ...moved, metadata: { ...moved.metadata, labels: { tier: "web" } } }, r + 1);
    expect(summary(await take(w, 3))).toEqual([`ADDED a@${r}`, `DELETED a@${r + 1}`, `ADDED a@${r + 2}`]);
    w.stop();
  });

  test("a revision older than the kept history is refused as expired", async () => {
    // Only an admin may make a bucket of its own; history 1 makes old revisions go at once.
    const admin = await nats.connectAs(await nats.issue("admin"));
    const small = await KvObjectStore.open({ nc: admin, bucket: "short-history", history: 1 });
    const res = freshRes();
    const a = await small.create(res, obj("a")); // 1
    const b = await small.update(res, { ...a, spec: { replicas: 2 } }, 1); // 2, drops 1
    await small.update(res, { ...b, spec: { replicas: 3 } }, 2); // 3, drops 2
    await expect(small.watch(res, { fromRevision: 1 })).rejects.toBeInstanceOf(ResourceExpiredError);
    const w = await small.watch(res, { fromRevision: 2 });
    expect(summary(await take(w, 1))).toEqual(["MODIFIED a@3"]);
    w.stop();
    await admin.close();
  });

  test("an object larger than the server's max payload is refused before it is sent", async () => {
    const res = freshRes();
    const big = obj("big");
    big.metadata.annotations = { blob: "x".repeat(1024 * 1024 + 10) };
    await expect(store.create(res, big)).rejects.toBeInstanceOf(ObjectTooLargeError);
    expect(await store.get(res, "default", "big")).toBeUndefined();
  });

  test("two stores on one bucket: a write through one shows in the other's watch", async () => {
    const nc2 = await nats.connectAs(await nats.issue("dispatcher"));
    try {
      const res = freshRes();
      const one = store;
      const two = await KvObjectStore.open({ nc: nc2 });
      const from = await two.currentRevision();
      const w = await two.watch(res, { fromRevision: from });
      await one.create(res, obj("shared"));
      const [ev] = await take(w, 1);
      expect(ev).toMatchObject({ type: "ADDED", object: { metadata: { name: "shared" } } });
      w.stop();
    } finally {
      await nc2.close();
    }
  });
});
