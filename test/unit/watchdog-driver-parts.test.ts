// The watchdog driver's pure helpers: the heartbeat wire form, the spec read
// from the object (strategy percentages, the clone Task from the renderer),
// pod naming shared with the node agent, slot keys, and the env parse of main.
import { podNameFor } from "../../controllers/scheduler-bidder/agent.js";
import { renderWorkload } from "../../controllers/dispatcher/fanout/render.js";
import type { WatchdogHeartbeat } from "../../controllers/watchdog/logic/index.js";
import { configFromEnv, WatchdogConfigError } from "../../controllers/watchdog/main.js";
import {
  deploymentInterpreter,
  resolveIntOrPercent,
  watchdogSpecOf,
  DeploymentSpecError,
} from "../../controllers/watchdog/spec.js";
import { deploymentPodName, slotPrefixOf } from "../../controllers/watchdog/watchdog.js";
import { fromWire, parseWatchdogHeartbeat, toWire } from "../../controllers/watchdog/wire.js";
import { decodeSlot, encodeSlot } from "../../controllers/watchdog/slot-store.js";
import { parseBeemeshDeployment, parseHeartbeat, type BeemeshDeployment } from "../../protocol/index.js";

// structuredClone under Jest's VM modules returns host-realm objects the renderer's canonical JSON refuses.
if (Object.getPrototypeOf(structuredClone({})) !== Object.prototype) {
  globalThis.structuredClone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
}

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
    const parsed = parseWatchdogHeartbeat(JSON.parse(JSON.stringify(wire)));
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.seq).toBe(7);
    expect(fromWire(parsed.value)).toEqual(
      hb({ pending: [{ slot: 5, claim: "01HF7YAT00SP7ZQ8GM4CVZ7K5V", age_ms: 1201 }] }),
    );
  });

  it("keeps the protocol Heartbeat's fields (what the bus authorizes on)", () => {
    const wire = toWire(hb(), 0, "01HF7YAT00SP7ZQ8GM4CVZ7K5V");
    const { spec_revision: _a, template_hash: _b, slot: _c, retiring: _d, pending: _e, ...base } = wire;
    expect(parseHeartbeat(base).ok).toBe(true);
    expect(wire.task_id).toBe("01HF7YAT00SP7ZQ8GM4CVZ7K5V");
  });

  it.each([
    ["missing template_hash", (w: Record<string, unknown>) => delete w["template_hash"]],
    ["negative slot", (w: Record<string, unknown>) => (w["slot"] = -1)],
    ["unknown field", (w: Record<string, unknown>) => (w["extra"] = 1)],
    ["pod not a DNS name", (w: Record<string, unknown>) => (w["pod"] = "Web_1")],
  ])("refuses %s", (_what, mutate) => {
    const w = JSON.parse(JSON.stringify(toWire(hb(), 1))) as Record<string, unknown>;
    mutate(w);
    expect(parseWatchdogHeartbeat(w).ok).toBe(false);
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

  it("builds the clone Task the dispatcher would: same manifest key, template hash, requirements", () => {
    const render = { natsUrl: "tls://127.0.0.1:4222" };
    const d = deployment();
    const view = deploymentInterpreter(render)(d);
    const r = renderWorkload(d, render);
    expect(view.spec.template_hash).toBe(r.templateHash);
    expect(view.task.manifest_ref).toEqual({ key: r.manifests[0]!.key, sha256: r.manifests[0]!.sha256 });
    expect(view.task).toMatchObject({
      kind: "Deployment",
      ns: "default",
      parent: "web",
      parent_uid: "uid-1",
      generation: 4,
    });
    expect(view.appContainers.map((c) => c.name)).toEqual(["app"]);
    // Another NATS URL renders another manifest: the options must be the dispatcher's.
    expect(deploymentInterpreter({ natsUrl: "tls://other:4222" })(d).task.manifest_ref.key).not.toBe(
      view.task.manifest_ref.key,
    );
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
    expect(cfg.render.natsUrl).toBe(env.BEEMESH_NATS_URL);
    expect(cfg.prefix).toBe("beemesh");
    expect(cfg.healthPort).toBeUndefined();
  });

  it.each(["BEEMESH_POD_NAME", "BEEMESH_NODE_ID", "BEEMESH_PARENT_UID", "BEEMESH_NATS_URL"])(
    "names a missing %s",
    (name) => {
      const partial: Record<string, string | undefined> = { ...env, [name]: undefined };
      expect(() => configFromEnv(partial)).toThrow(new WatchdogConfigError(`${name} is not set`));
    },
  );

  it("refuses a non-integer interval and a missing identity source", () => {
    expect(() => configFromEnv({ ...env, BEEMESH_WATCHDOG_INTERVAL_MS: "1s" })).toThrow(WatchdogConfigError);
    expect(() => configFromEnv({ ...env, BEEMESH_WORKLOAD_API_SOCKET: undefined })).toThrow(
      /WORKLOAD_API_SOCKET/,
    );
  });
});
