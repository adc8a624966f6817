// One test per resource rule: each breaks exactly one thing in a valid object
// and expects a refusal naming the right field.
import {
  parseBeemeshDeployment,
  parseBeemeshStatefulSet,
  parseBeemeshDeploymentList,
  parseWorkload,
} from "../../protocol/index.js";
import type { BeemeshDeployment, BeemeshStatefulSet, FieldCause, Result } from "../../protocol/index.js";

type Mutable = Record<string, unknown> & { spec: Record<string, unknown>; metadata: Record<string, unknown> };

function deployment(): Mutable {
  return {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: "web", namespace: "default", labels: { app: "web" } },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web", tier: "front" } },
        spec: {
          containers: [
            { name: "httpd", image: "localhost/beemesh/busybox:latest", ports: [{ containerPort: 8080 }] },
          ],
        },
      },
      watchdogSidecar: { image: "localhost/beemesh/controllers:latest" },
    },
  };
}

function statefulSet(): Mutable {
  return {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshStatefulSet",
    metadata: { name: "db", namespace: "default" },
    spec: {
      replicas: 3,
      serviceName: "db",
      selector: { matchLabels: { app: "db" } },
      template: {
        metadata: { labels: { app: "db" } },
        spec: { containers: [{ name: "main", image: "alpine", command: ["sleep", "3600"] }] },
      },
      raftSidecar: { port: 7000 },
    },
  };
}

const template = (o: Mutable) =>
  o.spec.template as {
    metadata: { labels: Record<string, string> };
    spec: { containers: Record<string, unknown>[] };
  };
const container0 = (o: Mutable) => template(o).spec.containers[0] as Record<string, unknown>;

function causesOf<T>(r: Result<T>): FieldCause[] {
  if (r.ok) throw new Error("expected a refusal, got a valid object");
  return [...r.error.causes];
}

function expectRefused<T>(r: Result<T>, field: string, reason?: FieldCause["reason"]): FieldCause {
  const causes = causesOf(r);
  const hit = causes.find((c) => c.field === field && (reason === undefined || c.reason === reason));
  if (!hit)
    throw new Error(`no cause at ${field} (${reason ?? "any"}); got ${JSON.stringify(causes, null, 1)}`);
  return hit;
}

describe("valid resources", () => {
  test("a deployment is accepted and defaulted", () => {
    const r = parseBeemeshDeployment(deployment());
    if (!r.ok) throw r.error;
    const d: BeemeshDeployment = r.value;
    expect(d.spec.strategy).toEqual({
      type: "RollingUpdate",
      rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
    });
    expect(d.spec.watchdogSidecar).toEqual({
      image: "localhost/beemesh/controllers:latest",
      intervalSeconds: 1,
      ttlIntervals: 3,
    });
    expect(d.spec.template.spec.restartPolicy).toBe("Always");
    expect(d.spec.template.spec.containers[0]?.ports?.[0]?.protocol).toBe("TCP");
  });

  test("replicas defaults to 1", () => {
    const o = deployment();
    delete o.spec.replicas;
    const r = parseBeemeshDeployment(o);
    expect(r.ok && r.value.spec.replicas).toBe(1);
  });

  test("a statefulset is accepted and its raft sidecar defaulted", () => {
    const r = parseBeemeshStatefulSet(statefulSet());
    if (!r.ok) throw r.error;
    const s: BeemeshStatefulSet = r.value;
    expect(s.spec.raftSidecar).toMatchObject({
      port: 7000,
      electionTimeoutMs: 1000,
      heartbeatIntervalMs: 100,
    });
    expect(s.spec.strategy?.rollingUpdate?.maxUnavailable).toBe(1);
  });

  test("the parsed value is a copy", () => {
    const o = deployment();
    const r = parseBeemeshDeployment(o);
    if (!r.ok) throw r.error;
    expect(r.value).not.toBe(o);
    expect(o.spec.strategy).toBeUndefined(); // defaults went to the copy only
  });

  test("defaults are fresh objects, never shared between parses", () => {
    const a = parseBeemeshDeployment(deployment());
    const b = parseBeemeshDeployment(deployment());
    if (!a.ok || !b.ok) throw new Error("expected both to parse");
    const rolling = a.value.spec.strategy?.rollingUpdate;
    if (!rolling) throw new Error("strategy was not defaulted");
    rolling.maxSurge = 7;
    expect(b.value.spec.strategy?.rollingUpdate?.maxSurge).toBe(1);
    const c = parseBeemeshDeployment(deployment());
    expect(c.ok && c.value.spec.strategy?.rollingUpdate?.maxSurge).toBe(1);
  });

  test("parseWorkload dispatches on kind", () => {
    expect(parseWorkload(statefulSet()).ok).toBe(true);
    expect(parseWorkload(deployment()).ok).toBe(true);
    expectRefused(parseWorkload({ ...deployment(), kind: "Pod" }), "kind", "FieldValueNotSupported");
  });
});

