// Field ownership and server-side apply (a reduced structured-merge-diff:
// objects merge by field, lists and scalars are atomic).
import type { KubeObject } from "../../controllers/dispatcher/store/index.js";
import {
  ApplyConflictError,
  describePath,
  FieldSet,
  fromFieldsV1,
  serverSideApply,
  toFieldsV1,
  trackUpdate,
  type Manager,
} from "../../controllers/dispatcher/api/managed-fields.js";

const T0 = "2026-01-01T00:00:00Z";
const T1 = "2026-01-01T00:01:00Z";
const apply = (manager: string): Manager => ({
  manager,
  operation: "Apply",
  apiVersion: "beemesh.io/v1alpha1",
});
const update = (manager: string): Manager => ({
  manager,
  operation: "Update",
  apiVersion: "beemesh.io/v1alpha1",
});

function obj(spec: Record<string, unknown>, labels?: Record<string, string>): KubeObject {
  return {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: "web", namespace: "default", uid: "u1", ...(labels ? { labels } : {}) },
    spec,
  };
}

const owned = (o: KubeObject, manager: string) =>
  fromFieldsV1(o.metadata.managedFields?.find((m) => m.manager === manager)?.fieldsV1)
    .paths()
    .map((p) => p.join("."))
    .sort();

describe("fieldsV1", () => {
  test("round-trips leaf paths", () => {
    const set = FieldSet.of([
      ["spec", "replicas"],
      ["metadata", "labels", "app"],
      ["spec", "template", "spec", "containers"],
    ]);
    const tree = toFieldsV1(set);
    expect(tree).toEqual({
      "f:spec": { "f:replicas": {}, "f:template": { "f:spec": { "f:containers": {} } } },
      "f:metadata": { "f:labels": { "f:app": {} } },
    });
    expect(
      fromFieldsV1(tree)
        .paths()
        .map((p) => p.join("."))
        .sort(),
    ).toEqual(["metadata.labels.app", "spec.replicas", "spec.template.spec.containers"].sort());
  });

  test("reads what Kubernetes writes: '.' members and list items, owned as whole lists here", () => {
    const tree = {
      "f:metadata": { "f:annotations": { ".": {}, "f:note": {} } },
      "f:spec": {
        "f:template": { "f:spec": { "f:containers": { 'k:{"name":"main"}': { ".": {}, "f:image": {} } } } },
      },
    };
    expect(
      fromFieldsV1(tree)
        .paths()
        .map((p) => p.join("."))
        .sort(),
    ).toEqual(["metadata.annotations", "metadata.annotations.note", "spec.template.spec.containers"].sort());
  });

  test("conflict paths are worded as Kubernetes does", () => {
    expect(describePath(["spec", "replicas"])).toBe(".spec.replicas");
    expect(describePath(["metadata", "labels", "app.kubernetes.io/name"])).toBe(
      '.metadata.labels["app.kubernetes.io/name"]',
    );
  });
});

describe("ownership after updates", () => {
  test("a create gives every field to its writer, but not the server's own metadata", () => {
    const created = obj({ replicas: 1, selector: { matchLabels: { app: "web" } } }, { app: "web" });
    const fields = trackUpdate(undefined, created, update("kubectl-create"), "main", T0);
    expect(fields).toHaveLength(1);
    expect(
      owned({ ...created, metadata: { ...created.metadata, managedFields: fields } }, "kubectl-create"),
    ).toEqual(["metadata.labels.app", "spec.replicas", "spec.selector.matchLabels.app"]);
  });

  test("a writer takes the fields it changes from their old owner; removed fields belong to no one", () => {
    const v1 = obj({ replicas: 1, priority: 3 });
    v1.metadata.managedFields = trackUpdate(undefined, v1, update("a"), "main", T0);
    const v2 = obj({ replicas: 5 });
    v2.metadata.managedFields = trackUpdate(v1, v2, update("b"), "main", T1);
    expect(owned(v2, "a")).toEqual([]);
    expect(v2.metadata.managedFields.map((m) => m.manager)).toEqual(["b"]);
    expect(owned(v2, "b")).toEqual(["spec.replicas"]);
  });

  test("status writes are tracked separately under the status subresource", () => {
    const v1 = obj({ replicas: 1 });
    v1.metadata.managedFields = trackUpdate(undefined, v1, update("a"), "main", T0);
    const v2 = { ...v1, status: { readyReplicas: 1 } };
    const fields = trackUpdate(v1, v2, { ...update("controller"), subresource: "status" }, "status", T1);
    expect(fields.find((m) => m.manager === "controller")).toMatchObject({
      subresource: "status",
      fieldsV1: { "f:status": { "f:readyReplicas": {} } },
    });
    expect(fields.find((m) => m.manager === "a")?.fieldsV1).toEqual({ "f:spec": { "f:replicas": {} } });
  });
});

