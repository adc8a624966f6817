// The pure parts of the node agent's workload identity: SPIFFE IDs, roles,
// socket paths, pod addresses and the manifest rewrite, on a manifest the
// dispatcher's renderer really produces.
import {
  POD_ENV,
  injectAttachment,
  parseAddressRange,
  pickPodAddress,
  podSocketDir,
  sidecarsOf,
  workloadIdentityConfigFromEnv,
  workloadRole,
  workloadSpiffeId,
  WorkloadIdentityError,
  type PodAttachment,
} from "../../controllers/scheduler-bidder/workload-identity.js";
import {
  renderWorkload,
  WORKLOAD_API_MOUNT,
  WORKLOAD_API_VOLUME,
} from "../../controllers/dispatcher/fanout/render.js";
import type { PodManifest } from "../../controllers/scheduler-bidder/runtime/types.js";
import { parsePodManifest } from "../../controllers/scheduler-bidder/runtime/manifest.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { parseWorkload, type Workload } from "../../protocol/index.js";

const TD = "beemesh.local";

function rendered(): PodManifest {
  const parsed = parseWorkload({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: {
      name: "web",
      namespace: "default",
      uid: "4b1c6a1e-0000-4000-8000-000000000001",
      generation: 2,
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: {
          hostNetwork: true,
          containers: [
            { name: "httpd", image: "localhost/beemesh/busybox:latest", command: ["httpd", "-f"] },
          ],
        },
      },
    },
  });
  if (!parsed.ok) throw parsed.error;
  const w: Workload = parsed.value;
  const manifest = renderWorkload(w, { natsUrl: "tls://127.0.0.1:4222" }).manifests[0]?.manifest;
  // The node agent sees the manifest as the runtime's Pod shape (after its own schema check).
  return parsePodManifest(JSON.parse(JSON.stringify(manifest)));
}

const att = (over: Partial<PodAttachment> = {}): PodAttachment => ({
  podName: "web-abc",
  spiffeId: `spiffe://${TD}/ns/default/deployment/web/web-abc`,
  hostDir: "/run/beemesh/workload-api/web-abc",
  socketPath: "/run/beemesh/workload-api/web-abc/agent.sock",
  nodeId: "node-1",
  taskId: "01JTASK",
  ...over,
});

const envOf = (m: PodManifest, container: string): Record<string, string | undefined> =>
  Object.fromEntries(
    (m.spec.containers.find((c) => c.name === container)?.env ?? []).map((e) => [e.name, e.value]),
  );

describe("workload SPIFFE IDs and roles", () => {
  test("Deployment and StatefulSet pods get their kind's path and NATS role", () => {
    const d = workloadSpiffeId(TD, { kind: "Deployment", ns: "shop", parent: "web" }, "web-x1");
    const s = workloadSpiffeId(TD, { kind: "StatefulSet", ns: "db", parent: "raft" }, "raft-0");
    expect(d.toString()).toBe("spiffe://beemesh.local/ns/shop/deployment/web/web-x1");
    expect(s.toString()).toBe("spiffe://beemesh.local/ns/db/statefulset/raft/raft-0");
    expect(workloadRole(d)).toBe("watchdog");
    expect(workloadRole(s)).toBe("raft-member");
  });

  test("non-workload IDs get no role", () => {
    expect(() => workloadRole(spiffeId(TD, "node", "node-1"))).toThrow(WorkloadIdentityError);
    expect(() => workloadRole(spiffeId(TD, "ns", "a", "job", "b", "c"))).toThrow(/no Beemesh workload kind/);
  });
});

describe("socket directories", () => {
  test("named after the pod when the socket path fits, hashed when it would not", () => {
    expect(podSocketDir("/run/beemesh/workload-api", "web-abc")).toBe("/run/beemesh/workload-api/web-abc");
    const longRoot = `/tmp/${"d".repeat(50)}`;
    const pod = "p".repeat(63);
    const dir = podSocketDir(longRoot, pod);
    expect(dir).toMatch(new RegExp(`^${longRoot}/h-[0-9a-f]{16}$`));
    expect(podSocketDir(longRoot, pod)).toBe(dir);
    expect(Buffer.byteLength(`${dir}/agent.sock`)).toBeLessThanOrEqual(107);
    expect(() => podSocketDir(`/${"x".repeat(100)}`, "a")).toThrow(/too long/);
  });
});

describe("pod addresses", () => {
  test("a loopback range without network and broadcast addresses", () => {
    expect(parseAddressRange("127.42.1.7/24")).toEqual({
      cidr: "127.42.1.0/24",
      first: (127 << 24) + (42 << 16) + (1 << 8) + 1,
      last: (127 << 24) + (42 << 16) + (1 << 8) + 254,
    });
    expect(() => parseAddressRange("10.0.0.0/24")).toThrow(/not loopback/);
    expect(() => parseAddressRange("127.0.0.0/8")).toThrow(/\/16 to \/30/);
    expect(() => parseAddressRange("127.0.0.300/24")).toThrow(WorkloadIdentityError);
  });

  test("the same pod gets the same address; taken addresses are skipped; a full range refuses", () => {
    const range = parseAddressRange("127.42.1.0/30"); // two hosts: .1 and .2
    const a = pickPodAddress(range, "node-1", "web-a", new Set());
    expect(pickPodAddress(range, "node-1", "web-a", new Set())).toBe(a);
    expect(["127.42.1.1", "127.42.1.2"]).toContain(a);
    const b = pickPodAddress(range, "node-1", "web-a", new Set([a]));
    expect(b).not.toBe(a);
    expect(() => pickPodAddress(range, "node-1", "web-a", new Set([a, b]))).toThrow(/full/);
  });
});

