// The watchdog driver's pure helpers: the heartbeat wire form, the spec read
// from the object (strategy percentages, the clone Task from the renderer),
// pod naming shared with the node agent, slot keys, and the env parse of main.
import { podNameFor } from "../../controllers/scheduler-bidder/agent.js";
import { renderWorkload, taskTemplateOf } from "../../controllers/dispatcher/fanout/render.js";
import type { DispatchRecord } from "../../controllers/dispatcher/fanout/plan.js";
import {
  CloneSourceError,
  RecordLagError,
  cloneTaskFrom,
  deploymentRecordKey,
  type RecordLag,
} from "../../controllers/watchdog/clone-task.js";
import type { WatchdogHeartbeat } from "../../controllers/watchdog/logic/index.js";
import { configFromEnv, WatchdogConfigError } from "../../controllers/watchdog/main.js";
import { EnvError } from "../../controllers/common/env.js";
import {
  deploymentInterpreter,
  resolveIntOrPercent,
  watchdogSpecOf,
  DeploymentSpecError,
} from "../../controllers/watchdog/spec.js";
import { deploymentPodName, slotPrefixOf } from "../../controllers/watchdog/watchdog.js";
import { HEARTBEAT_SPEC, fromWire, toWire } from "../../controllers/watchdog/wire.js";
import { decodeSlot, encodeSlot } from "../../controllers/watchdog/slot-store.js";
import { parseBeemeshDeployment, parseHeartbeat, type BeemeshDeployment } from "../../protocol/index.js";

const hb = (over: Partial<WatchdogHeartbeat> = {}): WatchdogHeartbeat => ({
  pod: "web-abc",
  node: "node-1",
  ns: "default",
  parent: "web",
  generation: 3,
  spec_revision: 17,
  healthy: true,
  ready: false,
  ts: 1_700_000_000_000,
  template_hash: "0123456789abcdef",
  started_at: 1_700_000_000_000 - 5000,
  slot: 2,
  retiring: false,
  pending: [{ slot: 5, claim: "01HF7YAT00SP7ZQ8GM4CVZ7K5V", age_ms: 1200.6 }],
  ...over,
});

function deployment(over: (d: BeemeshDeployment) => void = () => undefined): BeemeshDeployment {
  const d: BeemeshDeployment = {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: "web", namespace: "default", uid: "uid-1", generation: 4 },
    spec: {
      replicas: 10,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: {
          containers: [
            { name: "app", image: "localhost/app:v1", readinessProbe: { tcpSocket: { port: 8080 } } },
          ],
        },
      },
    },
  };
  over(d);
  const parsed = parseBeemeshDeployment(d);
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

describe("heartbeat wire form", () => {
  it("round-trips through the wire parser, ages rounded to whole ms", () => {
    const wire = toWire(hb(), 7);
    const parsed = parseHeartbeat(JSON.parse(JSON.stringify(wire)));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.seq).toBe(7);
    expect(fromWire(parsed.value)).toEqual(
      hb({ pending: [{ slot: 5, claim: "01HF7YAT00SP7ZQ8GM4CVZ7K5V", age_ms: 1201 }] }),
    );
  });

  it("is the protocol Heartbeat: one schema for watchdogs and the dispatcher's status", () => {
    expect(HEARTBEAT_SPEC.parse).toBe(parseHeartbeat);
    const wire = toWire(hb(), 0, "01HF7YAT00SP7ZQ8GM4CVZ7K5V");
    expect(parseHeartbeat(JSON.parse(JSON.stringify(wire))).ok).toBe(true);
    expect(wire.task_id).toBe("01HF7YAT00SP7ZQ8GM4CVZ7K5V");
  });

  it.each([
    ["missing template_hash", (w: Record<string, unknown>) => delete w["template_hash"]],
    ["missing spec_revision", (w: Record<string, unknown>) => delete w["spec_revision"]],
    ["missing pending", (w: Record<string, unknown>) => delete w["pending"]],
    ["negative slot", (w: Record<string, unknown>) => (w["slot"] = -1)],
    ["unknown field", (w: Record<string, unknown>) => (w["extra"] = 1)],
    ["pod not a DNS name", (w: Record<string, unknown>) => (w["pod"] = "Web_1")],
  ])("refuses %s", (_what, mutate) => {
    const w = JSON.parse(JSON.stringify(toWire(hb(), 1))) as Record<string, unknown>;
    mutate(w);
    expect(parseHeartbeat(w).ok).toBe(false);
  });
});

