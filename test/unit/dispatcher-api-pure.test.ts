// The pure pieces of the dispatcher's API: selectors, patches, printer
// columns, unknown-field pruning, media type negotiation and the discovery
// and OpenAPI documents kubectl reads.
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  SelectorError,
} from "../../controllers/dispatcher/store/index.js";
import { jsonPatch, mergePatch, PatchError } from "../../controllers/dispatcher/api/patch.js";
import { evalJsonPath, humanDuration, toTable } from "../../controllers/dispatcher/api/table.js";
import { pruneUnknown, unknownFields } from "../../controllers/dispatcher/api/structural.js";
import {
  negotiateDiscovery,
  negotiateObject,
  managerFromUserAgent,
} from "../../controllers/dispatcher/api/http-util.js";
import { aggregatedApis, apiResourceList } from "../../controllers/dispatcher/api/discovery.js";
import { groupVersionDocument, schemaName } from "../../controllers/dispatcher/api/openapi.js";
import { beemeshRegistry, objectMetaSchema } from "../../controllers/dispatcher/api/beemesh-kinds.js";
import { ApiError } from "../../controllers/dispatcher/api/status.js";
import type { KubeObject } from "../../controllers/dispatcher/store/index.js";

describe("label selectors", () => {
  const labels = { app: "web", tier: "front", rank: "3" };
  test.each([
    ["", true],
    ["app=web", true],
    ["app==web", true],
    ["app!=web", false],
    ["app=web,tier=back", false],
    ["tier in (front, back)", true],
    ["tier notin (front)", false],
    ["app", true],
    ["!app", false],
    ["!missing", true],
    ["missing!=x", true],
    ["rank>2", true],
    ["rank<3", false],
    ["beemesh.io/role=x", false],
  ])("%j matches: %s", (text, expected) => {
    expect(matchesLabels(parseLabelSelector(text), labels)).toBe(expected);
  });

  test("an empty value is allowed: it matches a label set to the empty string", () => {
    expect(matchesLabels(parseLabelSelector("app="), labels)).toBe(false);
    expect(matchesLabels(parseLabelSelector("app="), { app: "" })).toBe(true);
  });

  test.each(["tier in ()", "Bad Key=x", "a=b c", "-x=y", "rank>two"])("%j is refused", (text) => {
    expect(() => parseLabelSelector(text)).toThrow(SelectorError);
  });
});

describe("field selectors", () => {
  const fields = { "metadata.name": "web", "metadata.namespace": "prod" };
  test("metadata.name and metadata.namespace, with = == !=", () => {
    expect(matchesFields(parseFieldSelector("metadata.name=web"), fields)).toBe(true);
    expect(matchesFields(parseFieldSelector("metadata.name==web,metadata.namespace!=prod"), fields)).toBe(
      false,
    );
    expect(matchesFields(parseFieldSelector("metadata.namespace=prod"), fields)).toBe(true);
  });
  test("other fields and nonsense are refused", () => {
    expect(() => parseFieldSelector("spec.replicas=3")).toThrow(/field label not supported: spec.replicas/);
    expect(() => parseFieldSelector("metadata.name")).toThrow(SelectorError);
  });
});

describe("merge patch (RFC 7386 appendix A)", () => {
  test.each([
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [
      ["a", "b"],
      ["c", "d"],
      ["c", "d"],
    ],
    [{ a: "b" }, ["c"], ["c"]],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
  ])("%j + %j = %j", (target, patch, result) => {
    expect(mergePatch(target, patch)).toEqual(result);
  });
});

describe("JSON patch (RFC 6902)", () => {
  const doc = { foo: ["bar", "baz"], obj: { k: 1 } };
  test("add, remove, replace, move, copy, test", () => {
    expect(jsonPatch(doc, [{ op: "add", path: "/foo/1", value: "qux" }])).toEqual({
      foo: ["bar", "qux", "baz"],
      obj: { k: 1 },
    });
    expect(jsonPatch(doc, [{ op: "add", path: "/foo/-", value: "end" }])).toMatchObject({
      foo: ["bar", "baz", "end"],
    });
    expect(jsonPatch(doc, [{ op: "remove", path: "/obj/k" }])).toEqual({ foo: ["bar", "baz"], obj: {} });
    expect(jsonPatch(doc, [{ op: "replace", path: "/foo/0", value: "x" }])).toMatchObject({
      foo: ["x", "baz"],
    });
    expect(jsonPatch(doc, [{ op: "move", from: "/obj/k", path: "/k" }])).toEqual({
      foo: ["bar", "baz"],
      obj: {},
      k: 1,
    });
    expect(jsonPatch(doc, [{ op: "copy", from: "/foo/0", path: "/first" }])).toMatchObject({ first: "bar" });
    expect(jsonPatch(doc, [{ op: "test", path: "/obj", value: { k: 1 } }])).toEqual(doc);
    expect(jsonPatch({ "a/b": { "m~n": 1 } }, [{ op: "replace", path: "/a~1b/m~0n", value: 2 }])).toEqual({
      "a/b": { "m~n": 2 },
    });
    expect(doc).toEqual({ foo: ["bar", "baz"], obj: { k: 1 } }); // the input is not touched
  });
  test.each([
    [[{ op: "test", path: "/foo/0", value: "nope" }], /testing value \/foo\/0 failed/],
    [[{ op: "remove", path: "/missing" }], /nonexistent/],
    [[{ op: "replace", path: "/missing", value: 1 }], /does not exist/],
    [[{ op: "add", path: "/foo/9", value: 1 }], /out of bounds/],
    [[{ op: "frobnicate", path: "/foo" }], /unexpected kind/],
    [{ op: "add" }, /must be an array/],
  ])("%j fails: %s", (ops, message) => {
    expect(() => jsonPatch(doc, ops)).toThrow(PatchError);
    expect(() => jsonPatch(doc, ops)).toThrow(message);
  });
});

