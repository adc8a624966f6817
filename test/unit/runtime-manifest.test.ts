import {
  identityLabels,
  LABEL,
  parseIdentityLabels,
} from "../../controllers/scheduler-bidder/runtime/labels.js";
import {
  derivePodPhase,
  manifestLimits,
  parseCpuMillis,
  parseMemoryBytes,
  parsePodManifest,
  prepareManifest,
} from "../../controllers/scheduler-bidder/runtime/manifest.js";
import {
  InvalidDeploySpecError,
  type ContainerStatus,
  type DeploySpec,
  type PodIdentity,
} from "../../controllers/scheduler-bidder/runtime/types.js";

const identity: PodIdentity = {
  taskId: "01J0000000000000000000000A",
  ns: "shop",
  parent: "db",
  kind: "StatefulSet",
  ordinal: 1,
  generation: 3,
  fencingToken: 1234,
};
const limits = { cpuMillis: 500, memoryBytes: 2 ** 27 };

describe("identity labels", () => {
  test("round trip, all seven keys plus limits", () => {
    const labels = identityLabels(identity, limits);
    expect(labels).toMatchObject({
      "beemesh.io/task-id": identity.taskId,
      "beemesh.io/parent": "db",
      "beemesh.io/ns": "shop",
      "beemesh.io/kind": "StatefulSet",
      "beemesh.io/ordinal": "1",
      "beemesh.io/generation": "3",
      "beemesh.io/fencing-token": "1234",
      "beemesh.io/cpu-millis": "500",
      "beemesh.io/memory-bytes": String(2 ** 27),
    });
    expect(parseIdentityLabels(labels)).toEqual({ ok: true, identity, limits });
  });

  test("a Deployment replica has no ordinal label", () => {
    const { ordinal: _ordinal, ...rest } = identity;
    const deployment: PodIdentity = { ...rest, kind: "Deployment" };
    const labels = identityLabels(deployment, limits);
    expect(labels[LABEL.ordinal]).toBeUndefined();
    expect(parseIdentityLabels(labels)).toEqual({ ok: true, identity: deployment, limits });
  });

  test.each([
    ["missing task id", { [LABEL.taskId]: undefined }, /missing beemesh.io\/task-id/],
    ["bad kind", { [LABEL.kind]: "DaemonSet" }, /Deployment or StatefulSet/],
    ["non-numeric token", { [LABEL.fencingToken]: "12a" }, /fencing-token is not an unsigned integer/],
    ["leading zero", { [LABEL.generation]: "01" }, /generation is not an unsigned integer/],
    ["negative ordinal", { [LABEL.ordinal]: "-1" }, /ordinal is not an unsigned integer/],
    ["bad ns", { [LABEL.ns]: "Shop" }, /ns is not a DNS-1123 label/],
    ["a parent too long for a label value", { [LABEL.parent]: `a.${"b".repeat(62)}` }, /parent is not/],
    ["a parent that is no DNS name", { [LABEL.parent]: "web_v2" }, /parent is not/],
    ["StatefulSet without ordinal", { [LABEL.ordinal]: undefined }, /needs an ordinal/],
  ])("refuses %s", (_what, change, reason) => {
    const labels: Record<string, string> = { ...identityLabels(identity, limits) };
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) delete labels[k];
      else labels[k] = v;
    }
    const parsed = parseIdentityLabels(labels);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason).toMatch(reason);
  });

  test("a workload name with dots (a DNS-1123 subdomain) is a parent", () => {
    const dotted: PodIdentity = { ...identity, parent: "web.v2" };
    const labels = identityLabels(dotted, limits);
    expect(labels[LABEL.parent]).toBe("web.v2");
    expect(parseIdentityLabels(labels)).toEqual({ ok: true, identity: dotted, limits });
  });

  test("null labels", () => {
    expect(parseIdentityLabels(null)).toEqual({ ok: false, reason: "no labels" });
  });
});