describe("spec from the object", () => {
  it.each([
    [undefined, 10, 1, true, 1],
    [3, 10, 1, true, 3],
    ["25%", 10, 1, true, 3],
    ["25%", 10, 0, false, 2],
    ["0%", 10, 1, true, 0],
    ["100%", 4, 0, false, 4],
  ] as const)(
    "resolves %p of %d replicas (fallback %d, round up %p) to %d",
    (value, replicas, fallback, up, want) => {
      expect(resolveIntOrPercent(value, replicas, fallback, up)).toBe(want);
    },
  );

  it("refuses a value that is neither count nor percentage", () => {
    expect(() => resolveIntOrPercent("ten", 10, 1, true)).toThrow(DeploymentSpecError);
  });

  it("reads replicas, generation and the strategy with Kubernetes' rounding", () => {
    const d = deployment((o) => {
      o.spec.strategy = { rollingUpdate: { maxSurge: "30%", maxUnavailable: "30%" } };
    });
    expect(watchdogSpecOf(d, "h")).toEqual({
      replicas: 10,
      generation: 4,
      template_hash: "h",
      max_surge: 3,
      max_unavailable: 3,
    });
  });

  it("takes the template hash the renderer stamps on pods, rendering nothing", () => {
    const d = deployment();
    const view = deploymentInterpreter(d);
    expect(view.uid).toBe("uid-1");
    expect(view.spec.template_hash).toBe(renderWorkload(d, { natsUrl: "tls://127.0.0.1:4222" }).templateHash);
    expect(view.spec.template_hash).toBe(renderWorkload(d, { natsUrl: "tls://other:4222" }).templateHash);
    expect(view.appContainers.map((c) => c.name)).toEqual(["app"]);
  });
});

describe("names and keys", () => {
  it.each([
    ["web", "01HF7YAT00SP7ZQ8GM4CVZ7K5V"],
    ["my.app", "01HF7YAT00SP7ZQ8GM4CVZ7K5V"],
    ["a".repeat(60), "01M830F15M2GQM4154SGEYF2D8"],
  ])("names a replica of %s like the node agent", (parent, taskId) => {
    expect(deploymentPodName(parent, taskId)).toBe(
      podNameFor({ kind: "Deployment", parent, task_id: taskId }),
    );
  });

  it("keeps a Deployment instance's slots apart from a re-created one of the same name", () => {
    expect(slotPrefixOf("default", "my.app", "6f1e0c8e-6a4b")).toBe("clone.default.my_app.6f1e0c8e-6a4b");
    expect(slotPrefixOf("default", "web", "uid:1")).not.toBe(slotPrefixOf("default", "web", "uid:2"));
  });

  it("stores a claim in a slot value and refuses other values", () => {
    expect(decodeSlot(encodeSlot("web-abc"))).toBe("web-abc");
    expect(decodeSlot(new TextEncoder().encode("{}"))).toBeUndefined();
    expect(decodeSlot(new TextEncoder().encode("not json"))).toBeUndefined();
  });
});

describe("configFromEnv", () => {
  const env = {
    BEEMESH_NAMESPACE: "default",
    BEEMESH_PARENT: "web",
    BEEMESH_PARENT_UID: "uid-1",
    BEEMESH_GENERATION: "3",
    BEEMESH_TEMPLATE_HASH: "0123456789abcdef",
    BEEMESH_WATCHDOG_INTERVAL_MS: "500",
    BEEMESH_WATCHDOG_TTL_INTERVALS: "4",
    BEEMESH_NATS_URL: "tls://127.0.0.1:4222",
    BEEMESH_WORKLOAD_API_SOCKET: "/run/beemesh/workload-api/agent.sock",
    BEEMESH_POD_NAME: "web-abc",
    BEEMESH_NODE_ID: "node-1",
  };

  it("reads the renderer's and the node agent's variables", () => {
    const cfg = configFromEnv(env);
    expect(cfg.target).toEqual({
      ns: "default",
      parent: "web",
      parentUid: "uid-1",
      pod: "web-abc",
      nodeId: "node-1",
      generation: 3,
      templateHash: "0123456789abcdef",
    });
    expect(cfg.logic).toEqual({ intervalMs: 500, ttlIntervals: 4 });
    expect(cfg.natsUrl).toBe(env.BEEMESH_NATS_URL);
    expect(cfg.prefix).toBe("beemesh");
    expect(cfg.taskShards).toBe(1);
    expect(cfg.healthPort).toBeUndefined();
  });

  it("reads the names every controller uses: BEEMESH_PREFIX, BEEMESH_SHARDS, BEEMESH_HEALTH_PORT", () => {
    const cfg = configFromEnv({
      ...env,
      BEEMESH_PREFIX: "region1",
      BEEMESH_SHARDS: "16",
      BEEMESH_HEALTH_PORT: "9200",
    });
    expect(cfg).toMatchObject({ prefix: "region1", taskShards: 16, healthPort: 9200 });
  });

  it.each(["BEEMESH_POD_NAME", "BEEMESH_NODE_ID", "BEEMESH_PARENT_UID", "BEEMESH_NATS_URL"])(
    "names a missing %s",
    (name) => {
      const partial: Record<string, string | undefined> = { ...env, [name]: undefined };
      expect(() => configFromEnv(partial)).toThrow(new EnvError(name, "is required"));
    },
  );

  it("refuses a non-integer interval and a missing identity source", () => {
    expect(() => configFromEnv({ ...env, BEEMESH_WATCHDOG_INTERVAL_MS: "1s" })).toThrow(EnvError);
    expect(() => configFromEnv({ ...env, BEEMESH_WORKLOAD_API_SOCKET: undefined })).toThrow(
      WatchdogConfigError,
    );
  });
});

