// The verbs of the dispatcher's API over the in-memory store, with the real
// Beemesh kinds: what the server fills in, what it keeps, when the generation
// moves, and how each refusal is worded.
import { MemoryObjectStore, type KubeObject } from "../../controllers/dispatcher/store/index.js";
import {
  ResourceService,
  type Committed,
  type WriteOptions,
} from "../../controllers/dispatcher/api/resource.js";
import { ApiError } from "../../controllers/dispatcher/api/status.js";
import { beemeshRegistry } from "../../controllers/dispatcher/api/beemesh-kinds.js";

const registry = beemeshRegistry();
const BMD = registry.byResource("beemesh.io", "v1alpha1", "beemeshdeployments")!;
const BMSS = registry.byResource("beemesh.io", "v1alpha1", "beemeshstatefulsets")!;

function deployment(name = "web", replicas = 2): Record<string, unknown> {
  return {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name, labels: { app: "web" } },
    spec: {
      replicas,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: { containers: [{ name: "main", image: "localhost/busybox:latest" }] },
      },
    },
  };
}

let clock: number;
let uids: number;
let commits: Committed[];
let store: MemoryObjectStore;
let svc: ResourceService;

beforeEach(() => {
  clock = Date.parse("2026-01-01T00:00:00Z");
  uids = 0;
  commits = [];
  store = new MemoryObjectStore();
  svc = new ResourceService({
    store,
    now: () => new Date(clock),
    newUid: () => `uid-${++uids}`,
    onCommit: (c) => commits.push(c),
  });
});

const opts = (over: Partial<WriteOptions> = {}): WriteOptions => ({
  dryRun: false,
  fieldManager: "tester",
  fieldValidation: "Strict",
  warnings: [],
  ...over,
});

