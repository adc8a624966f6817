// The dispatcher API's HTTP surface on 127.0.0.1 (in-memory store, plain
// HTTP): discovery and OpenAPI as kubectl asks for them, output formats,
// watch streams, status codes and headers.
import { request, type IncomingHttpHeaders } from "node:http";
import { Registry } from "prom-client";
import { MemoryObjectStore } from "../../controllers/dispatcher/store/index.js";
import { startApiServer, type ApiServer } from "../../controllers/dispatcher/api/server.js";
import type { Committed } from "../../controllers/dispatcher/api/resource.js";
import { beemeshRegistry, objectMetaSchema } from "../../controllers/dispatcher/api/beemesh-kinds.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { withTimeout } from "../helpers/wait.js";

const BASE = "/apis/beemesh.io/v1alpha1";
const NS = `${BASE}/namespaces/default/beemeshdeployments`;
const TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
const AGGREGATED =
  "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

const FROZEN_NOW = new Date("2026-01-01T00:00:00Z");
let api: ApiServer;
let store: MemoryObjectStore;
let registry: Registry;
const commits: Committed[] = [];

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown>;
}

function call(
  method: string,
  path: string,
  opts: { body?: string | Buffer; type?: string; accept?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, api.url),
      {
        method,
        headers: {
          ...(opts.accept ? { accept: opts.accept } : {}),
          ...(opts.type ? { "content-type": opts.type } : {}),
          // Node sends a DELETE body without framing unless told its length.
          ...(opts.body !== undefined ? { "content-length": String(Buffer.byteLength(opts.body)) } : {}),
          "user-agent": "beemesh-test/1.0",
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: Record<string, unknown> = {};
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** A watch stream: events as they arrive, until closed. */
function openWatch(path: string, accept = "application/json") {
  const events: Record<string, unknown>[] = [];
  let ended = false;
  let buffer = "";
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  const req = request(new URL(path, api.url), { headers: { accept } }, (res) => {
    res.on("data", (d: Buffer) => {
      buffer += d.toString("utf8");
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        events.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
        buffer = buffer.slice(nl + 1);
      }
      wake();
    });
    res.on("end", () => {
      ended = true;
      wake();
    });
  });
  req.end();
  const until = async (pred: () => boolean, what: string) => {
    await withTimeout(
      (async () => {
        while (!pred()) await new Promise<void>((r) => waiters.push(r));
      })(),
      5000,
      what,
    );
  };
  return {
    events,
    ended: () => ended,
    next: (n: number) =>
      until(() => events.length >= n || ended, `${n} watch events`).then(() => events.slice(0, n)),
    closed: () => until(() => ended, "the end of the watch"),
    close: () => req.destroy(),
  };
}

function deployment(name: string, replicas = 2, labels: Record<string, string> = { app: "web" }): string {
  return JSON.stringify({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name, labels },
    spec: {
      replicas,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: { containers: [{ name: "main", image: "localhost/busybox:1" }] },
      },
    },
  });
}

const create = (name: string, replicas = 2, labels?: Record<string, string>) =>
  call("POST", NS, { body: deployment(name, replicas, labels), type: "application/json" });

beforeAll(async () => {
  store = new MemoryObjectStore();
  registry = new Registry();
  api = await startApiServer({
    store,
    kinds: beemeshRegistry(),
    objectMetaSchema: objectMetaSchema(),
    port: 0,
    devInsecure: true,
    logger: memoryLogger("api"),
    registry,
    bookmarkIntervalMs: 100,
    // Tables print ages; a frozen clock keeps "0s" from turning into "1s" on a slow machine.
    now: () => FROZEN_NOW,
    onCommit: (c) => commits.push(c),
  });
});
afterAll(async () => {
  await api?.close();
});

