// The dispatcher's view of a workload's pods (kvProviderDirectory, and the live
// count a later Deployment generation is planned with), read with the
// dispatcher's own NATS permissions from beemesh-providers: only this
// workload's records, deleted ones left out, and no hang while node agents
// delete records as it reads (kv.keys() could wait forever there).
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { ensureSchedulingInfra } from "../../controllers/common/nats-setup.js";
import { kvProviderDirectory, liveReplicasFrom } from "../../controllers/dispatcher/fanout/index.js";
import {
  BUCKETS,
  kvKeys,
  type ProviderRecord,
  type ProviderState,
  type WorkloadKind,
} from "../../protocol/index.js";
import { sampleProvider } from "../helpers/bus.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { withTimeout } from "../helpers/wait.js";

let nats: NatsFixture;
let dispatcherNc: NatsConnection;
let nodeNc: NatsConnection;
let nodeKv: KV;

const record = (kind: WorkloadKind, parent: string, pod: string, state: ProviderState): ProviderRecord =>
  sampleProvider(pod, state, { kind, parent, ts: Date.now() });

const put = (r: ProviderRecord) =>
  nodeKv.put(kvKeys.provider(r.kind, r.ns, r.parent, r.pod), JSON.stringify(r));

beforeAll(async () => {
  nats = await startNats();
  dispatcherNc = await nats.connectAs(await nats.issue("dispatcher"));
  await ensureSchedulingInfra(dispatcherNc, { storage: "memory" });
  nodeNc = await nats.connectAs(await nats.issue("scheduler-bidder", "node", "node-1"));
  nodeKv = await new Kvm(nodeNc).open(BUCKETS.providers);
}, 30_000);

afterAll(async () => {
  await nodeNc?.close();
  await dispatcherNc?.close();
  await nats?.stop();
});

test("lists one workload's records, without deleted ones or other workloads'; counts the live ones", async () => {
  await put(record("Deployment", "web", "web-a", "running"));
  await put(record("Deployment", "web", "web-b", "starting"));
  await put(record("Deployment", "web", "web-c", "failed"));
  await put(record("Deployment", "web", "web-d", "running"));
  await put(record("Deployment", "web-2", "web-2-a", "running"));
  await put(record("StatefulSet", "web", "web-0", "running"));
  await nodeKv.delete(kvKeys.provider("Deployment", "default", "web", "web-d"));

  const kv = await new Kvm(dispatcherNc).open(BUCKETS.providers);
  const dir = kvProviderDirectory(kv);
  const pods = await dir.list("Deployment", "default", "web");
  expect(pods.map((p) => `${p.pod}:${p.state}`).sort()).toEqual([
    "web-a:running",
    "web-b:starting",
    "web-c:failed",
  ]);
  expect(await liveReplicasFrom(dir).count("Deployment", "default", "web")).toBe(2);
  expect(await dir.list("Deployment", "default", "nothing")).toEqual([]);
});

test("reads while a node agent deletes and writes records, every read ending", async () => {
  const kv = await new Kvm(dispatcherNc).open(BUCKETS.providers);
  const dir = kvProviderDirectory(kv);
  let stop = false;
  const churn = (async () => {
    for (let i = 0; !stop && i < 20_000; i++) {
      const pod = `churn-${i % 6}`;
      if (i % 2 === 0) await put(record("Deployment", "churn", pod, "running"));
      else await nodeKv.delete(kvKeys.provider("Deployment", "default", "churn", pod));
    }
  })();
  try {
    for (let n = 0; n < 200; n++) {
      const pods = await withTimeout(dir.list("Deployment", "default", "churn"), 5000, `read ${n}`);
      expect(pods.length).toBeLessThanOrEqual(6);
      expect(pods.every((p) => p.parent === "churn" && p.kind === "Deployment")).toBe(true);
    }
  } finally {
    stop = true;
    await churn;
  }
}, 60_000);
