// The in-memory ObjectStore keeps the NATS KV store's contract (revisions over
// the whole store, compare-and-set, watch semantics), and the fan-out feed
// built on any store.
import {
  AlreadyExistsError,
  ConflictError,
  MemoryObjectStore,
  NotFoundError,
  ObjectTooLargeError,
  ResourceExpiredError,
  needsRollout,
  parseLabelSelector,
  watchResources,
  type KubeObject,
  type StoreEvent,
  type StoreWatch,
} from "../../controllers/dispatcher/store/index.js";

const BMD = { group: "beemesh.io", plural: "beemeshdeployments" };
const BMSS = { group: "beemesh.io", plural: "beemeshstatefulsets" };

const obj = (
  name: string,
  labels: Record<string, string> = {},
  generation = 1,
  ns = "default",
): KubeObject => ({
  apiVersion: "beemesh.io/v1alpha1",
  kind: "BeemeshDeployment",
  metadata: { name, namespace: ns, labels, generation },
  spec: { replicas: 1 },
});

async function take<T>(it: AsyncIterable<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  const iter = it[Symbol.asyncIterator]();
  while (out.length < n) {
    const r = await iter.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

const line = (e: StoreEvent) => `${e.type} ${e.object.metadata.name}@${e.revision}`;

test("revisions count over the whole store; create, update and delete keep their contracts", async () => {
  const s = new MemoryObjectStore();
  const a = await s.create(BMD, obj("a"));
  const b = await s.create(BMSS, obj("b"));
  expect([a.metadata.resourceVersion, b.metadata.resourceVersion]).toEqual(["1", "2"]);
  await expect(s.create(BMD, obj("a"))).rejects.toBeInstanceOf(AlreadyExistsError);
  await expect(s.update(BMD, obj("a"), 5)).rejects.toBeInstanceOf(ConflictError);
  await expect(s.update(BMD, obj("zz"), 1)).rejects.toBeInstanceOf(NotFoundError);
  const gone = await s.delete(BMD, "default", "a", 1);
  expect(gone.metadata.resourceVersion).toBe("3");
  await expect(s.delete(BMD, "default", "a")).rejects.toBeInstanceOf(NotFoundError);
  expect(await s.currentRevision()).toBe(3);
  // Reads are copies: changing one does not change the store.
  const read = (await s.get(BMSS, "default", "b"))!;
  read.metadata.name = "changed";
  expect((await s.get(BMSS, "default", "b"))!.metadata.name).toBe("b");
});

test("objects over the size limit are refused", async () => {
  const s = new MemoryObjectStore({ maxObjectBytes: 100 });
  const big = obj("big");
  big.metadata.annotations = { x: "y".repeat(200) };
  await expect(s.create(BMD, big)).rejects.toBeInstanceOf(ObjectTooLargeError);
});

test("watches resume from a revision, follow selectors and expire with compaction", async () => {
  const s = new MemoryObjectStore();
  const a = await s.create(BMD, obj("a", { tier: "web" }));
  await s.update(BMD, { ...a, metadata: { ...a.metadata, labels: { tier: "db" } } }, 1);
  await s.create(BMD, obj("b", { tier: "web" }));
  const all = await s.watch(BMD, { fromRevision: 0 });
  expect((await take(all, 3)).map(line)).toEqual(["ADDED a@1", "MODIFIED a@2", "ADDED b@3"]);
  const web = await s.watch(BMD, { fromRevision: 0, labelSelector: parseLabelSelector("tier=web") });
  expect((await take(web, 3)).map(line)).toEqual(["ADDED a@1", "DELETED a@2", "ADDED b@3"]);
  all.stop();
  web.stop();
  s.compact(2);
  await expect(s.watch(BMD, { fromRevision: 1 })).rejects.toBeInstanceOf(ResourceExpiredError);
  const fresh: StoreWatch = await s.watch(BMD, { fromRevision: 2 });
  expect((await take(fresh, 1)).map(line)).toEqual(["ADDED b@3"]);
});

test("the fan-out feed merges resources and says which changes need a rollout", async () => {
  const s = new MemoryObjectStore();
  const feed = await watchResources(s, [BMD, BMSS], { fromRevision: 0 });
  const a = await s.create(BMD, obj("a"));
  await s.update(BMD, { ...a, metadata: { ...a.metadata, labels: { x: "y" } } }, 1); // metadata only
  await s.create(BMSS, obj("db"));
  await s.update(BMD, { ...a, metadata: { ...a.metadata, generation: 2 } }, 2); // spec change
  await s.delete(BMD, "default", "a");
  const events = await take(feed, 5);
  expect(events.map((e) => `${e.resource.plural} ${line(e.event)} ${needsRollout(e.event)}`)).toEqual([
    "beemeshdeployments ADDED a@1 true",
    "beemeshdeployments MODIFIED a@2 false",
    "beemeshstatefulsets ADDED db@3 true",
    "beemeshdeployments MODIFIED a@4 true",
    "beemeshdeployments DELETED a@5 false",
  ]);
  feed.stop();
});
