// Status aggregation on a real nats-server: provider records written by a
// node agent's identity into beemesh-providers and heartbeats signed by the
// watchdogs' own SVIDs become status.replicas / readyReplicas / conditions,
// written through the API's status path so `kubectl get bmd` shows them. A
// heartbeat forged by another workload is dropped by the bus; a watchdog that
// goes quiet stops counting after its TTL.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Registry } from "prom-client";
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { Dispatcher } from "../../controllers/dispatcher/dispatcher.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { counterValue } from "../../protocol/bus/index.js";
import { kvKeys, type Heartbeat, type ProviderRecord, type WorkloadStatus } from "../../protocol/index.js";

const NS_PATH = "/apis/beemesh.io/v1alpha1/namespaces/default/beemeshdeployments";
const run = promisify(execFile);

let nats: NatsFixture;
let node: NatsConnection;
let dispatcher: Dispatcher;
const registry = new Registry();
const watchdogs: TestBus[] = [];
const timers: NodeJS.Timeout[] = [];

async function getStatus(): Promise<WorkloadStatus & { _generation: number }> {
  const res = await fetch(`${dispatcher.api!.url}${NS_PATH}/web`);
  const obj = (await res.json()) as { status?: WorkloadStatus; metadata: { generation: number } };
  return { ...(obj.status ?? {}), _generation: obj.metadata.generation };
}

function provider(pod: string, state: ProviderRecord["state"]): ProviderRecord {
  return {
    ns: "default",
    kind: "Deployment",
    parent: "web",
    pod,
    node_id: "node-1",
    task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
    fencing_token: 3,
    generation: 1,
    state,
    ts: Date.now(),
  };
}

/** Heartbeats every 200 ms from a watchdog bus until stopped. */
function beat(wd: TestBus, hb: Omit<Heartbeat, "ts">, subject = "beemesh.watchdog.default.web"): () => void {
  const send = () => wd.bus.publish(subject, "Heartbeat", { ...hb, ts: Date.now() });
  send();
  const t = setInterval(send, 200);
  timers.push(t);
  return () => clearInterval(t);
}

const hb = (pod: string, ready: boolean, parent = "web"): Omit<Heartbeat, "ts"> => ({
  pod,
  node: "node-1",
  ns: "default",
  parent,
  generation: 1,
  healthy: true,
  ready,
  started_at: Date.now(),
  spec_revision: 1,
  template_hash: "0123456789abcdef",
  slot: null,
  retiring: false,
  pending: [],
});

beforeAll(async () => {
  nats = await startNats();
  dispatcher = await Dispatcher.start({
    natsServers: nats.urls,
    svid: await nats.issue("dispatcher"),
    source: "api",
    api: { port: 0, devInsecure: true },
    logger: memoryLogger("dispatcher"),
    registry,
    statusThrottleMs: 100,
    statusSweepMs: 200,
  });
  await withTimeout(dispatcher.synced(), 10_000, "dispatcher sync");
  // A node agent's identity may write provider records (the dispatcher may not).
  node = await nats.connectAs(await nats.issue("scheduler-bidder", "node", "node-1"));
  for (const pod of ["web-a", "web-b"])
    watchdogs.push(await busAs(nats, "watchdog", ["ns", "default", "deployment", "web", pod]));
  // A pod of another Deployment that tries to count for web.
  watchdogs.push(await busAs(nats, "watchdog", ["ns", "default", "deployment", "other", "other-a"]));
}, 30_000);

afterAll(async () => {
  for (const t of timers) clearInterval(t);
  for (const w of watchdogs) await w.bus.close();
  await node?.close();
  await dispatcher?.stop();
  await nats?.stop();
});