describe("injectAttachment", () => {
  test("the placeholder volume becomes the pod's hostPath; the sidecar gets the socket and the pod facts", () => {
    const m = rendered();
    expect(sidecarsOf(m).map((c) => c.name)).toEqual(["beemesh-watchdog"]);
    const out = injectAttachment(m, att());
    expect(out.spec.volumes?.filter((v) => v.name === WORKLOAD_API_VOLUME)).toEqual([
      {
        name: WORKLOAD_API_VOLUME,
        hostPath: { path: "/run/beemesh/workload-api/web-abc", type: "Directory" },
      },
    ]);
    const env = envOf(out, "beemesh-watchdog");
    expect(env).toMatchObject({
      [POD_ENV.socket]: `${WORKLOAD_API_MOUNT}/agent.sock`,
      [POD_ENV.podName]: "web-abc",
      [POD_ENV.nodeId]: "node-1",
      [POD_ENV.taskId]: "01JTASK",
      BEEMESH_PARENT: "web",
    });
    // Replaced, not duplicated.
    const names =
      out.spec.containers.find((c) => c.name === "beemesh-watchdog")?.env?.map((e) => e.name) ?? [];
    expect(names.filter((n) => n === POD_ENV.socket)).toHaveLength(1);
    expect(envOf(out, "httpd")[POD_ENV.podName]).toBeUndefined();
    expect(env[POD_ENV.podIp]).toBeUndefined();
    // The input is untouched and the output still is a valid Pod.
    expect(m.spec.volumes?.find((v) => v.name === WORKLOAD_API_VOLUME)?.emptyDir).toEqual({});
    expect(() => parsePodManifest(out)).not.toThrow();
  });

  test("with a pod address every container gets it and the sidecar probes it", () => {
    const out = injectAttachment(rendered(), att({ podIp: "127.42.1.9" }));
    expect(envOf(out, "httpd")[POD_ENV.podIp]).toBe("127.42.1.9");
    expect(envOf(out, "beemesh-watchdog")).toMatchObject({
      [POD_ENV.podIp]: "127.42.1.9",
      [POD_ENV.probeHost]: "127.42.1.9",
    });
  });

  test("a sidecar that does not mount the volume gets a read-only mount", () => {
    const m = rendered();
    const sidecar = m.spec.containers.find((c) => c.name === "beemesh-watchdog")!;
    sidecar.volumeMounts = [];
    const out = injectAttachment(m, att());
    expect(out.spec.containers.find((c) => c.name === "beemesh-watchdog")?.volumeMounts).toEqual([
      { name: WORKLOAD_API_VOLUME, mountPath: WORKLOAD_API_MOUNT, readOnly: true },
    ]);
  });

  test("a pod without a Beemesh sidecar is refused", () => {
    const m = rendered();
    m.spec.containers = m.spec.containers.filter((c) => c.name !== "beemesh-watchdog");
    expect(sidecarsOf(m)).toEqual([]);
    expect(() => injectAttachment(m, att())).toThrow(/no Beemesh sidecar/);
  });
});

describe("workloadIdentityConfigFromEnv", () => {
  test("off without a CA dir; defaults and checks otherwise", () => {
    expect(workloadIdentityConfigFromEnv({})).toBeUndefined();
    expect(workloadIdentityConfigFromEnv({ BEEMESH_CA_DIR: "/ca" })).toEqual({
      caDir: "/ca",
      trustDomain: undefined,
      socketDir: "/run/beemesh/workload-api",
      podAddressRange: undefined,
      svidTtlMs: undefined,
    });
    expect(
      workloadIdentityConfigFromEnv({
        BEEMESH_CA_DIR: "/ca",
        BEEMESH_WORKLOAD_API_DIR: "/s",
        BEEMESH_POD_ADDRESS_RANGE: "127.9.1.0/24",
        BEEMESH_WORKLOAD_SVID_TTL_S: "600",
      }),
    ).toMatchObject({ socketDir: "/s", podAddressRange: "127.9.1.0/24", svidTtlMs: 600_000 });
    expect(() =>
      workloadIdentityConfigFromEnv({ BEEMESH_CA_DIR: "/ca", BEEMESH_POD_ADDRESS_RANGE: "10.0.0.0/24" }),
    ).toThrow(/loopback/);
    expect(() =>
      workloadIdentityConfigFromEnv({ BEEMESH_CA_DIR: "/ca", BEEMESH_WORKLOAD_SVID_TTL_S: "0" }),
    ).toThrow(/positive/);
  });
});
