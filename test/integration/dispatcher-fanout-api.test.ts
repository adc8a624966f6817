// The dispatcher end to end on a real nats-server (TLS, per-role users,
// JetStream): a BeemeshDeployment created over HTTP becomes exactly N Tasks on
// SCHEDULER_TASKS naming manifests stored in beemesh-manifests under their
// sha256; with no replica running (no node agent here) a template change
// publishes N Tasks of the new generation, a scale-up only the new slots; a
// second dispatcher adds nothing; a delete retires it.
import { createHash } from "node:crypto";
import { Registry } from "prom-client";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { Dispatcher } from "../../controllers/dispatcher/dispatcher.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { MANIFEST_LABELS, type ReconcileResult } from "../../controllers/dispatcher/fanout/index.js";
import { deterministicTaskId, STREAMS, type Event, type Task } from "../../protocol/index.js";

const NS_PATH = "/apis/beemesh.io/v1alpha1/namespaces/default/beemeshdeployments";

let nats: NatsFixture;
let admin: NatsConnection;
let jsm: JetStreamManager;
let manifests: KV;
let objects: KV;
const started: Dispatcher[] = [];
const reconciled: Array<{ key: string; result: ReconcileResult }> = [];
const retired: string[] = [];
const logs: ReturnType<typeof memoryLogger>[] = [];

async function startDispatcher(): Promise<Dispatcher> {
  const d = await Dispatcher.start({
    natsServers: nats.urls,
    svid: await nats.issue("dispatcher"),
    source: "api",
    api: { port: 0, devInsecure: true },
    shards: 4,
    logger: logs[logs.push(memoryLogger("dispatcher")) - 1]!,
    registry: new Registry(),
    statusSweepMs: 200,
    hooks: {
      afterReconcile: (key, result) => reconciled.push({ key, result }),
      afterRetire: (key) => retired.push(key),
    },
  });
  started.push(d);
  await withTimeout(d.synced(), 10_000, "dispatcher sync");
  return d;
}

/** Every message in a stream, decoded from its envelope (the stream is the truth, not a subscription). */
async function streamPayloads<T>(stream: string): Promise<Array<{ subject: string; payload: T }>> {
  const info = await jsm.streams.info(stream);
  if (info.state.messages === 0) return [];
  const consumer = await jetstream(admin).consumers.get(stream);
  const out: Array<{ subject: string; payload: T }> = [];
  const messages = await consumer.fetch({ max_messages: info.state.messages, expires: 5000 });
  for await (const m of messages) {
    const env = JSON.parse(new TextDecoder().decode(m.data)) as { payload: T };
    out.push({ subject: m.subject, payload: env.payload });
    if (m.info.pending === 0) break;
  }
  return out;
}

const tasksOf = async (parent: string) =>
  (await streamPayloads<Task>(STREAMS.tasks)).filter((t) => t.payload.parent === parent);

function reconciledTo(key: string, generation: number): Promise<ReconcileResult> {
  return waitFor(() => reconciled.find((r) => r.key === key && r.result.generation === generation)?.result, {
    timeoutMs: 15_000,
    what: `reconcile of ${key} at generation ${generation}`,
  });
}