describe("printer columns", () => {
  test.each([
    [0, "0s"],
    [45_000, "45s"],
    [119_000, "119s"],
    [125_000, "2m5s"],
    [600_000, "10m"],
    [3 * 3_600_000 + 5 * 60_000, "3h5m"],
    [9 * 3_600_000, "9h"],
    [50 * 3_600_000, "2d2h"],
    [30 * 86_400_000, "30d"],
    [800 * 86_400_000, "2y70d"],
  ])("HumanDuration(%d ms) = %s", (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });

  test("JSONPath subset", () => {
    const obj = {
      spec: { containers: [{ image: "a" }, { image: "b" }] },
      metadata: { labels: { "x.io/y": "z" } },
    };
    expect(evalJsonPath(obj, ".spec.containers[*].image")).toEqual(["a", "b"]);
    expect(evalJsonPath(obj, ".spec.containers[1].image")).toEqual(["b"]);
    expect(evalJsonPath(obj, ".metadata.labels['x.io/y']")).toEqual(["z"]);
    expect(evalJsonPath(obj, ".status.replicas")).toEqual([]);
    expect(evalJsonPath(obj, "not a path")).toEqual([]);
  });

  test("a Table row per object, ages from creationTimestamp, metadata as PartialObjectMetadata", () => {
    const kind = beemeshRegistry().byResource("beemesh.io", "v1alpha1", "beemeshdeployments")!;
    const obj = {
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name: "web", namespace: "default", creationTimestamp: "2026-01-01T00:00:00Z" },
      spec: { replicas: 3, template: { spec: { containers: [{ image: "img:1" }] } } },
      status: { readyReplicas: 2, selector: "app=web" },
    } as KubeObject;
    const table = toTable([obj], kind.printerColumns, {
      now: new Date("2026-01-01T00:05:00Z"),
      include: "Metadata",
    });
    expect(table.columnDefinitions.map((c) => `${c.name}:${c.priority}`)).toEqual([
      "Name:0",
      "Desired:0",
      "Ready:0",
      "Age:0",
      "Up-to-date:1",
      "Images:1",
      "Selector:1",
    ]);
    expect(table.rows[0]!.cells).toEqual(["web", 3, 2, "5m", null, "img:1", "app=web"]);
    expect(table.rows[0]!.object).toEqual({
      kind: "PartialObjectMetadata",
      apiVersion: "meta.k8s.io/v1",
      metadata: obj.metadata,
    });
  });
});

describe("unknown fields against the structural schema", () => {
  const kind = beemeshRegistry().byResource("beemesh.io", "v1alpha1", "beemeshdeployments")!;
  const obj = {
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: "x", labels: { any: "label" }, bogus: 1 },
    spec: { replicas: 1, replica: 2, template: { spec: { containers: [{ name: "c", imag: "typo" }] } } },
    extra: true,
  };
  test("are found with their paths, map keys and list items included", () => {
    expect(unknownFields(kind.schema, obj).sort()).toEqual(
      ["extra", "metadata.bogus", "spec.replica", "spec.template.spec.containers[0].imag"].sort(),
    );
  });
  test("are pruned, leaving everything declared", () => {
    const pruned = pruneUnknown(kind.schema, obj);
    expect(pruned).toEqual({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name: "x", labels: { any: "label" } },
      spec: { replicas: 1, template: { spec: { containers: [{ name: "c" }] } } },
    });
    expect(unknownFields(kind.schema, pruned)).toEqual([]);
  });
});

