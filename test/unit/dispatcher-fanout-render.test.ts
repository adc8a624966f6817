// Rendering a workload into pod manifests and Tasks (DESIGN §3.1): the user's
// template plus the injected sidecar, content-addressed, and Tasks that name
// the manifest by key and sha256. The node agent's own parser and digest
// check must accept what the dispatcher stores.
import { createHash } from "node:crypto";
import {
  canonicalJson,
  deterministicTaskId,
  parseBeemeshDeployment,
  parseBeemeshStatefulSet,
  parseTask,
  type BeemeshDeployment,
  type BeemeshStatefulSet,
  type Container,
} from "../../protocol/index.js";
import {
  DATA_VOLUME,
  DEFAULT_SIDECAR_IMAGE,
  MANIFEST_LABELS,
  WORKLOAD_API_SOCKET,
  WORKLOAD_API_VOLUME,
  buildTask,
  manifestForSlot,
  renderWorkload,
  templateHash,
  type RenderOptions,
} from "../../controllers/dispatcher/fanout/index.js";
import { ManifestCache } from "../../controllers/scheduler-bidder/manifests.js";
import { parsePodManifest } from "../../controllers/scheduler-bidder/runtime/index.js";

const OPTS: RenderOptions = { natsUrl: "tls://127.0.0.1:4222", dataRoot: "/data/beemesh" };
const CREATED = "2026-01-02T03:04:05Z";

function deployment(patch: (d: BeemeshDeployment) => void = () => undefined): BeemeshDeployment {
  const raw = {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: "web", namespace: "shop", uid: "uid-web-1", generation: 1, creationTimestamp: CREATED },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" }, annotations: { team: "blue" } },
        spec: {
          hostNetwork: true,
          containers: [
            {
              name: "httpd",
              image: "localhost/beemesh/busybox:latest",
              command: ["busybox", "httpd", "-f", "-p", "8080"],
              ports: [{ name: "http", containerPort: 8080 }],
              resources: {
                requests: { cpu: "50m", memory: "16Mi" },
                limits: { cpu: "200m", memory: "64Mi" },
              },
              readinessProbe: { httpGet: { path: "/index.html", port: 8080 }, periodSeconds: 1 },
              livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 2 },
            },
          ],
        },
      },
    },
  };
  const parsed = parseBeemeshDeployment(raw);
  if (!parsed.ok) throw parsed.error;
  patch(parsed.value);
  return parsed.value;
}

function statefulSet(replicas = 3): BeemeshStatefulSet {
  const parsed = parseBeemeshStatefulSet({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshStatefulSet",
    metadata: { name: "db", namespace: "shop", uid: "uid-db-1", generation: 4, creationTimestamp: CREATED },
    spec: {
      replicas,
      serviceName: "db-svc",
      selector: { matchLabels: { app: "db" } },
      template: {
        metadata: { labels: { app: "db" } },
        spec: { containers: [{ name: "main", image: "localhost/app:1", command: ["sleep", "3600"] }] },
      },
      raftSidecar: { port: 7100 },
    },
  });
  if (!parsed.ok) throw parsed.error;
  return parsed.value;
}