async function refusal(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("create", () => {
  test("fills uid, creationTimestamp, generation 1, resourceVersion, defaults and managedFields", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    expect(created.metadata).toMatchObject({
      name: "web",
      namespace: "default",
      uid: "uid-1",
      creationTimestamp: "2026-01-01T00:00:00Z",
      generation: 1,
      resourceVersion: "1",
    });
    expect(created.metadata.managedFields).toEqual([
      expect.objectContaining({
        manager: "tester",
        operation: "Update",
        apiVersion: "beemesh.io/v1alpha1",
        fieldsType: "FieldsV1",
      }),
    ]);
    expect(created.spec).toMatchObject({ strategy: { type: "RollingUpdate" } }); // a schema default
    expect(created.status).toEqual({ selector: "app=web" }); // derived from spec.selector
    expect(commits).toEqual([{ type: "ADDED", object: created, previous: undefined }]);
  });

  test("status in the body is dropped; the status subresource owns it", async () => {
    const body = { ...deployment(), status: { readyReplicas: 9 } };
    const created = await svc.create(BMD, "default", body, opts());
    expect((created.status as Record<string, unknown>).readyReplicas).toBeUndefined();
  });

  test("dryRun validates and answers without storing", async () => {
    const dry = await svc.create(BMD, "default", deployment(), opts({ dryRun: true }));
    expect(dry.metadata.name).toBe("web");
    expect(await store.get(BMD, "default", "web")).toBeUndefined();
    expect(commits).toEqual([]);
  });

  test("generateName makes a name", async () => {
    const body = deployment();
    body.metadata = { generateName: "web-", labels: { app: "web" } };
    const created = await svc.create(BMD, "default", body, opts());
    expect(created.metadata.name).toMatch(/^web-[a-z0-9]{5}$/);
  });

  test.each([
    [
      "a second create",
      async () => svc.create(BMD, "default", deployment(), opts()),
      409,
      "AlreadyExists",
      'beemeshdeployments.beemesh.io "web" already exists',
    ],
    [
      "another apiVersion",
      async () => svc.create(BMD, "default", { ...deployment("x"), apiVersion: "apps/v1" }, opts()),
      400,
      "BadRequest",
      "the API version in the data (apps/v1) does not match the expected API version (beemesh.io/v1alpha1)",
    ],
    [
      "another kind",
      async () => svc.create(BMD, "default", { ...deployment("x"), kind: "BeemeshStatefulSet" }, opts()),
      400,
      "BadRequest",
      "does not match the expected kind",
    ],
    [
      "a namespace other than the URL's",
      async () =>
        svc.create(
          BMD,
          "default",
          { ...deployment("x"), metadata: { name: "x", namespace: "other" } },
          opts(),
        ),
      400,
      "BadRequest",
      "the namespace of the provided object does not match the namespace sent on the request",
    ],
    [
      "no name",
      async () => svc.create(BMD, "default", { ...deployment("x"), metadata: {} }, opts()),
      422,
      "Invalid",
      "metadata.name: Required value: name or generateName is required",
    ],
    [
      "an unknown field under Strict",
      async () =>
        svc.create(
          BMD,
          "default",
          { ...deployment("x"), spec: { ...(deployment().spec as object), replica: 3 } },
          opts(),
        ),
      400,
      "BadRequest",
      'strict decoding error: unknown field "spec.replica"',
    ],
  ])("refuses %s", async (_what, run, code, reason, message) => {
    if (reason === "AlreadyExists") await svc.create(BMD, "default", deployment(), opts());
    const before = (await store.list(BMD)).items.length;
    const err = await refusal(run());
    expect(err.toStatus()).toMatchObject({ kind: "Status", status: "Failure", code, reason });
    expect(err.message).toContain(message);
    expect((await store.list(BMD)).items).toHaveLength(before);
  });

  test("invalid fields: 422 with every cause and its field path", async () => {
    const body = deployment("web", -1);
    (
      body.spec as { template: { spec: { containers: Record<string, unknown>[] } } }
    ).template.spec.containers[0]!.image = "";
    const err = await refusal(svc.create(BMD, "default", body, opts()));
    expect(err.code).toBe(422);
    expect(err.message).toMatch(/^BeemeshDeployment\.beemesh\.io "web" is invalid: \[/);
    const fields = err.details?.causes?.map((c) => c.field);
    expect(fields).toEqual(
      expect.arrayContaining(["spec.replicas", "spec.template.spec.containers[0].image"]),
    );
    expect(await store.get(BMD, "default", "web")).toBeUndefined();
  });

  test("Warn drops unknown fields with a warning; Ignore drops them silently", async () => {
    const body = { ...deployment(), spec: { ...(deployment().spec as object), replica: 3 } };
    const warn = opts({ fieldValidation: "Warn" });
    const created = await svc.create(BMD, "default", body, warn);
    expect(warn.warnings).toEqual(['unknown field "spec.replica"']);
    expect(created.spec).not.toHaveProperty("replica");
    const ignore = opts({ fieldValidation: "Ignore" });
    await svc.create(BMD, "default", { ...body, metadata: { name: "quiet" } }, ignore);
    expect(ignore.warnings).toEqual([]);
  });
});

describe("update, patch and generation", () => {
  test("a spec change bumps the generation; a label change does not", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    const relabeled = await svc.patch(
      BMD,
      "default",
      "web",
      "merge",
      { metadata: { labels: { team: "a" } } },
      { ...opts(), force: false },
    );
    expect(relabeled.object.metadata.generation).toBe(1);
    const scaled = await svc.patch(
      BMD,
      "default",
      "web",
      "merge",
      { spec: { replicas: 5 } },
      { ...opts(), force: false },
    );
    expect(scaled.object.metadata.generation).toBe(2);
    expect(scaled.object.metadata.uid).toBe(created.metadata.uid);
    expect(commits.map((c) => c.type)).toEqual(["ADDED", "MODIFIED", "MODIFIED"]);
    expect(commits[2]!.previous?.metadata.generation).toBe(1);
  });

  test("PUT with a stale resourceVersion is a 409 Conflict; without one it applies", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    await svc.patch(BMD, "default", "web", "merge", { spec: { replicas: 3 } }, { ...opts(), force: false });
    const stale = { ...created, spec: { ...(created.spec as object), replicas: 9 } };
    const err = await refusal(svc.replace(BMD, "default", "web", stale, opts()));
    expect(err.toStatus()).toMatchObject({ code: 409, reason: "Conflict" });
    expect(err.message).toBe(
      'Operation cannot be fulfilled on beemeshdeployments.beemesh.io "web": the object has been modified; please apply your changes to the latest version and try again',
    );
    expect(((await store.get(BMD, "default", "web"))!.spec as { replicas: number }).replicas).toBe(3);
    const unconditional = { ...stale, metadata: { ...stale.metadata, resourceVersion: undefined } };
    const replaced = await svc.replace(BMD, "default", "web", unconditional, opts());
    expect(replaced.spec).toMatchObject({ replicas: 9 });
  });

  test("PUT keeps uid, creationTimestamp and status; refuses a mismatched name; 404 when missing", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    await svc.patch(
      BMD,
      "default",
      "web",
      "merge",
      { status: { readyReplicas: 2 } },
      { ...opts(), force: false },
      "status",
    );
    clock += 60_000;
    const body = {
      ...deployment(),
      metadata: { name: "web", uid: created.metadata.uid, creationTimestamp: "1999-01-01T00:00:00Z" },
      status: {},
    };
    const replaced = await svc.replace(BMD, "default", "web", body, opts());
    expect(replaced.metadata.creationTimestamp).toBe("2026-01-01T00:00:00Z");
    expect(replaced.status).toMatchObject({ readyReplicas: 2 });
    const wrong = await refusal(svc.replace(BMD, "default", "web", { ...deployment("other") }, opts()));
    expect(wrong.message).toBe("the name of the object (other) does not match the name on the URL (web)");
    const missing = await refusal(svc.replace(BMD, "default", "nope", deployment("nope"), opts()));
    expect(missing.toStatus()).toMatchObject({
      code: 404,
      reason: "NotFound",
      details: { name: "nope", kind: "beemeshdeployments" },
    });
  });

  test("JSON patch and strategic-merge (taken as merge) patch", async () => {
    await svc.create(BMD, "default", deployment(), opts());
    const jp = await svc.patch(
      BMD,
      "default",
      "web",
      "json",
      [
        { op: "test", path: "/spec/replicas", value: 2 },
        { op: "replace", path: "/spec/replicas", value: 4 },
        { op: "add", path: "/metadata/labels/tier", value: "front" },
      ],
      { ...opts(), force: false },
    );
    expect(jp.object.spec).toMatchObject({ replicas: 4 });
    expect(jp.object.metadata.labels).toEqual({ app: "web", tier: "front" });
    const smp = await svc.patch(
      BMD,
      "default",
      "web",
      "strategic",
      { metadata: { labels: { tier: null } } },
      { ...opts(), force: false },
    );
    expect(smp.object.metadata.labels).toEqual({ app: "web" });
    const failed = await refusal(
      svc.patch(BMD, "default", "web", "json", [{ op: "test", path: "/spec/replicas", value: 1 }], {
        ...opts(),
        force: false,
      }),
    );
    expect(failed.toStatus()).toMatchObject({ code: 400, reason: "BadRequest" });
  });

  test("a patch that breaks validation is refused and stores nothing", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    const err = await refusal(
      svc.patch(BMD, "default", "web", "merge", { spec: { replicas: -3 } }, { ...opts(), force: false }),
    );
    expect(err.code).toBe(422);
    expect(err.details?.causes?.[0]?.field).toBe("spec.replicas");
    expect((await store.get(BMD, "default", "web"))!.metadata.resourceVersion).toBe(
      created.metadata.resourceVersion,
    );
  });

  test("a patch naming a stale resourceVersion is a conflict", async () => {
    await svc.create(BMD, "default", deployment(), opts());
    await svc.patch(BMD, "default", "web", "merge", { spec: { replicas: 3 } }, { ...opts(), force: false });
    const err = await refusal(
      svc.patch(
        BMD,
        "default",
        "web",
        "merge",
        { metadata: { resourceVersion: "1" }, spec: { replicas: 7 } },
        { ...opts(), force: false },
      ),
    );
    expect(err.reason).toBe("Conflict");
  });

  test("an update that changes nothing writes nothing", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    const same = await svc.patch(
      BMD,
      "default",
      "web",
      "merge",
      { spec: { replicas: 2 } },
      { ...opts(), force: false },
    );
    expect(same.object.metadata.resourceVersion).toBe(created.metadata.resourceVersion);
    expect(commits).toHaveLength(1);
  });
});