test("provider records and signed heartbeats become the status kubectl shows; forged and stale heartbeats do not count", async () => {
  const res = await fetch(`${dispatcher.api!.url}${NS_PATH}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name: "web", namespace: "default" },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: { containers: [{ name: "app", image: "localhost/app:1" }] },
        },
        // A short TTL (1 s x 2) so a quiet watchdog stops counting quickly.
        watchdogSidecar: { intervalSeconds: 1, ttlIntervals: 2 },
      },
    }),
  });
  expect(res.status).toBe(201);

  // Before any pod: dispatched (observedGeneration), nothing running, not Available.
  const empty = await waitFor(
    async () => {
      const s = await getStatus();
      return s.observedGeneration === 1 ? s : undefined;
    },
    { what: "first status" },
  );
  expect(empty).toMatchObject({ replicas: 0, readyReplicas: 0, selector: "app=web" });
  expect(empty.conditions?.find((c) => c.type === "Available")?.status).toBe("False");

  const providers = await new Kvm(node).open("beemesh-providers");
  for (const pod of ["web-a", "web-b"]) {
    await providers.put(
      kvKeys.provider("Deployment", "default", "web", pod),
      JSON.stringify(provider(pod, "running")),
    );
  }
  const running = await waitFor(
    async () => {
      const s = await getStatus();
      return s.replicas === 2 ? s : undefined;
    },
    { what: "replicas from provider records" },
  );
  expect(running.readyReplicas).toBe(0);

  const stopA = beat(watchdogs[0]!, hb("web-a", true));
  beat(watchdogs[1]!, hb("web-b", true));
  // Signed correctly, but by a pod of "other" claiming to be web-c of "web": the bus drops it.
  beat(watchdogs[2]!, hb("web-c", true));
  const ready = await waitFor(
    async () => {
      const s = await getStatus();
      return s.readyReplicas === 2 ? s : undefined;
    },
    { timeoutMs: 15_000, what: "readyReplicas 2" },
  );
  expect(ready).toMatchObject({ replicas: 2, updatedReplicas: 2, observedGeneration: 1 });
  expect(ready.conditions?.find((c) => c.type === "Available")).toMatchObject({
    status: "True",
    reason: "MinimumReplicasAvailable",
  });
  expect(ready.conditions?.find((c) => c.type === "Progressing")).toMatchObject({
    status: "True",
    reason: "NewReplicasAvailable",
  });
  // The forged heartbeats reached the dispatcher and were refused there.
  expect(
    await counterValue(registry, "beemesh_messages_rejected_total", { reason: "unauthorized" }),
  ).toBeGreaterThan(0);
  expect((await getStatus()).replicas).toBe(2);

  // kubectl against the dispatcher's API shows the same numbers in its READY column.
  const dir = await mkdtemp(join(tmpdir(), "beemesh-kubectl-"));
  const hasKubectl = await run("kubectl", ["version", "--client"], { timeout: 10_000 }).then(
    () => true,
    () => false,
  );
  if (!hasKubectl)
    console.warn("dispatcher-status: kubectl is not installed; skipping the `kubectl get bmd` check");
  try {
    if (hasKubectl) {
      const kubeconfig = join(dir, "config");
      await writeFile(
        kubeconfig,
        `apiVersion: v1\nkind: Config\nclusters:\n- name: dev\n  cluster:\n    server: ${dispatcher.api!.url}\ncontexts:\n- name: dev\n  context:\n    cluster: dev\n    user: dev\ncurrent-context: dev\nusers:\n- name: dev\n  user: {}\n`,
      );
      // The server's Table, as `kubectl get bmd` prints it: NAME DESIRED READY AGE.
      const { stdout } = await run("kubectl", ["--kubeconfig", kubeconfig, "get", "bmd", "web"], {
        timeout: 20_000,
        env: { ...process.env, KUBECACHEDIR: join(dir, "cache"), HOME: dir },
      });
      const [header, row] = stdout
        .trim()
        .split("\n")
        .map((l) => l.trim().split(/\s+/));
      expect(header?.slice(0, 3)).toEqual(["NAME", "DESIRED", "READY"]);
      expect(row?.slice(0, 3)).toEqual(["web", "2", "2"]);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  // web-a's watchdog goes quiet: after its TTL the pod counts as gone (its
  // provider record alone no longer does; a dead node's record would linger).
  stopA();
  const degraded = await waitFor(
    async () => {
      const s = await getStatus();
      return s.readyReplicas === 1 ? s : undefined;
    },
    { timeoutMs: 15_000, what: "readyReplicas back to 1" },
  );
  expect(degraded.replicas).toBe(1);
  expect(degraded.conditions?.find((c) => c.type === "Available")?.status).toBe("False");
});