const envOf = (c: Container | undefined) => Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("rendering a BeemeshDeployment", () => {
  const w = deployment();
  const r = renderWorkload(w, OPTS);
  const m = r.manifests[0]!;

  it("gives one unnamed core/v1 Pod for every replica, stored under the sha256 of its canonical JSON", () => {
    expect(r.manifests).toHaveLength(1);
    expect(m.manifest.apiVersion).toBe("v1");
    expect(m.manifest.kind).toBe("Pod");
    expect(m.manifest.metadata).not.toHaveProperty("name");
    expect(m.manifest.metadata.namespace).toBe("shop");
    expect(new TextDecoder().decode(m.bytes)).toBe(canonicalJson(m.manifest));
    expect(m.sha256).toBe(sha(m.bytes));
    expect(m.key).toBe(`sha256.${m.sha256}`);
    // Rendering is a function of the object: every dispatcher stores the same bytes.
    expect(renderWorkload(deployment(), OPTS).manifests[0]!.sha256).toBe(m.sha256);
  });

  it("keeps the user's template (labels, annotations, probes) and adds the Beemesh labels", () => {
    expect(m.manifest.metadata.labels).toEqual({
      app: "web",
      [MANIFEST_LABELS.parent]: "web",
      [MANIFEST_LABELS.kind]: "Deployment",
      [MANIFEST_LABELS.templateHash]: r.templateHash,
    });
    expect(m.manifest.metadata.annotations?.["team"]).toBe("blue");
    expect(m.manifest.spec.containers[0]).toEqual(w.spec.template.spec.containers[0]);
    expect(m.manifest.spec.hostNetwork).toBe(true);
  });

  it("injects the watchdog sidecar with its environment and the Workload API socket volume", () => {
    const sidecar = m.manifest.spec.containers[1]!;
    expect(m.manifest.spec.containers).toHaveLength(2);
    expect(sidecar.name).toBe("beemesh-watchdog");
    expect(sidecar.image).toBe(DEFAULT_SIDECAR_IMAGE);
    expect(sidecar.command?.[0]).toBe("node");
    expect(sidecar.command?.at(-1)).toBe("/app/dist/sidecars/watchdog/main.mjs");
    expect(envOf(sidecar)).toEqual({
      BEEMESH_NAMESPACE: "shop",
      BEEMESH_PARENT: "web",
      BEEMESH_PARENT_UID: "uid-web-1",
      BEEMESH_GENERATION: "1",
      BEEMESH_TEMPLATE_HASH: r.templateHash,
      BEEMESH_NATS_URL: "tls://127.0.0.1:4222",
      BEEMESH_WORKLOAD_API_SOCKET: WORKLOAD_API_SOCKET,
      BEEMESH_WATCHDOG_INTERVAL_MS: "1000",
      BEEMESH_WATCHDOG_TTL_INTERVALS: "3",
    });
    expect(sidecar.volumeMounts).toEqual([
      { name: WORKLOAD_API_VOLUME, mountPath: "/run/beemesh/workload-api" },
    ]);
    // A placeholder the node agent binds to this pod's own socket directory.
    expect(m.manifest.spec.volumes).toEqual([{ name: WORKLOAD_API_VOLUME, emptyDir: {} }]);
  });

  it("takes the sidecar image and interval from the object when it names them", () => {
    const custom = renderWorkload(
      deployment((d) => {
        d.spec.watchdogSidecar = { image: "localhost/wd:2", intervalSeconds: 2, ttlIntervals: 5 };
      }),
      OPTS,
    ).manifests[0]!.manifest.spec.containers[1]!;
    expect(custom.image).toBe("localhost/wd:2");
    expect(envOf(custom)["BEEMESH_WATCHDOG_INTERVAL_MS"]).toBe("2000");
    expect(envOf(custom)["BEEMESH_WATCHDOG_TTL_INTERVALS"]).toBe("5");
  });

  it("the template hash ignores the replica count but follows the template and the sidecar", () => {
    const h = templateHash(w);
    expect(h).toMatch(/^[0-9a-f]{16}$/);
    expect(templateHash(deployment((d) => (d.spec.replicas = 9)))).toBe(h);
    expect(
      templateHash(deployment((d) => (d.spec.template.spec.containers[0]!.image = "localhost/x:2"))),
    ).not.toBe(h);
    expect(templateHash(deployment((d) => (d.spec.watchdogSidecar = { intervalSeconds: 2 })))).not.toBe(h);
  });

  it("builds valid Tasks with deterministic ids, the manifest reference and the pod's requirements", () => {
    const t0 = buildTask(r, 0, { nonce: "nonce-aaaaaaaaaaaaaaaa", ts: 1_800_000_000_000 });
    const t2 = buildTask(r, 2, { nonce: "nonce-bbbbbbbbbbbbbbbb", ts: 1_800_000_000_001 });
    expect(parseTask(t0).ok).toBe(true);
    expect(t0.task_id).toBe(
      deterministicTaskId({ uid: "uid-web-1", generation: 1, slot: 0, timeMs: Date.parse(CREATED) }),
    );
    expect(t2.task_id).toBe(
      deterministicTaskId({ uid: "uid-web-1", generation: 1, slot: 2, timeMs: Date.parse(CREATED) }),
    );
    expect(t0.task_id).not.toBe(t2.task_id);
    expect(t0).toMatchObject({
      kind: "Deployment",
      ns: "shop",
      parent: "web",
      parent_uid: "uid-web-1",
      generation: 1,
      manifest_ref: { key: m.key, sha256: m.sha256 },
      // 50m app + 100m sidecar; 16Mi app + 96Mi sidecar; 8080 is a host port on the host network.
      reqs: { cpu_millis: 150, memory_bytes: 112 * 1024 * 1024, ports: [{ port: 8080, protocol: "TCP" }] },
      qos: "Burstable",
      priority: 0,
      attempt: 0,
      origin: "dispatcher",
      hints: { template_hash: r.templateHash },
    });
    expect(t0).not.toHaveProperty("ordinal");
    // The same slot of the next generation is another task.
    const g2 = renderWorkload(
      deployment((d) => (d.metadata.generation = 2)),
      OPTS,
    );
    expect(buildTask(g2, 0, { nonce: "nonce-cccccccccccccccc", ts: 1 }).task_id).not.toBe(t0.task_id);
  });

  it("is Guaranteed when every container's requests equal its limits, and maps node selector, tolerations, anti-affinity", () => {
    const g = renderWorkload(
      deployment((d) => {
        const c = d.spec.template.spec.containers[0]!;
        c.resources = { limits: { cpu: "100m", memory: "32Mi" } };
        d.spec.template.spec.hostNetwork = false;
        d.spec.template.spec.nodeSelector = { disk: "ssd" };
        d.spec.template.spec.tolerations = [
          { key: "dedicated", operator: "Equal", value: "web", effect: "NoSchedule" },
        ];
        d.spec.template.spec.affinity = {
          podAntiAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: [
              { labelSelector: { matchLabels: { app: "web" } }, topologyKey: "kubernetes.io/hostname" },
            ],
          },
        };
        d.spec.priority = 7;
      }),
      OPTS,
    );
    const t = buildTask(g, 1, { nonce: "nonce-dddddddddddddddd", ts: 1 });
    expect(t.qos).toBe("Guaranteed");
    expect(t.reqs.ports).toEqual([]);
    expect(t.node_selector).toEqual({ disk: "ssd" });
    expect(t.tolerations).toEqual([
      { key: "dedicated", operator: "Equal", value: "web", effect: "NoSchedule" },
    ]);
    expect(t.anti_affinity).toEqual({ matchLabels: { app: "web" } });
    expect(t.priority).toBe(7);
  });

  it("is accepted by the node agent's manifest parser and digest check", async () => {
    expect(() => parsePodManifest(JSON.parse(new TextDecoder().decode(m.bytes)))).not.toThrow();
    const kv = {
      get: async (key: string) => (key === m.key ? { value: m.bytes, operation: "PUT" as const } : null),
    };
    const cache = new ManifestCache(kv as never);
    const verified = await cache.get({ key: m.key, sha256: m.sha256 });
    expect(verified.labels[MANIFEST_LABELS.parent]).toBe("web");
  });
});

