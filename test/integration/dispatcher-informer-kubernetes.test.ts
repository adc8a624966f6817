// BEEMESH_SOURCE=kubernetes against a Kubernetes-compatible endpoint: the
// dispatcher's own API server (on a separate KV bucket, standing in for a
// cluster's kube-apiserver) serves the CR kinds; the dispatcher watches them
// with @kubernetes/client-node informers, publishes the Tasks, writes status
// through the status subresource and mirrors the CR into beemesh-objects for
// the watchdogs. kind cannot run on these machines (DESIGN §8).
import { Registry } from "prom-client";
import { KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { Dispatcher } from "../../controllers/dispatcher/dispatcher.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { startApiServer, type ApiServer } from "../../controllers/dispatcher/api/server.js";
import { beemeshRegistry, objectMetaSchema } from "../../controllers/dispatcher/api/beemesh-kinds.js";
import { KvObjectStore } from "../../controllers/dispatcher/store/index.js";
import type { ReconcileResult } from "../../controllers/dispatcher/fanout/index.js";
import {
  STREAMS,
  kvKeys,
  type ProviderRecord,
  type Task,
  type WorkloadStatus,
} from "../../protocol/index.js";

const NS_PATH = "/apis/beemesh.io/v1alpha1/namespaces/default/beemeshdeployments";

let nats: NatsFixture;
let admin: NatsConnection;
let cluster: ApiServer;
let dispatcher: Dispatcher;
let watchdog: TestBus;
let timer: NodeJS.Timeout | undefined;
const reconciled: Array<{ key: string; result: ReconcileResult }> = [];
const retired: string[] = [];
const logs = memoryLogger("dispatcher");

async function tasksOf(parent: string): Promise<Task[]> {
  const info = await (await jetstreamManager(admin)).streams.info(STREAMS.tasks);
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

async function clusterGet(
  name: string,
): Promise<{ status?: WorkloadStatus; metadata: { uid: string } } | undefined> {
  const res = await fetch(`${cluster.url}${NS_PATH}/${name}`);
  return res.status === 404
    ? undefined
    : ((await res.json()) as { status?: WorkloadStatus; metadata: { uid: string } });
}

beforeAll(async () => {
  nats = await startNats();
  admin = await nats.connectAs(await nats.issue("admin"));
  // The "cluster": the API served from its own bucket, so the dispatcher's KV copy is separate.
  cluster = await startApiServer({
    store: await KvObjectStore.open({ nc: admin, bucket: "cluster-objects" }),
    kinds: beemeshRegistry(),
    objectMetaSchema: objectMetaSchema(),
    port: 0,
    devInsecure: true,
    logger: memoryLogger("cluster"),
  });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: "test", server: cluster.url, skipTLSVerify: true }],
    users: [{ name: "dispatcher" }],
    contexts: [{ name: "test", cluster: "test", user: "dispatcher" }],
    currentContext: "test",
  });
  dispatcher = await Dispatcher.start({
    natsServers: nats.urls,
    svid: await nats.issue("dispatcher"),
    source: "kubernetes",
    kubeConfig,
    shards: 4,
    logger: logs,
    registry: new Registry(),
    statusThrottleMs: 100,
    statusSweepMs: 200,
    hooks: {
      afterReconcile: (key, result) => reconciled.push({ key, result }),
      afterRetire: (key) => retired.push(key),
    },
  });
  await withTimeout(dispatcher.synced(), 15_000, "informer sync");
  watchdog = await busAs(nats, "watchdog", ["ns", "default", "deployment", "shop", "shop-a"]);
}, 40_000);

afterAll(async () => {
  if (timer) clearInterval(timer);
  await watchdog?.bus.close();
  await dispatcher?.stop();
  await cluster?.close();
  await admin?.close();
  await nats?.stop();
});