describe("status and scale subresources", () => {
  test("PUT/PATCH status changes only status and never the generation", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    const body = {
      ...created,
      spec: { ...(created.spec as object), replicas: 9 },
      status: { replicas: 2, readyReplicas: 1 },
    };
    const updated = await svc.replace(BMD, "default", "web", body, opts(), "status");
    expect(updated.spec).toMatchObject({ replicas: 2 });
    expect(updated.status).toMatchObject({ replicas: 2, readyReplicas: 1 });
    expect(updated.metadata.generation).toBe(1);
    expect(updated.metadata.managedFields?.find((m) => m.subresource === "status")).toMatchObject({
      manager: "tester",
    });
  });

  test("scale reads spec.replicas, status.replicas and the selector; writing it bumps the generation", async () => {
    await svc.create(BMD, "default", deployment(), opts());
    await svc.patch(
      BMD,
      "default",
      "web",
      "merge",
      { status: { replicas: 2 } },
      { ...opts(), force: false },
      "status",
    );
    const scale = await svc.getScale(BMD, "default", "web");
    expect(scale).toMatchObject({
      kind: "Scale",
      apiVersion: "autoscaling/v1",
      spec: { replicas: 2 },
      status: { replicas: 2, selector: "app=web" },
    });
    const written = await svc.writeScale(
      BMD,
      "default",
      "web",
      (s) => ({ ...s, spec: { replicas: 5 } }),
      opts(),
    );
    expect(written.spec).toEqual({ replicas: 5 });
    const obj = (await store.get(BMD, "default", "web"))!;
    expect(obj.metadata.generation).toBe(2);
    const stale = await refusal(
      svc.writeScale(
        BMD,
        "default",
        "web",
        (s) => ({ ...s, metadata: { resourceVersion: "1" }, spec: { replicas: 1 } }),
        opts(),
      ),
    );
    expect(stale.reason).toBe("Conflict");
    const negative = await refusal(
      svc.writeScale(BMD, "default", "web", (s) => ({ ...s, spec: { replicas: -1 } }), opts()),
    );
    expect(negative.toStatus()).toMatchObject({
      code: 422,
      details: { causes: [{ field: "spec.replicas" }] },
    });
  });
});