describe("server-side apply", () => {
  test("creates with the applier owning exactly what it applied", () => {
    const result = serverSideApply(undefined, obj({ replicas: 2 }), apply("alice"), {
      force: false,
      scope: "main",
      time: T0,
    });
    expect(result.spec).toEqual({ replicas: 2 });
    expect(result.metadata.managedFields).toEqual([
      {
        manager: "alice",
        operation: "Apply",
        apiVersion: "beemesh.io/v1alpha1",
        time: T0,
        fieldsType: "FieldsV1",
        fieldsV1: { "f:spec": { "f:replicas": {} } },
      },
    ]);
  });

  test("changing another manager's field conflicts (listing every conflict) unless forced", () => {
    const live = serverSideApply(undefined, obj({ replicas: 2, priority: 1 }), apply("alice"), {
      force: false,
      scope: "main",
      time: T0,
    });
    let caught: unknown;
    try {
      serverSideApply(live, obj({ replicas: 3, priority: 2 }), apply("bob"), {
        force: false,
        scope: "main",
        time: T1,
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ApplyConflictError);
    expect(
      (caught as ApplyConflictError).conflicts.map((c) => `${c.manager} ${describePath(c.path)}`).sort(),
    ).toEqual(["alice .spec.priority", "alice .spec.replicas"]);
    const forced = serverSideApply(live, obj({ replicas: 3 }), apply("bob"), {
      force: true,
      scope: "main",
      time: T1,
    });
    expect(forced.spec).toEqual({ replicas: 3, priority: 1 });
    expect(owned(forced, "bob")).toEqual(["spec.replicas"]);
    expect(owned(forced, "alice")).toEqual(["spec.priority"]);
  });

  test("an Update owner conflicts too (kubectl's client-side apply, kubectl scale)", () => {
    const live = obj({ replicas: 2 });
    live.metadata.managedFields = trackUpdate(
      undefined,
      live,
      update("kubectl-client-side-apply"),
      "main",
      T0,
    );
    expect(() =>
      serverSideApply(live, obj({ replicas: 3 }), apply("kubectl"), {
        force: false,
        scope: "main",
        time: T1,
      }),
    ).toThrow(ApplyConflictError);
  });

  test("applying an equal value shares the field; it stays while any owner applies it", () => {
    let live = serverSideApply(undefined, obj({ replicas: 2, priority: 1 }), apply("alice"), {
      force: false,
      scope: "main",
      time: T0,
    });
    live = serverSideApply(live, obj({ priority: 1 }), apply("bob"), {
      force: false,
      scope: "main",
      time: T0,
    });
    live = serverSideApply(live, obj({ replicas: 2 }), apply("alice"), {
      force: false,
      scope: "main",
      time: T1,
    });
    expect(live.spec).toEqual({ replicas: 2, priority: 1 }); // bob still applies priority
    live = serverSideApply(live, obj({}), apply("bob"), { force: false, scope: "main", time: T1 });
    expect(live.spec).toEqual({ replicas: 2 }); // now no one does
  });

  test("fields no one applies any more are removed, with the objects they leave empty", () => {
    let live = serverSideApply(
      undefined,
      obj({ replicas: 1, watchdogSidecar: { intervalSeconds: 2 } }, { app: "web" }),
      apply("alice"),
      { force: false, scope: "main", time: T0 },
    );
    live = serverSideApply(live, obj({ replicas: 1 }), apply("alice"), {
      force: false,
      scope: "main",
      time: T1,
    });
    expect(live.spec).toEqual({ replicas: 1 });
    expect(live.metadata.labels).toBeUndefined();
  });

  test("lists are atomic: applying a different list replaces it", () => {
    const containers = (images: string[]) => ({
      template: { spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) } },
    });
    let live = serverSideApply(undefined, obj(containers(["a", "b"])), apply("alice"), {
      force: false,
      scope: "main",
      time: T0,
    });
    live = serverSideApply(live, obj(containers(["c"])), apply("alice"), {
      force: false,
      scope: "main",
      time: T1,
    });
    expect(live.spec).toEqual(containers(["c"]));
    expect(owned(live, "alice")).toEqual(["spec.template.spec.containers"]);
  });
});