describe("resource rules", () => {
  test("negative replicas", () => {
    const o = deployment();
    o.spec.replicas = -1;
    expect(expectRefused(parseBeemeshDeployment(o), "spec.replicas", "FieldValueInvalid").message).toMatch(
      /greater than or equal to 0/,
    );
  });

  test("non-integer replicas", () => {
    const o = deployment();
    o.spec.replicas = 1.5;
    expect(expectRefused(parseBeemeshDeployment(o), "spec.replicas").message).toMatch(/integer/);
    const s = statefulSet();
    s.spec.replicas = "3";
    expectRefused(parseBeemeshStatefulSet(s), "spec.replicas", "FieldValueTypeInvalid");
  });

  test("container without image", () => {
    const o = deployment();
    delete container0(o).image;
    expectRefused(parseBeemeshDeployment(o), "spec.template.spec.containers[0].image", "FieldValueRequired");
    const blank = deployment();
    container0(blank).image = "";
    expectRefused(
      parseBeemeshDeployment(blank),
      "spec.template.spec.containers[0].image",
      "FieldValueRequired",
    );
  });

  test("metadata.name must be a DNS-1123 subdomain of at most 253 characters", () => {
    for (const name of ["Web", "web_app", "-web", "web.", "a".repeat(254)]) {
      const o = deployment();
      o.metadata.name = name;
      expectRefused(parseBeemeshDeployment(o), "metadata.name");
    }
    const ok = deployment();
    ok.metadata.name = "web.example-1";
    expect(parseBeemeshDeployment(ok).ok).toBe(true);
  });

  test("container names must be DNS-1123 labels of at most 63 characters", () => {
    for (const name of ["Main", "main.app", "a".repeat(64)]) {
      const o = deployment();
      container0(o).name = name;
      const cause = expectRefused(parseBeemeshDeployment(o), "spec.template.spec.containers[0].name");
      expect(cause.message).toMatch(/DNS-1123 label/);
      expect(["FieldValueInvalid", "FieldValueTooLong"]).toContain(cause.reason);
    }
  });

  test("metadata.name or generateName is required", () => {
    const o = deployment();
    delete o.metadata.name;
    expectRefused(parseBeemeshDeployment(o), "metadata.name", "FieldValueRequired");
    o.metadata.generateName = "web-";
    expect(parseBeemeshDeployment(o).ok).toBe(true);
  });

  test("unknown top-level field", () => {
    const o = deployment();
    o.extra = true;
    expect(expectRefused(parseBeemeshDeployment(o), "extra", "FieldValueForbidden").message).toMatch(
      /unknown field/,
    );
  });

  test("unknown field in spec", () => {
    const o = deployment();
    o.spec.replica = 3;
    expectRefused(parseBeemeshDeployment(o), "spec.replica", "FieldValueForbidden");
  });

  test("statefulset without serviceName", () => {
    const s = statefulSet();
    delete s.spec.serviceName;
    const causes = causesOf(parseBeemeshStatefulSet(s));
    expect(causes).toContainEqual(
      expect.objectContaining({ field: "spec.serviceName", reason: "FieldValueRequired" }),
    );
  });

  test("template labels must match spec.selector.matchLabels", () => {
    const o = deployment();
    template(o).metadata.labels = { app: "other" };
    expect(
      expectRefused(parseBeemeshDeployment(o), "spec.template.metadata.labels", "FieldValueInvalid").message,
    ).toMatch(/does not match/);
  });

  test("template labels must match spec.selector.matchExpressions", () => {
    const o = deployment();
    o.spec.selector = { matchExpressions: [{ key: "tier", operator: "In", values: ["back"] }] };
    expectRefused(parseBeemeshDeployment(o), "spec.template.metadata.labels", "FieldValueInvalid");
    o.spec.selector = { matchExpressions: [{ key: "tier", operator: "In", values: ["front", "back"] }] };
    expect(parseBeemeshDeployment(o).ok).toBe(true);
    o.spec.selector = {
      matchLabels: { app: "web" },
      matchExpressions: [{ key: "canary", operator: "DoesNotExist" }],
    };
    expect(parseBeemeshDeployment(o).ok).toBe(true);
  });

  test("an empty selector is refused", () => {
    const o = deployment();
    o.spec.selector = {};
    expectRefused(parseBeemeshDeployment(o), "spec.selector", "FieldValueInvalid");
  });

  test("a selector expression needs values for In", () => {
    const o = deployment();
    o.spec.selector = { matchExpressions: [{ key: "app", operator: "In" }] };
    expectRefused(
      parseBeemeshDeployment(o),
      "spec.selector.matchExpressions[0].values",
      "FieldValueRequired",
    );
  });

  test("labels must be valid label keys and values", () => {
    const o = deployment();
    o.metadata.labels = { "bad key!": "x", ok: "bad value!" };
    const causes = causesOf(parseBeemeshDeployment(o));
    expect(causes).toContainEqual(expect.objectContaining({ field: "metadata.labels[bad key!]" }));
    expect(causes).toContainEqual(expect.objectContaining({ field: "metadata.labels[ok]" }));
  });

  test("duplicate and reserved container names", () => {
    const o = deployment();
    template(o).spec.containers.push({ name: "httpd", image: "x" }, { name: "beemesh-watchdog", image: "x" });
    const r = parseBeemeshDeployment(o);
    expectRefused(r, "spec.template.spec.containers[1].name", "FieldValueDuplicate");
    expectRefused(r, "spec.template.spec.containers[2].name", "FieldValueForbidden");
  });

  test("a probe needs exactly one handler", () => {
    const o = deployment();
    container0(o).readinessProbe = { periodSeconds: 1 };
    expectRefused(
      parseBeemeshDeployment(o),
      "spec.template.spec.containers[0].readinessProbe",
      "FieldValueRequired",
    );
    container0(o).readinessProbe = { httpGet: { port: 8080 }, tcpSocket: { port: 8080 } };
    expectRefused(
      parseBeemeshDeployment(o),
      "spec.template.spec.containers[0].readinessProbe.tcpSocket",
      "FieldValueForbidden",
    );
    container0(o).readinessProbe = { exec: { command: ["true"] } };
    expect(parseBeemeshDeployment(o).ok).toBe(true);
  });

  test("a volume mount names an existing volume", () => {
    const o = deployment();
    container0(o).volumeMounts = [{ name: "data", mountPath: "/data" }];
    expectRefused(
      parseBeemeshDeployment(o),
      "spec.template.spec.containers[0].volumeMounts[0].name",
      "FieldValueNotFound",
    );
    (template(o).spec as Record<string, unknown>).volumes = [{ name: "data", emptyDir: {} }];
    expect(parseBeemeshDeployment(o).ok).toBe(true);
  });

  test("other volume sources are kept as given", () => {
    const o = deployment();
    (template(o).spec as Record<string, unknown>).volumes = [
      { name: "nfs", nfs: { server: "10.0.0.1", path: "/x" } },
    ];
    const r = parseBeemeshDeployment(o);
    if (!r.ok) throw r.error;
    expect(r.value.spec.template.spec.volumes?.[0]).toEqual({
      name: "nfs",
      nfs: { server: "10.0.0.1", path: "/x" },
    });
  });

  test("resource requests may not exceed limits, quantities must parse", () => {
    const o = deployment();
    container0(o).resources = { requests: { cpu: "2" }, limits: { cpu: "1500m", memory: "lots" } };
    const r = parseBeemeshDeployment(o);
    expectRefused(r, "spec.template.spec.containers[0].resources.requests[cpu]", "FieldValueInvalid");
    expectRefused(r, "spec.template.spec.containers[0].resources.limits[memory]", "FieldValueInvalid");
  });

  test("maxSurge and maxUnavailable may not both be 0", () => {
    const o = deployment();
    o.spec.strategy = { rollingUpdate: { maxSurge: 0 } };
    expectRefused(
      parseBeemeshDeployment(o),
      "spec.strategy.rollingUpdate.maxUnavailable",
      "FieldValueInvalid",
    );
    o.spec.strategy = { rollingUpdate: { maxSurge: "25%", maxUnavailable: "0%" } };
    expect(parseBeemeshDeployment(o).ok).toBe(true);
    o.spec.strategy = { rollingUpdate: { maxSurge: "125%" } };
    expectRefused(parseBeemeshDeployment(o), "spec.strategy.rollingUpdate.maxSurge", "FieldValueInvalid");
  });

  test("hostNetwork pods may not remap ports", () => {
    const o = deployment();
    (template(o).spec as Record<string, unknown>).hostNetwork = true;
    container0(o).ports = [{ containerPort: 8080, hostPort: 9090 }];
    expectRefused(
      parseBeemeshDeployment(o),
      "spec.template.spec.containers[0].ports[0].hostPort",
      "FieldValueInvalid",
    );
  });

  test("raft heartbeat must be well under the election timeout", () => {
    const s = statefulSet();
    s.spec.raftSidecar = { electionTimeoutMs: 150, heartbeatIntervalMs: 100 };
    expectRefused(parseBeemeshStatefulSet(s), "spec.raftSidecar.heartbeatIntervalMs", "FieldValueInvalid");
  });

  test("every error is reported, not only the first", () => {
    const o = deployment();
    o.spec.replicas = -1;
    o.extra = 1;
    delete container0(o).image;
    template(o).metadata.labels = { app: "nope" };
    const fields = causesOf(parseBeemeshDeployment(o)).map((c) => c.field);
    expect(fields).toEqual(
      expect.arrayContaining([
        "spec.replicas",
        "extra",
        "spec.template.spec.containers[0].image",
        "spec.template.metadata.labels",
      ]),
    );
  });

  test("ValidationError turns into a metav1.Status", () => {
    const o = deployment();
    o.spec.replicas = -1;
    const r = parseBeemeshDeployment(o);
    if (r.ok) throw new Error("expected a refusal");
    expect(r.error.name).toBe("ValidationError");
    expect(r.error).toBeInstanceOf(Error);
    const status = r.error.toStatus({ group: "beemesh.io", kind: "BeemeshDeployment", name: "web" });
    expect(status).toMatchObject({ kind: "Status", status: "Failure", reason: "Invalid", code: 422 });
    expect(status.message).toMatch(/^BeemeshDeployment\.beemesh\.io "web" is invalid: spec\.replicas/);
    expect(status.details.causes[0]).toEqual({
      field: "spec.replicas",
      reason: "FieldValueInvalid",
      message: expect.any(String),
    });
  });

  test("list items are checked with their own rules and paths", () => {
    const bad = deployment();
    bad.spec.replicas = -2;
    const r = parseBeemeshDeploymentList({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeploymentList",
      items: [deployment(), bad],
    });
    expectRefused(r, "items[1].spec.replicas");
  });
});