describe("discovery", () => {
  test("/apis and /api answer aggregated discovery with its content type when asked, else the plain lists", async () => {
    const agg = await call("GET", "/apis", { accept: AGGREGATED });
    expect(agg.headers["content-type"]).toBe(
      "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    );
    expect(agg.json).toMatchObject({
      kind: "APIGroupDiscoveryList",
      items: [{ metadata: { name: "beemesh.io" } }],
    });
    const beta = await call("GET", "/apis", {
      accept: "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
    });
    expect(beta.json.apiVersion).toBe("apidiscovery.k8s.io/v2beta1");
    const plain = await call("GET", "/apis");
    expect(plain.json).toMatchObject({
      kind: "APIGroupList",
      groups: [{ name: "beemesh.io", preferredVersion: { groupVersion: "beemesh.io/v1alpha1" } }],
    });
    expect((await call("GET", "/api")).json).toMatchObject({ kind: "APIVersions", versions: ["v1"] });
    expect((await call("GET", "/api", { accept: AGGREGATED })).json).toMatchObject({
      items: [{ metadata: { name: "" } }],
    });
    expect((await call("GET", "/apis/beemesh.io")).json).toMatchObject({
      kind: "APIGroup",
      name: "beemesh.io",
    });
    const resources = await call("GET", BASE);
    expect(resources.json).toMatchObject({ kind: "APIResourceList", groupVersion: "beemesh.io/v1alpha1" });
    const version = await call("GET", "/version");
    expect(version.json).toMatchObject({ major: "1", minor: "32" });
  });

  test("OpenAPI v3: the root lists group versions with hashes; the documents are immutable by hash", async () => {
    const root = await call("GET", "/openapi/v3");
    const paths = root.json.paths as Record<string, { serverRelativeURL: string }>;
    expect(Object.keys(paths).sort()).toEqual(["api/v1", "apis/beemesh.io/v1alpha1"]);
    const url = paths["apis/beemesh.io/v1alpha1"]!.serverRelativeURL;
    expect(url).toMatch(/^\/openapi\/v3\/apis\/beemesh\.io\/v1alpha1\?hash=[0-9A-F]{128}$/);
    const doc = await call("GET", url);
    expect(doc.status).toBe(200);
    expect(doc.headers["cache-control"]).toBe("public, immutable");
    expect(doc.json.openapi).toBe("3.0.0");
    expect(Object.keys((doc.json.components as { schemas: object }).schemas)).toEqual(
      expect.arrayContaining([
        "io.beemesh.v1alpha1.BeemeshDeployment",
        "io.beemesh.v1alpha1.BeemeshStatefulSet",
      ]),
    );
    expect((await call("GET", "/openapi/v3/apis/other/v1")).status).toBe(404);
  });

  test("OpenAPI v2 is an empty document (protobuf when asked), so kubectl falls back cleanly", async () => {
    const pb = await call("GET", "/openapi/v2", {
      accept: "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    });
    expect(pb.status).toBe(200);
    expect(pb.headers["content-type"]).not.toContain("@");
    expect(Buffer.from(pb.text)).toEqual(Buffer.from([0x0a, 0x03, 0x32, 0x2e, 0x30]));
    expect((await call("GET", "/openapi/v2")).json).toMatchObject({ swagger: "2.0", paths: {} });
  });

  test("any DNS-1123 label is a namespace; events are an empty list", async () => {
    expect((await call("GET", "/api/v1/namespaces/team-a")).json).toMatchObject({
      kind: "Namespace",
      metadata: { name: "team-a" },
      status: { phase: "Active" },
    });
    expect((await call("GET", "/api/v1/namespaces/Team_A")).status).toBe(404);
    expect(
      (await call("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb")).json,
    ).toMatchObject({
      kind: "EventList",
      items: [],
    });
  });
});

describe("objects over HTTP", () => {
  test("create answers 201; get as JSON, YAML, Table and partial metadata", async () => {
    const created = await create("web");
    expect(created.status).toBe(201);
    expect(commits.at(-1)).toMatchObject({ type: "ADDED", object: { metadata: { name: "web" } } });
    const json = await call("GET", `${NS}/web`);
    expect(json.json).toMatchObject({ kind: "BeemeshDeployment", metadata: { name: "web", generation: 1 } });
    const yaml = await call("GET", `${NS}/web`, { accept: "application/yaml" });
    expect(yaml.headers["content-type"]).toBe("application/yaml");
    expect(yaml.text).toContain("kind: BeemeshDeployment");
    const table = await call("GET", `${NS}/web`, { accept: TABLE });
    expect(table.json).toMatchObject({
      kind: "Table",
      apiVersion: "meta.k8s.io/v1",
      rows: [{ cells: ["web", 2, null, "0s", null, "localhost/busybox:1", "app=web"] }],
    });
    const withObject = await call("GET", `${NS}?includeObject=Object`, { accept: TABLE });
    expect(withObject.json).toMatchObject({
      rows: [{ object: { kind: "BeemeshDeployment", spec: { replicas: 2 } } }],
    });
    const partial = await call("GET", NS, {
      accept: "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    });
    expect(partial.json).toMatchObject({
      kind: "PartialObjectMetadataList",
      items: [{ metadata: { name: "web" } }],
    });
  });

  test("lists filter by selectors, across namespaces, and refuse bad selectors", async () => {
    await call("POST", `${BASE}/namespaces/other/beemeshdeployments`, {
      body: deployment("api", 1, { app: "api" }),
      type: "application/json",
    });
    const names = (r: Reply) =>
      (r.json.items as { metadata: { namespace: string; name: string } }[]).map(
        (o) => `${o.metadata.namespace}/${o.metadata.name}`,
      );
    expect(names(await call("GET", `${BASE}/beemeshdeployments`))).toEqual(["default/web", "other/api"]);
    expect(names(await call("GET", `${BASE}/beemeshdeployments?labelSelector=app%3Dapi`))).toEqual([
      "other/api",
    ]);
    expect(
      names(await call("GET", `${BASE}/beemeshdeployments?fieldSelector=metadata.namespace%3Ddefault`)),
    ).toEqual(["default/web"]);
    const bad = await call("GET", `${NS}?fieldSelector=spec.replicas%3D1`);
    expect(bad).toMatchObject({ status: 400, json: { reason: "BadRequest" } });
    expect(String(bad.json.message)).toContain("field label not supported: spec.replicas");
    expect((await call("GET", `${NS}?labelSelector=a%20in%20()`)).status).toBe(400);
  });

  test("unknown fields under Warn come back as a Warning header and are dropped", async () => {
    const body = JSON.parse(deployment("warned")) as { spec: Record<string, unknown> };
    body.spec.replica = 3;
    const r = await call("POST", `${NS}?fieldValidation=Warn`, {
      body: JSON.stringify(body),
      type: "application/json",
    });
    expect(r.status).toBe(201);
    expect(r.headers.warning).toBe('299 - "unknown field \\"spec.replica\\""');
    expect((r.json.spec as object) ?? {}).not.toHaveProperty("replica");
  });

  test("status codes: 404, 405, 409, 413, 415, 422 as metav1.Status", async () => {
    expect((await call("GET", "/nowhere")).json).toMatchObject({
      kind: "Status",
      code: 404,
      reason: "NotFound",
    });
    expect((await call("GET", `${NS}/missing`)).json).toMatchObject({
      code: 404,
      message: 'beemeshdeployments.beemesh.io "missing" not found',
      details: { name: "missing", group: "beemesh.io", kind: "beemeshdeployments" },
    });
    expect((await call("POST", "/version")).json).toMatchObject({ code: 405, reason: "MethodNotAllowed" });
    expect((await create("web")).json).toMatchObject({ code: 409, reason: "AlreadyExists" });
    const huge = Buffer.alloc(1024 * 1024 + 1, 0x20);
    expect((await call("POST", NS, { body: huge, type: "application/json" })).json).toMatchObject({
      code: 413,
      reason: "RequestEntityTooLarge",
    });
    expect(
      (await call("POST", NS, { body: "x", type: "application/vnd.kubernetes.protobuf" })).json,
    ).toMatchObject({
      code: 415,
      reason: "UnsupportedMediaType",
    });
    expect((await call("PATCH", `${NS}/web`, { body: "{}", type: "text/plain" })).status).toBe(415);
    const invalid = await create("bad", -1);
    expect(invalid.json).toMatchObject({
      code: 422,
      reason: "Invalid",
      details: { kind: "BeemeshDeployment", causes: [{ field: "spec.replicas" }] },
    });
    expect((await call("POST", NS, { body: "{nope", type: "application/json" })).json).toMatchObject({
      code: 400,
      reason: "BadRequest",
    });
  });

  test("server-side apply needs a field manager; it creates with 201 and answers conflicts with 409", async () => {
    const path = `${NS}/ssa`;
    const noManager = await call("PATCH", path, {
      body: deployment("ssa"),
      type: "application/apply-patch+yaml",
    });
    expect(noManager.json).toMatchObject({ code: 400, reason: "BadRequest" });
    const made = await call("PATCH", `${path}?fieldManager=alice`, {
      body: deployment("ssa"),
      type: "application/apply-patch+yaml",
    });
    expect(made.status).toBe(201);
    const clash = await call("PATCH", `${path}?fieldManager=bob`, {
      body: deployment("ssa", 5),
      type: "application/apply-patch+yaml",
    });
    expect(clash.json).toMatchObject({
      code: 409,
      reason: "Conflict",
      details: { causes: [{ reason: "FieldManagerConflict", field: ".spec.replicas" }] },
    });
    const forced = await call("PATCH", `${path}?fieldManager=bob&force=true`, {
      body: deployment("ssa", 5),
      type: "application/apply-patch+yaml",
    });
    expect(forced.status).toBe(200);
    expect(forced.json).toMatchObject({ spec: { replicas: 5 }, metadata: { generation: 2 } });
  });

  test("status, scale and delete subresources over HTTP", async () => {
    const status = await call("PATCH", `${NS}/web/status`, {
      body: '{"status":{"replicas":2,"readyReplicas":2}}',
      type: "application/merge-patch+json",
    });
    expect(status.json).toMatchObject({ status: { readyReplicas: 2 }, metadata: { generation: 1 } });
    const scale = await call("GET", `${NS}/web/scale`);
    expect(scale.json).toMatchObject({
      kind: "Scale",
      apiVersion: "autoscaling/v1",
      spec: { replicas: 2 },
      status: { replicas: 2, selector: "app=web" },
    });
    const scaled = await call("PATCH", `${NS}/web/scale`, {
      body: '{"spec":{"replicas":4}}',
      type: "application/merge-patch+json",
    });
    expect(scaled.json).toMatchObject({ spec: { replicas: 4 } });
    const put = await call("PUT", `${NS}/web/scale`, {
      body: JSON.stringify({ ...scale.json, spec: { replicas: 1 } }),
      type: "application/json",
    });
    expect(put.json).toMatchObject({ code: 409, reason: "Conflict" }); // its resourceVersion is old now
    const deleted = await call("DELETE", `${NS}/web`, {
      body: '{"propagationPolicy":"Background"}',
      type: "application/json",
    });
    expect(deleted.json).toMatchObject({
      kind: "BeemeshDeployment",
      metadata: { name: "web" },
      spec: { replicas: 4 },
    });
    expect((await call("GET", `${NS}/web`)).status).toBe(404);
  });

  test("the first prototype's POST /v1/statefulsets takes YAML and answers 202", async () => {
    const yaml = `metadata:\n  name: db\nspec:\n  serviceName: db\n  replicas: 3\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: "localhost/db:1"}]\n`;
    const r = await call("POST", "/v1/statefulsets", { body: yaml, type: "application/json" });
    expect(r.status).toBe(202);
    expect(r.json).toEqual({
      name: "db",
      namespace: "default",
      uid: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    const got = await call("GET", `${BASE}/namespaces/default/beemeshstatefulsets/db`);
    expect(got.json).toMatchObject({ kind: "BeemeshStatefulSet", spec: { replicas: 3 } });
    const broken = await call("POST", "/v1/deployments", { body: "metadata: [\n", type: "application/yaml" });
    expect(broken.json).toMatchObject({ code: 400, reason: "BadRequest" });
    const invalid = await call("POST", "/v1/deployments", {
      body: '{"metadata":{"name":"x"},"spec":{}}',
      type: "application/json",
    });
    expect(invalid.json).toMatchObject({ code: 422, reason: "Invalid" });
    expect(
      await store.get({ group: "beemesh.io", plural: "beemeshdeployments" }, "default", "x"),
    ).toBeUndefined();
  });

  test("requests are counted by verb, resource and code", async () => {
    const text = await registry.metrics();
    expect(text).toMatch(
      /beemesh_dispatcher_api_requests_total\{verb="create",resource="beemeshdeployments",code="201"\} \d+/,
    );
    expect(text).toMatch(
      /beemesh_dispatcher_api_requests_total\{verb="get",resource="beemeshdeployments",code="404"\} \d+/,
    );
  });
});

describe("watch streams", () => {
  test("from a list's resourceVersion: ADDED, MODIFIED and DELETED in order, with selectors", async () => {
    const list = await call("GET", NS);
    const rv = (list.json.metadata as { resourceVersion: string }).resourceVersion;
    const w = openWatch(`${NS}?watch=1&resourceVersion=${rv}`);
    const byName = openWatch(`${NS}?watch=true&resourceVersion=${rv}&fieldSelector=metadata.name%3Dw1`);
    await create("w1");
    await create("w2");
    await call("PATCH", `${NS}/w1`, {
      body: '{"spec":{"replicas":3}}',
      type: "application/merge-patch+json",
    });
    await call("DELETE", `${NS}/w1`);
    const events = await w.next(4);
    expect(
      events.map((e) => `${e.type} ${(e.object as { metadata: { name: string } }).metadata.name}`),
    ).toEqual(["ADDED w1", "ADDED w2", "MODIFIED w1", "DELETED w1"]);
    expect((await byName.next(3)).map((e) => e.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    w.close();
    byName.close();
  });

  test("as Table: one row per event, column definitions in the first event only", async () => {
    const w = openWatch(`${NS}?watch=1&resourceVersion=0`, TABLE);
    const [first] = await w.next(1);
    expect(first).toMatchObject({ type: "ADDED", object: { kind: "Table" } });
    expect((first!.object as { columnDefinitions: unknown[] }).columnDefinitions.length).toBeGreaterThan(0);
    await call("PATCH", `${NS}/w2`, {
      body: '{"spec":{"replicas":7}}',
      type: "application/merge-patch+json",
    });
    const events = await w.next(w.events.length + 1);
    const last = events.at(-1)!.object as { columnDefinitions: unknown[]; rows: { cells: unknown[] }[] };
    expect(last.columnDefinitions).toEqual([]);
    expect(last.rows[0]!.cells.slice(0, 2)).toEqual(["w2", 7]);
    w.close();
  });

  test("a resourceVersion that is not a number is a plain 400", async () => {
    expect((await call("GET", `${NS}?watch=1&resourceVersion=abc`)).json).toMatchObject({
      code: 400,
      reason: "BadRequest",
    });
  });

  test("a resourceVersion older than the history is one ERROR event with 410 Expired", async () => {
    store.compact(3);
    const w = openWatch(`${NS}?watch=1&resourceVersion=1`);
    await w.closed();
    expect(w.events).toEqual([
      {
        type: "ERROR",
        object: expect.objectContaining({
          kind: "Status",
          code: 410,
          reason: "Expired",
          message: expect.stringContaining("too old resource version: 1"),
        }),
      },
    ]);
  });

  test("bookmarks when allowed, and timeoutSeconds ends the stream", async () => {
    const rv = String(await store.currentRevision());
    const w = openWatch(`${NS}?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true&timeoutSeconds=1`);
    await w.closed();
    const bookmark = w.events.find((e) => e.type === "BOOKMARK");
    expect(bookmark).toMatchObject({
      object: { kind: "BeemeshDeployment", metadata: { resourceVersion: rv } },
    });
  });
});