describe("delete", () => {
  test("returns the last state; the name is free again; preconditions are checked", async () => {
    const created = await svc.create(BMD, "default", deployment(), opts());
    const wrongUid = await refusal(
      svc.delete(BMD, "default", "web", { dryRun: false, preconditions: { uid: "nope" } }),
    );
    expect(wrongUid.reason).toBe("Conflict");
    const dry = await svc.delete(BMD, "default", "web", { dryRun: true });
    expect(dry.metadata.name).toBe("web");
    expect(await store.get(BMD, "default", "web")).toBeDefined();
    const gone = await svc.delete(BMD, "default", "web", {
      dryRun: false,
      preconditions: { uid: created.metadata.uid! },
    });
    expect(gone.spec).toEqual(created.spec);
    expect(await store.get(BMD, "default", "web")).toBeUndefined();
    expect(commits.at(-1)).toMatchObject({ type: "DELETED", previous: { metadata: { name: "web" } } });
    expect((await refusal(svc.delete(BMD, "default", "web", { dryRun: false }))).reason).toBe("NotFound");
  });

  test("finalizers hold the object with a deletionTimestamp until the last one is removed", async () => {
    const body = deployment();
    (body.metadata as Record<string, unknown>).finalizers = ["beemesh.io/drain"];
    await svc.create(BMD, "default", body, opts());
    const marked = await svc.delete(BMD, "default", "web", { dryRun: false });
    expect(marked.metadata.deletionTimestamp).toBe("2026-01-01T00:00:00Z");
    expect(await store.get(BMD, "default", "web")).toBeDefined();
    await svc.patch(
      BMD,
      "default",
      "web",
      "merge",
      { metadata: { finalizers: null } },
      { ...opts(), force: false },
    );
    expect(await store.get(BMD, "default", "web")).toBeUndefined();
  });

  test("deleteCollection deletes what the selector matches", async () => {
    await svc.create(BMD, "a", deployment("one"), opts());
    const two = deployment("two");
    (two.metadata as { labels: Record<string, string> }).labels = { app: "other" };
    await svc.create(BMD, "a", two, opts());
    const { parseLabelSelector } = await import("../../controllers/dispatcher/store/index.js");
    const deleted = await svc.deleteCollection(
      BMD,
      { namespace: "a", labelSelector: parseLabelSelector("app=web") },
      { dryRun: false },
    );
    expect(deleted.map((o) => o.metadata.name)).toEqual(["one"]);
    expect((await store.list(BMD)).items.map((o) => o.metadata.name)).toEqual(["two"]);
  });
});