describe("media types", () => {
  const KUBECTL_GET =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
  const KUBECTL_DISCOVERY =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
  test("objects: Table, partial metadata, JSON, YAML; protobuf alone is not acceptable", () => {
    expect(negotiateObject(KUBECTL_GET)).toEqual({ kind: "table" });
    expect(negotiateObject("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")).toEqual({
      kind: "partial",
    });
    expect(negotiateObject("application/vnd.kubernetes.protobuf, application/json")).toEqual({
      kind: "json",
    });
    expect(negotiateObject(undefined)).toEqual({ kind: "json" });
    expect(negotiateObject("application/yaml")).toEqual({ kind: "yaml" });
    expect(() => negotiateObject("application/vnd.kubernetes.protobuf")).toThrow(ApiError);
  });
  test("discovery: aggregated v2, then v2beta1, else the plain lists", () => {
    expect(negotiateDiscovery(KUBECTL_DISCOVERY)).toBe("v2");
    expect(
      negotiateDiscovery(
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
      ),
    ).toBe("v2beta1");
    expect(negotiateDiscovery("application/json")).toBeUndefined();
    expect(negotiateDiscovery(undefined)).toBeUndefined();
  });
  test("the default field manager is the user agent's program name", () => {
    expect(managerFromUserAgent("kubectl/v1.32.3 (linux/amd64) kubernetes/32cc146")).toBe("kubectl");
    expect(managerFromUserAgent(undefined)).toBe("unknown");
  });
});

describe("discovery and OpenAPI documents", () => {
  const registry = beemeshRegistry();
  test("aggregated discovery names both kinds with short names, categories and subresources", () => {
    const doc = aggregatedApis(registry, "v2") as {
      apiVersion: string;
      items: { metadata: { name: string }; versions: { resources: Record<string, unknown>[] }[] }[];
    };
    expect(doc.apiVersion).toBe("apidiscovery.k8s.io/v2");
    const [group] = doc.items;
    expect(group!.metadata.name).toBe("beemesh.io");
    const resources = group!.versions[0]!.resources;
    expect(resources.map((r) => [r.resource, r.shortNames])).toEqual([
      ["beemeshdeployments", ["bmd"]],
      ["beemeshstatefulsets", ["bmss"]],
    ]);
    expect(resources[0]).toMatchObject({
      scope: "Namespaced",
      categories: ["beemesh"],
      subresources: [
        { subresource: "status", responseKind: { kind: "BeemeshDeployment" } },
        { subresource: "scale", responseKind: { group: "autoscaling", version: "v1", kind: "Scale" } },
      ],
    });
  });

  test("the legacy resource list names the scale subresource's group and kind", () => {
    const list = apiResourceList(registry, "beemesh.io", "v1alpha1") as {
      resources: Record<string, unknown>[];
    };
    expect(list.resources.map((r) => r.name)).toEqual([
      "beemeshdeployments",
      "beemeshdeployments/status",
      "beemeshdeployments/scale",
      "beemeshstatefulsets",
      "beemeshstatefulsets/status",
      "beemeshstatefulsets/scale",
    ]);
    expect(list.resources[2]).toMatchObject({ group: "autoscaling", version: "v1", kind: "Scale" });
  });

  test("OpenAPI v3: kinds carry their GVK, PATCH takes fieldValidation, metadata resolves to ObjectMeta", () => {
    const doc = groupVersionDocument(registry, "beemesh.io", "v1alpha1", objectMetaSchema()) as {
      paths: Record<
        string,
        Record<string, { parameters?: { name: string }[]; "x-kubernetes-group-version-kind"?: unknown }>
      >;
      components: { schemas: Record<string, Record<string, unknown>> };
    };
    const kind = registry.kinds[0]!;
    const schema = doc.components.schemas[schemaName(kind)]!;
    expect(schema["x-kubernetes-group-version-kind"]).toEqual([
      { group: "beemesh.io", version: "v1alpha1", kind: "BeemeshDeployment" },
    ]);
    const patch =
      doc.paths["/apis/beemesh.io/v1alpha1/namespaces/{namespace}/beemeshdeployments/{name}"]!.patch!;
    expect(patch["x-kubernetes-group-version-kind"]).toEqual({
      group: "beemesh.io",
      version: "v1alpha1",
      kind: "BeemeshDeployment",
    });
    expect(patch.parameters!.map((p) => p.name)).toEqual(
      expect.arrayContaining(["fieldValidation", "fieldManager", "dryRun", "force"]),
    );
    const metaRef = (schema.properties as Record<string, { allOf: { $ref: string }[] }>)
      .metadata!.allOf[0]!.$ref.split("/")
      .pop()!;
    expect(doc.components.schemas[metaRef]).toMatchObject({
      properties: { name: expect.any(Object), labels: expect.any(Object) },
    });
    expect(JSON.stringify(doc)).not.toContain("errorMessage");
  });
});