test("a CR created in the cluster is published by the informer-driven dispatcher, which writes its status back", async () => {
  expect(dispatcher.api).toBeUndefined();
  const res = await fetch(`${cluster.url}${NS_PATH}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name: "shop", namespace: "default" },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "shop" } },
        template: {
          metadata: { labels: { app: "shop" } },
          spec: { containers: [{ name: "app", image: "localhost/shop:1" }] },
        },
      },
    }),
  });
  expect(res.status).toBe(201);
  const result = await waitFor(() => reconciled.find((r) => r.key === "Deployment/default/shop")?.result, {
    timeoutMs: 15_000,
    what: "informer-driven reconcile",
  });
  expect(result).toMatchObject({ reason: "new", generation: 1, published: 2 });
  const tasks = await tasksOf("shop");
  expect(tasks).toHaveLength(2);
  const uid = (await clusterGet("shop"))!.metadata.uid;
  expect(tasks.every((t) => t.parent_uid === uid)).toBe(true);

  // The watchdogs' copy in beemesh-objects.
  const objects: KV = await new Kvm(admin).open("beemesh-objects");
  const copy = await waitFor(
    async () => (await objects.get("beemeshdeployments.default.shop"))?.json<{ metadata: { uid: string } }>(),
    {
      what: "the KV mirror",
    },
  );
  expect(copy.metadata.uid).toBe(uid);

  // Status through the cluster's status subresource: observed, then a running and ready pod.
  await waitFor(async () => (await clusterGet("shop"))?.status?.observedGeneration === 1, {
    what: "observedGeneration",
  });
  const node = await nats.connectAs(await nats.issue("scheduler-bidder", "node", "node-1"));
  try {
    const record: ProviderRecord = {
      ns: "default",
      kind: "Deployment",
      parent: "shop",
      pod: "shop-a",
      node_id: "node-1",
      task_id: tasks[0]!.task_id,
      fencing_token: 1,
      generation: 1,
      state: "running",
      ts: Date.now(),
    };
    await (
      await new Kvm(node).open("beemesh-providers")
    ).put(kvKeys.provider("Deployment", "default", "shop", "shop-a"), JSON.stringify(record));
  } finally {
    await node.close();
  }
  const send = () =>
    watchdog.bus.publish("beemesh.watchdog.default.shop", "Heartbeat", {
      pod: "shop-a",
      node: "node-1",
      ns: "default",
      parent: "shop",
      generation: 1,
      healthy: true,
      ready: true,
      started_at: Date.now(),
      spec_revision: 1,
      template_hash: "0123456789abcdef",
      slot: null,
      retiring: false,
      pending: [],
      ts: Date.now(),
    });
  send();
  timer = setInterval(send, 200);
  const status = await waitFor(
    async () => {
      const s = (await clusterGet("shop"))?.status;
      return s?.readyReplicas === 1 ? s : undefined;
    },
    { timeoutMs: 15_000, what: "readyReplicas through the status subresource" },
  );
  expect(status).toMatchObject({ replicas: 1, readyReplicas: 1, updatedReplicas: 1, selector: "app=shop" });
});

test("a scale through the cluster is left to the live watchdog; a delete retires the workload and its KV copy", async () => {
  const res = await fetch(`${cluster.url}${NS_PATH}/shop`, {
    method: "PATCH",
    headers: { "content-type": "application/merge-patch+json" },
    body: JSON.stringify({ spec: { replicas: 3 } }),
  });
  expect(res.status).toBe(200);
  const scaled = await waitFor(
    () => reconciled.find((r) => r.key === "Deployment/default/shop" && r.result.generation === 2)?.result,
    { timeoutMs: 15_000, what: "reconcile of generation 2" },
  );
  // shop-a runs (its provider record): its watchdog clones the new replica, the dispatcher only records it.
  expect(scaled).toMatchObject({ reason: "scaled-up", published: 0, byWatchdogs: true, live: 1 });
  expect(scaled.record).toMatchObject({ generation: 2, replicas: 3, next: 3 });
  expect(await tasksOf("shop")).toHaveLength(2);
  // Status writes (same generation) caused no further fan-out.
  expect(reconciled.filter((r) => r.key === "Deployment/default/shop")).toHaveLength(2);

  const del = await fetch(`${cluster.url}${NS_PATH}/shop`, { method: "DELETE" });
  expect(del.status).toBe(200);
  await waitFor(() => retired.includes("Deployment/default/shop"), { timeoutMs: 15_000, what: "retire" });
  const objects: KV = await new Kvm(admin).open("beemesh-objects");
  await waitFor(async () => (await objects.get("beemeshdeployments.default.shop"))?.operation !== "PUT", {
    what: "mirror removed",
  });
  expect((await objects.get("dispatch.deployment.default.shop"))?.operation).not.toBe("PUT");
  expect(logs.lines.filter((l) => l["level"] === "error")).toEqual([]);
});