describe("manifest", () => {
  const spec: DeploySpec = {
    podName: "db-1",
    identity,
    limits,
    manifest: {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "template", labels: { app: "db", [LABEL.fencingToken]: "1" } },
      spec: { containers: [{ name: "app", image: "localhost/x:1" }] },
    },
  };

  test("prepareManifest names the pod and stamps the labels without touching the input", () => {
    const before = structuredClone(spec.manifest);
    const out = prepareManifest(spec, { nodeName: "n1", namespace: "beemesh" });
    expect(spec.manifest).toEqual(before);
    expect(out.metadata.name).toBe("db-1");
    expect(out.metadata.namespace).toBe("beemesh");
    expect(out.spec.nodeName).toBe("n1");
    expect(out.metadata.labels).toMatchObject({
      app: "db",
      [LABEL.fencingToken]: "1234",
      [LABEL.managedBy]: "beemesh",
    });
  });

  test("parsePodManifest keeps unknown fields and refuses a wrong shape", () => {
    const raw: unknown = JSON.parse(
      '{"apiVersion":"v1","kind":"Pod","metadata":{},"spec":{"dnsPolicy":"None","containers":[{"name":"a","image":"i","stdin":true}]}}',
    );
    const m = parsePodManifest(raw);
    expect((m.spec as Record<string, unknown>).dnsPolicy).toBe("None");
    expect(() =>
      parsePodManifest({ apiVersion: "v1", kind: "Pod", metadata: {}, spec: { containers: [] } }),
    ).toThrow(InvalidDeploySpecError);
    expect(() => parsePodManifest({ apiVersion: "v1", kind: "Service", metadata: {}, spec: {} })).toThrow(
      /manifest/,
    );
  });

  test.each([
    ["250m", 250],
    ["1", 1000],
    ["0.1", 100],
    ["1.5", 1500],
    ["100u", 1],
    ["2e-3", 2],
  ])("cpu %s = %d millis", (q, millis) => {
    expect(parseCpuMillis(q)).toBe(millis);
  });

  test.each([
    ["64Mi", 64 * 2 ** 20],
    ["1Gi", 2 ** 30],
    ["128974848", 128974848],
    ["129e6", 129e6],
    ["1G", 1e9],
    ["500k", 500_000],
    ["1.5Ki", 1536],
  ])("memory %s = %d bytes", (q, bytes) => {
    expect(parseMemoryBytes(q)).toBe(bytes);
  });

  test.each(["", "abc", "1Xi", "-1", "1.2.3"])("not a quantity: %j", (q) => {
    expect(parseMemoryBytes(q)).toBeUndefined();
  });

  test("manifestLimits sums app containers and takes the larger init container", () => {
    const limitsOf = manifestLimits({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {},
      spec: {
        containers: [
          { name: "a", image: "i", resources: { limits: { cpu: "250m", memory: "64Mi" } } },
          { name: "b", image: "i", resources: { limits: { cpu: "250m" } } },
          { name: "c", image: "i" },
        ],
        initContainers: [{ name: "init", image: "i", resources: { limits: { cpu: "2", memory: "1Mi" } } }],
      },
    });
    expect(limitsOf).toEqual({ cpuMillis: 2000, memoryBytes: 64 * 2 ** 20 });
  });
});

describe("derivePodPhase", () => {
  const c = (state: ContainerStatus["state"], extra: Partial<ContainerStatus> = {}): ContainerStatus => ({
    name: "x",
    state,
    ...extra,
  });
  test.each<[string, ContainerStatus[], string]>([
    ["no containers", [], "unknown"],
    ["all running", [c("running"), c("running")], "running"],
    ["one still waiting", [c("running"), c("waiting")], "pending"],
    ["non-zero exit", [c("running"), c("exited", { exitCode: 1 })], "failed"],
    ["exit code unknown", [c("exited")], "failed"],
    ["all exited 0", [c("exited", { exitCode: 0 }), c("exited", { exitCode: 0 })], "exited"],
    ["sidecar still up after app exit 0", [c("exited", { exitCode: 0 }), c("running")], "running"],
    ["crash loop", [c("waiting", { reason: "CrashLoopBackOff" })], "failed"],
    ["image pull", [c("waiting", { reason: "ImagePullBackOff" })], "failed"],
    ["unknown state", [c("running"), c("unknown")], "unknown"],
  ])("%s", (_what, containers, phase) => {
    expect(derivePodPhase(containers)).toBe(phase);
  });
});