describe("clone Task from the dispatch record", () => {
  // Render options the watchdog cannot know: another image, sidecar size, prefix and shards.
  const render = {
    natsUrl: "tls://nats-a:4222,tls://nats-b:4222",
    watchdogImage: "localhost/beemesh/controllers:v7",
    sidecarResources: { cpu: "20m", memory: "48Mi" },
    prefix: "region1",
    shards: 8,
  };
  const record = (d: BeemeshDeployment, over: Partial<DispatchRecord> = {}): DispatchRecord => {
    const r = renderWorkload(d, render);
    return {
      kind: "Deployment",
      ns: r.ns,
      name: r.name,
      uid: r.uid,
      generation: r.generation,
      template_hash: r.templateHash,
      template_generation: r.generation,
      replicas: r.replicas,
      first: 0,
      next: r.replicas,
      manifests: r.manifests.map((m) => ({ key: m.key, sha256: m.sha256 })),
      task: taskTemplateOf(r),
      ts: 1,
      ...over,
    };
  };
  const want = (d: BeemeshDeployment) => ({
    ns: "default",
    parent: "web",
    parentUid: "uid-1",
    templateHash: deploymentInterpreter(d).spec.template_hash,
    generation: d.metadata.generation ?? 1,
    taskId: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
    hints: { "beemesh.io/clone-slot": "3" },
    nonce: "nonce-0123456789abcdef",
    ts: 1_700_000_000_000,
  });

  it("names the manifest and requirements the dispatcher recorded, whatever its render options", () => {
    const d = deployment();
    const r = renderWorkload(d, render);
    const task = cloneTaskFrom(record(d), want(d));
    expect(task.manifest_ref).toEqual({ key: r.manifests[0]!.key, sha256: r.manifests[0]!.sha256 });
    expect(task.reqs).toEqual(r.reqs);
    expect(task).toMatchObject({
      kind: "Deployment",
      ns: "default",
      parent: "web",
      parent_uid: "uid-1",
      generation: 4,
      origin: "clone",
      attempt: 0,
      hints: { template_hash: r.templateHash, "beemesh.io/clone-slot": "3" },
    });
    // A render with the watchdog's own (default) options would have named another manifest.
    expect(renderWorkload(d, { natsUrl: "tls://nats-a:4222" }).manifests[0]!.key).not.toBe(
      task.manifest_ref.key,
    );
    expect(deploymentRecordKey("default", "my.app")).toBe("dispatch.deployment.default.my_app");
  });

  const lagOf = (fn: () => unknown): RecordLag | "none" | "other error" => {
    try {
      fn();
      return "none";
    } catch (err) {
      return err instanceof RecordLagError ? err.lag : "other error";
    }
  };

  // A lagging record may yet catch up (the driver waits for it); the others never will.
  it.each<[string, RecordLag | "other error", (d: BeemeshDeployment) => DispatchRecord | undefined]>([
    ["no record", "missing", () => undefined],
    ["a record of another instance", "other-instance", (d) => record(d, { uid: "uid-2" })],
    [
      "a record of an earlier generation with another template",
      "behind",
      (d) => record(d, { generation: 3, template_hash: "ffffffffffffffff" }),
    ],
    [
      "a record of a later generation with another template (our object view is stale)",
      "ahead",
      (d) => record(d, { generation: 5, template_hash: "ffffffffffffffff" }),
    ],
    ["a record without the task template", "other error", (d) => ({ ...record(d), task: undefined })],
    ["a record without manifests", "other error", (d) => record(d, { manifests: [] })],
  ])("refuses %s: %s", (_what, lag, make) => {
    const d = deployment();
    expect(() => cloneTaskFrom(make(d), want(d))).toThrow(CloneSourceError);
    expect(lagOf(() => cloneTaskFrom(make(d), want(d)))).toBe(lag);
  });

  it("clones from a record of an earlier generation with the same template (a scale)", () => {
    const d = deployment();
    const task = cloneTaskFrom(record(d, { generation: 2 }), want(d));
    expect(task.generation).toBe(2);
  });

  it("names the lag in the error", () => {
    const d = deployment();
    expect(() =>
      cloneTaskFrom(record(d, { generation: 3, template_hash: "ffffffffffffffff" }), want(d)),
    ).toThrow(expect.objectContaining({ name: "RecordLagError", lag: "behind" }) as Error);
  });
});
