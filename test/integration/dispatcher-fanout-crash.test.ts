// "Kill a dispatcher between manifest store and task publish, then restart
// it": a crash point stops a dispatcher after its manifests are stored (and
// after k of N Tasks), the dead one is stopped, a fresh one starts on the same
// NATS and the stream ends up with exactly N Tasks: deterministic task ids and
// JetStream's Nats-Msg-Id dedup drop what the first one already sent.
import { Registry } from "prom-client";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { Dispatcher, type DispatcherHooks } from "../../controllers/dispatcher/dispatcher.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { KvObjectStore } from "../../controllers/dispatcher/store/index.js";
import type { ReconcileResult } from "../../controllers/dispatcher/fanout/index.js";
import { STREAMS, type Task } from "../../protocol/index.js";

const NS_PATH = "/apis/beemesh.io/v1alpha1/namespaces/default/beemeshdeployments";

let nats: NatsFixture;
let admin: NatsConnection;
let jsm: JetStreamManager;
const running = new Set<Dispatcher>();

async function startDispatcher(hooks: DispatcherHooks = {}, publishConcurrency = 8): Promise<Dispatcher> {
  const d = await Dispatcher.start({
    natsServers: nats.urls,
    svid: await nats.issue("dispatcher"),
    source: "api",
    api: { port: 0, devInsecure: true },
    shards: 8,
    logger: memoryLogger("dispatcher"),
    registry: new Registry(),
    publishConcurrency,
    hooks,
  });
  running.add(d);
  await withTimeout(d.synced(), 10_000, "dispatcher sync");
  return d;
}

async function kill(d: Dispatcher): Promise<void> {
  running.delete(d);
  await d.stop();
}

async function tasksOf(parent: string): Promise<Task[]> {
  const info = await jsm.streams.info(STREAMS.tasks);
  if (info.state.messages === 0) return [];
  const consumer = await jetstream(admin).consumers.get(STREAMS.tasks);
  const out: Task[] = [];
  for await (const m of await consumer.fetch({ max_messages: info.state.messages, expires: 5000 })) {
    const task = (JSON.parse(new TextDecoder().decode(m.data)) as { payload: Task }).payload;
    if (task.parent === parent) out.push(task);
    if (m.info.pending === 0) break;
  }
  return out;
}

async function create(d: Dispatcher, name: string, replicas: number): Promise<void> {
  const res = await fetch(`${d.api!.url}${NS_PATH}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name, namespace: "default" },
      spec: {
        replicas,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: { containers: [{ name: "app", image: "localhost/app:1" }] },
        },
      },
    }),
  });
  expect(res.status).toBe(201);
}

/** A crash point: once it fires, this dispatcher acts as dead (every later reconcile dies before publishing). */
function crashPoint(when: { afterManifests: true } | { afterTask: number }) {
  let fired!: () => void;
  const crashed = new Promise<void>((r) => (fired = r));
  let dead = false;
  const die = () => {
    dead = true;
    fired();
    throw new Error("dispatcher killed by the test");
  };
  const hooks: DispatcherHooks = {
    afterManifestsStored: () => {
      if (dead || "afterManifests" in when) die();
    },
    afterTaskPublished: (_task, index) => {
      if ("afterTask" in when && index === when.afterTask - 1) die();
    },
  };
  return { hooks, crashed };
}

function reconciled(results: Array<{ key: string; result: ReconcileResult }>, key: string) {
  return waitFor(() => results.find((r) => r.key === key)?.result, {
    timeoutMs: 15_000,
    what: `reconcile of ${key}`,
  });
}

beforeAll(async () => {
  nats = await startNats();
  admin = await nats.connectAs(await nats.issue("admin"));
  jsm = await jetstreamManager(admin);
}, 30_000);

afterAll(async () => {
  for (const d of running) await d.stop();
  await admin?.close();
  await nats?.stop();
});

test("killed after the manifests and 4 of 10 Tasks: a fresh dispatcher completes to exactly 10", async () => {
  const { hooks, crashed } = crashPoint({ afterTask: 4 });
  const first = await startDispatcher(hooks, 1);
  await create(first, "web", 10);
  await withTimeout(crashed, 15_000, "the crash point");
  await kill(first);

  const sent = await tasksOf("web");
  expect(sent).toHaveLength(4);
  // The manifest the Tasks name was stored before them.
  const manifests = await new Kvm(admin).open("beemesh-manifests");
  expect((await manifests.get(sent[0]!.manifest_ref.key))?.operation).toBe("PUT");

  const results: Array<{ key: string; result: ReconcileResult }> = [];
  await startDispatcher({ afterReconcile: (key, result) => results.push({ key, result }) });
  const result = await reconciled(results, "Deployment/default/web");
  // The record named the generation's manifest before the first Task, with no progress
  // checkpointed yet: the restart resumes from 0 and the stream drops the four it already had.
  expect(result).toMatchObject({ reason: "resume", published: 10, duplicates: 4 });
  const tasks = await tasksOf("web");
  expect(tasks).toHaveLength(10);
  expect(new Set(tasks.map((t) => t.task_id)).size).toBe(10);
  expect(tasks.every((t) => t.generation === 1)).toBe(true);
});

test("killed right after storing the manifests: nothing was published, the restart publishes exactly N", async () => {
  for (const d of [...running]) await kill(d);
  const { hooks, crashed } = crashPoint({ afterManifests: true });
  const first = await startDispatcher(hooks);
  await create(first, "api", 6);
  await withTimeout(crashed, 15_000, "the crash point");
  await kill(first);
  expect(await tasksOf("api")).toHaveLength(0);

  const results: Array<{ key: string; result: ReconcileResult }> = [];
  await startDispatcher({ afterReconcile: (key, result) => results.push({ key, result }) });
  expect(await reconciled(results, "Deployment/default/api")).toMatchObject({ published: 6, duplicates: 0 });
  const tasks = await tasksOf("api");
  expect(tasks).toHaveLength(6);
  expect(new Set(tasks.map((t) => t.task_id)).size).toBe(6);
  // The first object was finished earlier and stays as it was.
  expect(await tasksOf("web")).toHaveLength(10);
  expect((await reconciled(results, "Deployment/default/web")).reason).toBe("up-to-date");
});

test("an object deleted while no dispatcher ran is retired by the next one from its orphaned record", async () => {
  for (const d of [...running]) await kill(d);
  const objects = await new Kvm(admin).open("beemesh-objects");
  expect((await objects.get("dispatch.deployment.default.api"))?.operation).toBe("PUT");
  // Straight in the store, as if the API that accepted the delete died before any fan-out saw it.
  const store = await KvObjectStore.open({ nc: admin });
  await store.delete({ group: "beemesh.io", plural: "beemeshdeployments" }, "default", "api");

  const retired: string[] = [];
  await startDispatcher({ afterRetire: (key) => retired.push(key) });
  await waitFor(() => retired.includes("Deployment/default/api"), {
    timeoutMs: 15_000,
    what: "orphan retired",
  });
  expect((await objects.get("dispatch.deployment.default.api"))?.operation).not.toBe("PUT");
  expect((await objects.get("dispatch.deployment.default.web"))?.operation).toBe("PUT");
  expect(retired).toEqual(["Deployment/default/api"]);
});