async function api(
  d: Dispatcher,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
) {
  const res = await fetch(`${d.api!.url}${path}`, {
    method,
    headers: { "content-type": contentType, accept: "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as { metadata: { uid: string; generation: number; creationTimestamp: string } };
}

const bmd = (name: string, replicas: number, image = "localhost/beemesh/busybox:latest") => ({
  apiVersion: "beemesh.io/v1alpha1",
  kind: "BeemeshDeployment",
  metadata: { name, namespace: "default" },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: {
      metadata: { labels: { app: name } },
      spec: {
        hostNetwork: true,
        containers: [
          {
            name: "httpd",
            image,
            command: ["busybox", "httpd", "-f", "-p", "8080"],
            ports: [{ containerPort: 8080 }],
            readinessProbe: { httpGet: { path: "/", port: 8080 } },
          },
        ],
      },
    },
  },
});

beforeAll(async () => {
  nats = await startNats();
  admin = await nats.connectAs(await nats.issue("admin"));
  await startDispatcher();
  jsm = await jetstreamManager(admin);
  manifests = await new Kvm(admin).open("beemesh-manifests");
  objects = await new Kvm(admin).open("beemesh-objects");
}, 30_000);

afterAll(async () => {
  for (const d of started) await d.stop();
  await admin?.close();
  await nats?.stop();
});

describe("dispatcher fan-out through its API", () => {
  let uid = "";
  let created = 0;

  test("a bmd created over HTTP becomes exactly N Tasks whose manifests are stored under their sha256", async () => {
    const d = started[0]!;
    const obj = await api(d, "POST", NS_PATH, bmd("web", 3));
    uid = obj.metadata.uid;
    created = Date.parse(obj.metadata.creationTimestamp);
    const result = await reconciledTo("Deployment/default/web", 1);
    expect(result).toMatchObject({ reason: "new", published: 3, duplicates: 0 });

    const tasks = await tasksOf("web");
    expect(tasks).toHaveLength(3);
    const ids = tasks.map((t) => t.payload.task_id).sort();
    const expected = [0, 1, 2]
      .map((slot) => deterministicTaskId({ uid, generation: 1, slot, timeMs: created }))
      .sort();
    expect(ids).toEqual(expected);
    for (const { subject, payload } of tasks) {
      expect(subject).toMatch(/^beemesh\.scheduler\.tasks\.[0-3]$/);
      expect(payload).toMatchObject({
        kind: "Deployment",
        ns: "default",
        generation: 1,
        parent_uid: uid,
        origin: "dispatcher",
      });
      expect(payload.reqs.ports).toEqual([{ port: 8080, protocol: "TCP" }]);
    }
    // One manifest for all replicas of the generation, stored before the Tasks and matching its digest.
    const refs = new Set(tasks.map((t) => JSON.stringify(t.payload.manifest_ref)));
    expect(refs.size).toBe(1);
    const ref = tasks[0]!.payload.manifest_ref;
    const entry = await manifests.get(ref.key);
    expect(entry?.operation).toBe("PUT");
    expect(createHash("sha256").update(entry!.value).digest("hex")).toBe(ref.sha256);
    const pod = JSON.parse(new TextDecoder().decode(entry!.value)) as {
      metadata: { labels: Record<string, string> };
      spec: { containers: { name: string }[] };
    };
    expect(pod.spec.containers.map((c) => c.name)).toEqual(["httpd", "beemesh-watchdog"]);
    expect(pod.metadata.labels[MANIFEST_LABELS.parent]).toBe("web");
  });

  test("with no replica running, a template change publishes N Tasks of generation 2 with a new manifest", async () => {
    const d = started[0]!;
    const patched = await api(
      d,
      "PATCH",
      `${NS_PATH}/web`,
      {
        spec: {
          template: {
            spec: {
              containers: [
                { ...bmd("web", 3).spec.template.spec.containers[0]!, image: "localhost/beemesh/busybox:2" },
              ],
            },
          },
        },
      },
      "application/merge-patch+json",
    );
    expect(patched.metadata.generation).toBe(2);
    expect(await reconciledTo("Deployment/default/web", 2)).toMatchObject({
      reason: "template-changed",
      published: 3,
    });
    const tasks = await tasksOf("web");
    const g2 = tasks.filter((t) => t.payload.generation === 2);
    expect(tasks).toHaveLength(6);
    expect(g2).toHaveLength(3);
    const ref1 = tasks.find((t) => t.payload.generation === 1)!.payload.manifest_ref;
    expect(g2[0]!.payload.manifest_ref.sha256).not.toBe(ref1.sha256);
    expect((await manifests.get(g2[0]!.payload.manifest_ref.key))?.operation).toBe("PUT");
  });

  test("with no replica running, a scale-up publishes Tasks for the new slots only", async () => {
    const d = started[0]!;
    await api(d, "PATCH", `${NS_PATH}/web`, { spec: { replicas: 5 } }, "application/merge-patch+json");
    expect(await reconciledTo("Deployment/default/web", 3)).toMatchObject({
      reason: "scaled-up",
      published: 2,
    });
    const tasks = await tasksOf("web");
    const g3 = tasks
      .filter((t) => t.payload.generation === 3)
      .map((t) => t.payload.task_id)
      .sort();
    expect(tasks).toHaveLength(8);
    expect(g3).toEqual(
      [3, 4].map((slot) => deterministicTaskId({ uid, generation: 3, slot, timeMs: created })).sort(),
    );
    // The progress record other dispatchers (and the watchdogs) read.
    const record = JSON.parse((await objects.get("dispatch.deployment.default.web"))!.string()) as Record<
      string,
      unknown
    >;
    expect(record).toMatchObject({ uid, generation: 3, replicas: 5, next: 5, template_generation: 2 });
  });

  test("a second dispatcher on the same NATS finds everything published and adds nothing", async () => {
    const before = (await jsm.streams.info(STREAMS.tasks)).state.messages;
    const second = await startDispatcher();
    await withTimeout(second.idle(), 10_000, "second dispatcher idle");
    expect(reconciled.filter((r) => r.result.reason === "up-to-date").length).toBeGreaterThan(0);
    expect((await jsm.streams.info(STREAMS.tasks)).state.messages).toBe(before);
    // It serves the same objects.
    expect((await api(second, "GET", `${NS_PATH}/web`)).metadata.uid).toBe(uid);
  });

  test("a delete retires the workload: one notice event, the record forgotten", async () => {
    const d = started[0]!;
    await api(d, "DELETE", `${NS_PATH}/web`);
    await waitFor(() => retired.includes("Deployment/default/web"), { timeoutMs: 15_000, what: "retire" });
    await waitFor(async () => (await objects.get("dispatch.deployment.default.web"))?.operation !== "PUT", {
      what: "record deleted",
    });
    const events = (await streamPayloads<Event>(STREAMS.events)).filter((e) => e.payload.parent === "web");
    // Both dispatchers retire it; the stream's dedup keeps one notice.
    expect(events).toHaveLength(1);
    expect(events[0]!.subject).toBe("beemesh.scheduler.events.deployment.default.web");
    expect(events[0]!.payload).toMatchObject({ status: "removed", kind: "Deployment", ns: "default" });
  });

  test("nothing went wrong on the way: no warning or error was logged", () => {
    const problems = logs
      .flatMap((l) => l.lines)
      .filter((l) => l["level"] === "error" || l["level"] === "warn");
    expect(problems).toEqual([]);
  });
});