describe("rendering copies within this realm", () => {
  /** Every object and array inside `v` has this realm's prototypes (what canonical JSON accepts). */
  function realmProblems(v: unknown, path = "$"): string[] {
    if (typeof v !== "object" || v === null) return [];
    const proto = Object.getPrototypeOf(v) as unknown;
    const own = Array.isArray(v) ? proto === Array.prototype : proto === Object.prototype;
    const here = own ? [] : [path];
    return [...here, ...Object.entries(v).flatMap(([k, x]) => realmProblems(x, `${path}.${k}`))];
  }

  it("gives a manifest of plain objects of this realm, a copy of the template, with no test-side shim", () => {
    const w = deployment();
    const r = renderWorkload(w, OPTS);
    expect(realmProblems(r.manifests[0]!.manifest)).toEqual([]);
    r.manifests[0]!.manifest.spec.containers[0]!.image = "changed";
    expect(w.spec.template.spec.containers[0]!.image).not.toBe("changed");
  });

  it("renders an object whose parts come from another realm to the same bytes", () => {
    // Under Jest's VM modules structuredClone answers with the host realm's objects.
    const foreign = structuredClone(deployment());
    expect(renderWorkload(foreign, OPTS).manifests[0]!.sha256).toBe(
      renderWorkload(deployment(), OPTS).manifests[0]!.sha256,
    );
  });
});