describe("list pages", () => {
  test("limit and continue walk the list in order at one resourceVersion", async () => {
    for (const n of ["c", "a", "b"]) await svc.create(BMD, "default", deployment(n), opts());
    const first = await svc.list(BMD, { limit: 2 });
    expect(first.items.map((o) => o.metadata.name)).toEqual(["a", "b"]);
    expect(first.remainingItemCount).toBe(1);
    await svc.create(BMD, "default", deployment("d"), opts());
    const second = await svc.list(BMD, { limit: 2, continueToken: first.continueToken! });
    expect(second.items.map((o) => o.metadata.name)).toEqual(["c", "d"]);
    expect(second.resourceVersion).toBe(first.resourceVersion);
    expect(second.continueToken).toBeUndefined();
    expect((await refusal(svc.list(BMD, { continueToken: "garbage" }))).reason).toBe("BadRequest");
  });
});

describe("server-side apply", () => {
  const apply = (body: unknown, manager: string, force = false) =>
    svc.patch(BMD, "default", "web", "apply", body, { ...opts({ fieldManager: manager }), force });

  test("creates, then conflicts with another manager's field unless forced", async () => {
    const made = await apply(deployment(), "alice");
    expect(made.created).toBe(true);
    expect(made.object.metadata.managedFields).toEqual([
      expect.objectContaining({ manager: "alice", operation: "Apply" }),
    ]);
    const err = await refusal(apply(deployment("web", 4), "bob"));
    expect(err.toStatus()).toMatchObject({
      code: 409,
      reason: "Conflict",
      message:
        'Apply failed with 1 conflict: conflict with "alice" using beemesh.io/v1alpha1: .spec.replicas',
      details: { causes: [{ reason: "FieldManagerConflict", field: ".spec.replicas" }] },
    });
    const forced = await apply(deployment("web", 4), "bob", true);
    expect(forced.object.spec).toMatchObject({ replicas: 4 });
    expect(forced.object.metadata.generation).toBe(2);
  });

  test("the same value is shared, not a conflict; a field a manager stops applying is removed", async () => {
    const withPriority = deployment();
    (withPriority.spec as Record<string, unknown>).priority = 5;
    await apply(withPriority, "alice");
    await apply(deployment(), "bob"); // same values as alice: shared ownership
    const dropped = await apply(deployment(), "alice"); // alice no longer applies priority
    expect(dropped.object.spec).not.toHaveProperty("priority");
    expect(dropped.object.spec).toMatchObject({ replicas: 2 });
  });

  test("a BeemeshStatefulSet applies through the same path", async () => {
    const ss = {
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshStatefulSet",
      metadata: { name: "db" },
      spec: {
        replicas: 3,
        serviceName: "db",
        selector: { matchLabels: { app: "db" } },
        template: {
          metadata: { labels: { app: "db" } },
          spec: { containers: [{ name: "db", image: "localhost/db:1" }] },
        },
      },
    };
    const r = await svc.patch(BMSS, "default", "db", "apply", ss, {
      ...opts({ fieldManager: "alice" }),
      force: false,
    });
    expect(r.created).toBe(true);
    expect((await store.get(BMSS, "default", "db"))?.spec).toMatchObject({ serviceName: "db", replicas: 3 });
  });
});

describe("watch", () => {
  test("an expired resourceVersion is 410 Expired", async () => {
    await svc.create(BMD, "default", deployment("a"), opts());
    await svc.create(BMD, "default", deployment("b"), opts());
    store.compact(2);
    const err = await refusal(svc.watch(BMD, { resourceVersion: "1" }));
    expect(err.toStatus()).toMatchObject({
      code: 410,
      reason: "Expired",
      message: "too old resource version: 1 (2)",
    });
    expect((await refusal(svc.watch(BMD, { resourceVersion: "x" }))).reason).toBe("BadRequest");
  });

  test("resourceVersion 0 starts with the current objects", async () => {
    const a: KubeObject = await svc.create(BMD, "default", deployment("a"), opts());
    const w = await svc.watch(BMD, { resourceVersion: "0" });
    const first = await w[Symbol.asyncIterator]().next();
    expect(first.value).toMatchObject({
      type: "ADDED",
      object: { metadata: { name: "a", uid: a.metadata.uid } },
    });
    w.stop();
  });
});