describe("rendering a BeemeshStatefulSet", () => {
  const w = statefulSet(3);
  const r = renderWorkload(w, OPTS);

  it("gives one manifest per ordinal with a stable hostname, the service as subdomain and its own data directory", () => {
    expect(r.manifests.map((m) => m.ordinal)).toEqual([0, 1, 2]);
    expect(new Set(r.manifests.map((m) => m.sha256)).size).toBe(3);
    r.manifests.forEach((m, i) => {
      expect(m.manifest.spec.hostname).toBe(`db-${i}`);
      expect(m.manifest.spec.subdomain).toBe("db-svc");
      expect(m.manifest.metadata.labels[MANIFEST_LABELS.ordinal]).toBe(String(i));
      expect(m.manifest.spec.volumes).toContainEqual({
        name: DATA_VOLUME,
        hostPath: { path: `/data/beemesh/shop/db-${i}`, type: "DirectoryOrCreate" },
      });
      expect(() => parsePodManifest(JSON.parse(new TextDecoder().decode(m.bytes)))).not.toThrow();
    });
  });

  it("injects the raft-member sidecar with its ordinal, its peers and its port", () => {
    const sidecar = r.manifests[1]!.manifest.spec.containers[1]!;
    expect(sidecar.name).toBe("beemesh-raft");
    expect(sidecar.command).toEqual(["node", "/app/dist/controllers/raft-member/main.js"]);
    const env = envOf(sidecar);
    expect(env).toMatchObject({
      BEEMESH_NAMESPACE: "shop",
      BEEMESH_PARENT: "db",
      BEEMESH_PARENT_UID: "uid-db-1",
      BEEMESH_GENERATION: "4",
      BEEMESH_ORDINAL: "1",
      BEEMESH_PEERS: "db-0,db-1,db-2",
      BEEMESH_RAFT_PORT: "7100",
      BEEMESH_RAFT_DATA_DIR: "/var/lib/beemesh/raft",
      BEEMESH_WORKLOAD_API_SOCKET: WORKLOAD_API_SOCKET,
    });
    expect(sidecar.volumeMounts).toContainEqual({ name: DATA_VOLUME, mountPath: "/var/lib/beemesh/raft" });
  });

  it("builds one Task per ordinal naming that member's manifest", () => {
    for (const i of [0, 1, 2]) {
      const t = buildTask(r, i, { nonce: "nonce-eeeeeeeeeeeeeeee", ts: 1 });
      expect(parseTask(t).ok).toBe(true);
      expect(t.kind).toBe("StatefulSet");
      expect(t.ordinal).toBe(i);
      expect(t.manifest_ref).toEqual({ key: manifestForSlot(r, i).key, sha256: r.manifests[i]!.sha256 });
    }
    expect(() => buildTask(r, 3, { nonce: "nonce-ffffffffffffffff", ts: 1 })).toThrow(
      /no manifest for slot 3/,
    );
  });
});
