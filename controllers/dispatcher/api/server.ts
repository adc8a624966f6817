// The dispatcher's Kubernetes-compatible API server (DESIGN §6): discovery,
// OpenAPI v3, CRUD, list, watch, patch, server-side apply, status and scale
// for the registered kinds, and the first prototype's POST /v1/... endpoints.
// HTTPS with SVID client certificates; --dev-insecure serves plain HTTP on
// 127.0.0.1 only.
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
  type Server,
} from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { dump as dumpYaml } from "js-yaml";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Logger } from "../../common/log.js";
import {
  parseFieldSelector,
  parseLabelSelector,
  SelectorError,
  type FieldSelector,
  type KubeObject,
  type LabelSelector,
  type ObjectStore,
} from "../store/index.js";
import { apiVersionOf, type JsonSchema, type KindRegistry, type ResourceKind } from "./kinds.js";
import {
  ApiError,
  badRequest,
  internalError,
  methodNotAllowed,
  pathNotFound,
  notFound,
  type Status,
} from "./status.js";
import {
  ResourceService,
  isValidNamespace,
  parsePatchType,
  type Committed,
  type FieldValidation,
  type PatchType,
  type WriteOptions,
} from "./resource.js";
import {
  decodeJson,
  decodeLenient,
  decodeObjectBody,
  decodeYaml,
  flag,
  intParam,
  managerFromUserAgent,
  mediaType,
  negotiateDiscovery,
  negotiateObject,
  readBody,
  type ObjectFormat,
} from "./http-util.js";
import {
  aggregatedApis,
  aggregatedCore,
  apiGroupDoc,
  apiGroupList,
  apiResourceList,
  apiVersions,
  coreResourceList,
  versionInfo,
} from "./discovery.js";
import { coreDocument, documentHash, groupVersionDocument } from "./openapi.js";
import { toTable, type IncludeObject } from "./table.js";
import { certAuthenticator, devAuthenticator, type Authenticator, type Caller } from "./auth.js";
import { beemeshRegistry, objectMetaSchema } from "./beemesh-kinds.js";
import { mergePatch, jsonPatch, isPlainObject, PatchError } from "./patch.js";

export class ApiServerConfigError extends Error {
  override name = "ApiServerConfigError";
  constructor(message: string) {
    super(`dispatcher-api: ${message}`);
  }
}

export interface ApiTlsOptions {
  /** Server certificate chain (leaf first) and key, PEM. */
  certPem: string;
  keyPem: string;
  /** CAs that client certificates must chain to. */
  bundlePem: string;
  trustDomain: string;
}

export interface StartApiServerOptions {
  store: ObjectStore;
  /** The kinds served; BeemeshDeployment and BeemeshStatefulSet from the protocol by default. */
  kinds?: KindRegistry;
  port: number;
  host?: string;
  tls?: ApiTlsOptions;
  /** Plain HTTP without client certificates; refused unless host is 127.0.0.1. */
  devInsecure?: boolean;
  logger: Logger;
  /** prom-client registry for the API's metrics. */
  registry?: Registry;
  /** ObjectMeta schema published in OpenAPI (the CRDs leave metadata open); the protocol's by default. */
  objectMetaSchema?: JsonSchema;
  /** Every write committed through this server (the dispatcher's fan-out hooks in here). */
  onCommit?: (change: Committed) => void;
  now?: () => Date;
  /** Watches end after this long (clients re-watch from their last resourceVersion). */
  maxWatchSeconds?: number;
  /** Interval of BOOKMARK events for watches that allow them. */
  bookmarkIntervalMs?: number;
}

export interface ApiServer {
  readonly port: number;
  readonly url: string;
  readonly service: ResourceService;
  /** Replaces the server certificate and the client trust bundle (rotation). */
  updateTls(tls: ApiTlsOptions): void;
  close(): Promise<void>;
}

interface Metrics {
  requests: Counter<"verb" | "resource" | "code">;
  duration: Histogram<"verb">;
  watches: Gauge<string>;
}

function makeMetrics(registry: Registry | undefined): Metrics | undefined {
  if (!registry) return undefined;
  return {
    requests: new Counter({
      name: "beemesh_dispatcher_api_requests_total",
      help: "API requests by verb, resource and HTTP code",
      labelNames: ["verb", "resource", "code"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: "beemesh_dispatcher_api_request_duration_seconds",
      help: "API request latency (watches excluded)",
      labelNames: ["verb"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    watches: new Gauge({
      name: "beemesh_dispatcher_api_watches",
      help: "Open watch streams",
      registers: [registry],
    }),
  };
}

const JSON_CT = "application/json";
// The Accept value has an "@", which Go's mime parser refuses in a Content-Type; Kubernetes answers with ".v1.0".
const OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/** gnostic openapi_v2.Document{swagger: "2.0"}: field 1, wire type 2, length 3. */
const EMPTY_OPENAPI_V2_PB = Buffer.from([0x0a, 0x03, 0x32, 0x2e, 0x30]);

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  caller: Caller;
  verb: string;
  resource: string;
  warnings: string[];
}

function send(
  ctx: Ctx,
  code: number,
  body: unknown,
  format: ObjectFormat = { kind: "json" },
  contentType?: string,
): void {
  const { res } = ctx;
  if (res.headersSent) return;
  for (const w of ctx.warnings) res.appendHeader("Warning", `299 - ${JSON.stringify(w)}`);
  const text = format.kind === "yaml" ? dumpYaml(body) : JSON.stringify(body);
  res.writeHead(code, {
    "content-type": contentType ?? (format.kind === "yaml" ? "application/yaml" : JSON_CT),
    "cache-control": "no-cache, private",
  });
  res.end(text);
}

function sendStatus(ctx: Ctx, status: Status): void {
  send(ctx, status.code, status);
}

export async function startApiServer(opts: StartApiServerOptions): Promise<ApiServer> {
  const host = opts.host ?? "127.0.0.1";
  if (opts.devInsecure) {
    if (host !== "127.0.0.1") {
      throw new ApiServerConfigError(`--dev-insecure serves plain HTTP on 127.0.0.1 only, not on ${host}`);
    }
  } else if (!opts.tls) {
    throw new ApiServerConfigError(
      "TLS (server certificate, key and client trust bundle) is required outside --dev-insecure",
    );
  }
  const now = opts.now ?? (() => new Date());
  const log = opts.logger;
  const metrics = makeMetrics(opts.registry);
  const kinds = opts.kinds ?? beemeshRegistry();
  const objectMeta = opts.objectMetaSchema ?? (opts.kinds ? undefined : objectMetaSchema());
  const service = new ResourceService({
    store: opts.store,
    now,
    ...(opts.onCommit ? { onCommit: opts.onCommit } : {}),
  });
  const insecure = opts.devInsecure === true;
  const auth: Authenticator & { setBundle?: (b: string) => void } = insecure
    ? devAuthenticator
    : certAuthenticator({ bundle: opts.tls!.bundlePem, trustDomain: opts.tls!.trustDomain });
  const maxWatchMs = (opts.maxWatchSeconds ?? 1800) * 1000;
  const bookmarkMs = opts.bookmarkIntervalMs ?? 60_000;
  const openWatches = new Set<() => void>();
  const startedAt = now();

  // OpenAPI documents never change while the server runs: build and hash them once.
  const gvDocs = new Map<string, { doc: Record<string, unknown>; hash: string }>();
  for (const g of kinds.groups()) {
    for (const v of g.versions) {
      const doc = groupVersionDocument(kinds, g.group, v, objectMeta);
      if (doc) gvDocs.set(`apis/${g.group}/${v}`, { doc, hash: documentHash(doc) });
    }
  }
  const core = coreDocument(objectMeta);
  gvDocs.set("api/v1", { doc: core, hash: documentHash(core) });

  let address = "";

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    const url = new URL(req.url ?? "/", "http://localhost");
    const ctx: Ctx = {
      req,
      res,
      url,
      caller: { id: "", principal: { kind: "anonymous-dev" }, user: "" },
      verb: (req.method ?? "GET").toLowerCase(),
      resource: "",
      warnings: [],
    };
    let streaming = false;
    try {
      const path = url.pathname.replace(/\/+$/, "") || "/";
      if (path === "/healthz" || path === "/readyz" || path === "/livez") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("ok");
        return;
      }
      ctx.caller = await auth.authenticate(req);
      streaming = await route(ctx, path);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
      } else {
        const status = toStatus(err);
        if (status.code >= 500)
          log.error("request failed", { method: req.method, path: url.pathname, error: err as Error });
        if (status.code === 413 && !req.complete) res.setHeader("connection", "close");
        sendStatus(ctx, status);
      }
    } finally {
      if (!streaming) {
        metrics?.requests.inc({ verb: ctx.verb, resource: ctx.resource, code: String(res.statusCode) });
        metrics?.duration.observe({ verb: ctx.verb }, (performance.now() - started) / 1000);
        const fields = {
          method: req.method,
          path: url.pathname,
          code: res.statusCode,
          user: ctx.caller.user,
          ms: Math.round(performance.now() - started),
        };
        // Writes are few and worth an audit line; reads are many.
        if (req.method === "GET" || req.method === "HEAD") log.debug("request", fields);
        else log.info("request", fields);
      }
    }
  };

  /** Returns true when the response is a stream that finishes on its own. */
  const route = async (ctx: Ctx, path: string): Promise<boolean> => {
    const seg = path.split("/").filter(Boolean).map(decodeURIComponent);
    const method = ctx.req.method ?? "GET";
    const getOnly = () => {
      if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(method, path);
    };
    switch (seg[0]) {
      case "version":
        getOnly();
        send(ctx, 200, versionInfo(startedAt));
        return false;
      case "api":
        return routeCore(ctx, seg.slice(1), getOnly);
      case "apis":
        return routeApis(ctx, seg.slice(1), method, path, getOnly);
      case "openapi":
        getOnly();
        routeOpenApi(ctx, seg.slice(1), path);
        return false;
      case "v1":
        if (seg.length === 2 && (seg[1] === "deployments" || seg[1] === "statefulsets")) {
          if (method !== "POST") throw methodNotAllowed(method, path);
          await prototypeCreate(ctx, seg[1] === "deployments" ? "BeemeshDeployment" : "BeemeshStatefulSet");
          return false;
        }
        throw pathNotFound(path);
      default:
        throw pathNotFound(path);
    }
  };

  const routeCore = async (ctx: Ctx, seg: string[], getOnly: () => void): Promise<boolean> => {
    getOnly();
    if (seg.length === 0) {
      const v = negotiateDiscovery(ctx.req.headers.accept);
      if (v) {
        send(
          ctx,
          200,
          aggregatedCore(v),
          undefined,
          `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`,
        );
      } else send(ctx, 200, apiVersions(address));
      return false;
    }
    if (seg[0] !== "v1") throw pathNotFound(ctx.url.pathname);
    const [, r1, r2, r3, r4] = seg;
    if (seg.length === 1) return (void send(ctx, 200, coreResourceList()), false);
    ctx.resource = r1 === "namespaces" && r3 ? (r3 ?? "") : (r1 ?? "");
    if (r1 === "namespaces" && seg.length === 2) {
      const namespaces = await knownNamespaces();
      send(ctx, 200, {
        kind: "NamespaceList",
        apiVersion: "v1",
        metadata: {},
        items: namespaces.map(namespaceObject),
      });
      return false;
    }
    if (r1 === "namespaces" && r2 && seg.length === 3) {
      if (!isValidNamespace(r2)) throw notFound({ group: "", plural: "namespaces", name: r2 });
      send(ctx, 200, namespaceObject(r2));
      return false;
    }
    if (
      (r1 === "events" && seg.length === 2) ||
      (r1 === "namespaces" && r3 === "events" && seg.length === 4 && !r4)
    ) {
      // Beemesh keeps its events in the SCHEDULER_EVENTS stream, not as core/v1 Events.
      send(ctx, 200, { kind: "EventList", apiVersion: "v1", metadata: { resourceVersion: "0" }, items: [] });
      return false;
    }
    throw pathNotFound(ctx.url.pathname);
  };

  const knownNamespaces = async (): Promise<string[]> => {
    const set = new Set<string>(["default"]);
    for (const k of kinds.kinds)
      for (const o of (await opts.store.list(k)).items) set.add(o.metadata.namespace);
    return [...set].sort();
  };

  const namespaceObject = (name: string) => ({
    kind: "Namespace",
    apiVersion: "v1",
    metadata: { name, creationTimestamp: rfc3339(startedAt) },
    spec: { finalizers: [] },
    status: { phase: "Active" },
  });

  const routeApis = async (
    ctx: Ctx,
    seg: string[],
    method: string,
    path: string,
    getOnly: () => void,
  ): Promise<boolean> => {
    if (seg.length === 0) {
      getOnly();
      const v = negotiateDiscovery(ctx.req.headers.accept);
      if (v) {
        send(
          ctx,
          200,
          aggregatedApis(kinds, v),
          undefined,
          `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`,
        );
      } else send(ctx, 200, apiGroupList(kinds));
      return false;
    }
    const [group, version, third] = seg as [string, string | undefined, string | undefined];
    if (seg.length === 1) {
      getOnly();
      const doc = apiGroupDoc(kinds, group);
      if (!doc) throw pathNotFound(path);
      send(ctx, 200, doc);
      return false;
    }
    if (seg.length === 2) {
      getOnly();
      if (kinds.inGroupVersion(group, version!).length === 0) throw pathNotFound(path);
      send(ctx, 200, apiResourceList(kinds, group, version!));
      return false;
    }
    if (seg.length === 3) {
      // All namespaces: list and watch only.
      const kind = kinds.byResource(group, version!, third!);
      if (!kind) throw pathNotFound(path);
      ctx.resource = kind.plural;
      if (method !== "GET") throw methodNotAllowed(method, path);
      return listOrWatch(ctx, kind, undefined);
    }
    if (third !== "namespaces" || seg.length < 5 || seg.length > 7) throw pathNotFound(path);
    const [, , , namespace, plural, name, sub] = seg as string[];
    const kind = kinds.byResource(group, version!, plural!);
    if (!kind) throw pathNotFound(path);
    ctx.resource = sub ? `${kind.plural}/${sub}` : kind.plural;
    if (!isValidNamespace(namespace!)) {
      throw badRequest(`namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
    }
    if (name === undefined) return collection(ctx, kind, namespace!, method, path);
    if (sub === undefined) return item(ctx, kind, namespace!, name, method, path);
    if (sub === "status" && kind.hasStatus) return item(ctx, kind, namespace!, name, method, path, "status");
    if (sub === "scale" && kind.scale) return scaleSub(ctx, kind, namespace!, name, method, path);
    throw pathNotFound(path);
  };

  const routeOpenApi = (ctx: Ctx, seg: string[], path: string): void => {
    if (seg[0] === "v3" && seg.length === 1) {
      const paths: Record<string, unknown> = {};
      for (const [key, { hash }] of gvDocs)
        paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${hash}` };
      send(ctx, 200, { paths });
      return;
    }
    if (seg[0] === "v3") {
      const entry = gvDocs.get(seg.slice(1).join("/"));
      if (!entry) throw pathNotFound(path);
      const immutable = ctx.url.searchParams.get("hash") === entry.hash;
      ctx.res.setHeader("etag", `"${entry.hash}"`);
      if (immutable) ctx.res.setHeader("cache-control", "public, immutable");
      ctx.res.writeHead(200, { "content-type": JSON_CT });
      ctx.res.end(JSON.stringify(entry.doc));
      return;
    }
    if (seg[0] === "v2" && seg.length === 1) {
      // Schemas are published in v3 only. kubectl still fetches v2 (as protobuf) when a kind
      // is unknown; an empty document lets it skip client-side validation and report the
      // unknown kind instead of "failed to download openapi".
      const accept = ctx.req.headers.accept ?? "";
      if (accept.includes("protobuf")) {
        ctx.res.writeHead(200, { "content-type": OPENAPI_V2_PROTOBUF });
        ctx.res.end(EMPTY_OPENAPI_V2_PB);
      } else
        send(ctx, 200, {
          swagger: "2.0",
          info: { title: "Beemesh", version: "v1alpha1" },
          paths: {},
          definitions: {},
        });
      return;
    }
    throw pathNotFound(path);
  };

  // ------------------------------------------------------------- verbs ---

  const writeOptions = (ctx: Ctx): WriteOptions => {
    const q = ctx.url.searchParams;
    const dryRun = q.getAll("dryRun");
    for (const d of dryRun)
      if (d !== "All")
        throw badRequest(`dryRun: Unsupported value: ${JSON.stringify(d)}: supported values: "All"`);
    const fv = q.get("fieldValidation") ?? "Warn";
    if (fv !== "Strict" && fv !== "Warn" && fv !== "Ignore") {
      throw badRequest(
        `fieldValidation: Unsupported value: ${JSON.stringify(fv)}: supported values: "Ignore", "Strict", "Warn"`,
      );
    }
    const manager = q.get("fieldManager") ?? managerFromUserAgent(ctx.req.headers["user-agent"]);
    if (manager.length > 128) throw badRequest("fieldManager: Too long: must have at most 128 bytes");
    return {
      dryRun: dryRun.length > 0,
      fieldManager: manager,
      fieldValidation: fv as FieldValidation,
      warnings: ctx.warnings,
    };
  };

  const selectors = (ctx: Ctx): { labelSelector?: LabelSelector; fieldSelector?: FieldSelector } => {
    const q = ctx.url.searchParams;
    try {
      const ls = q.get("labelSelector");
      const fs = q.get("fieldSelector");
      return {
        ...(ls ? { labelSelector: parseLabelSelector(ls) } : {}),
        ...(fs ? { fieldSelector: parseFieldSelector(fs) } : {}),
      };
    } catch (err) {
      if (err instanceof SelectorError) throw badRequest(err.message);
      throw err;
    }
  };

  const includeObject = (ctx: Ctx): IncludeObject => {
    const v = ctx.url.searchParams.get("includeObject") ?? "Metadata";
    if (v !== "None" && v !== "Metadata" && v !== "Object") {
      throw badRequest(`includeObject: Unsupported value: ${JSON.stringify(v)}`);
    }
    return v;
  };

  const sendObject = (ctx: Ctx, kind: ResourceKind, code: number, obj: KubeObject): void => {
    const format = negotiateObject(ctx.req.headers.accept);
    if (format.kind === "table") {
      send(
        ctx,
        code,
        toTable([obj], kind.printerColumns, {
          now: now(),
          include: includeObject(ctx),
          resourceVersion: obj.metadata.resourceVersion,
        }),
      );
    } else if (format.kind === "partial") {
      send(ctx, code, {
        kind: "PartialObjectMetadata",
        apiVersion: "meta.k8s.io/v1",
        metadata: obj.metadata,
      });
    } else send(ctx, code, obj, format);
  };

  const listOrWatch = async (
    ctx: Ctx,
    kind: ResourceKind,
    namespace: string | undefined,
  ): Promise<boolean> => {
    const q = ctx.url.searchParams;
    const sel = selectors(ctx);
    if (flag(q.get("watch"))) {
      ctx.verb = "watch";
      await serveWatch(ctx, kind, namespace, sel);
      return true;
    }
    ctx.verb = "list";
    const format = negotiateObject(ctx.req.headers.accept);
    const limit = intParam("limit", q.get("limit"));
    const page = await service.list(kind, {
      ...(namespace !== undefined ? { namespace } : {}),
      ...sel,
      ...(limit !== undefined ? { limit } : {}),
      ...(q.get("continue") ? { continueToken: q.get("continue")! } : {}),
    });
    const listMeta = {
      resourceVersion: page.resourceVersion,
      ...(page.continueToken
        ? { continue: page.continueToken, remainingItemCount: page.remainingItemCount }
        : {}),
    };
    if (format.kind === "table") {
      send(
        ctx,
        200,
        toTable(page.items, kind.printerColumns, {
          now: now(),
          include: includeObject(ctx),
          resourceVersion: page.resourceVersion,
          ...(page.continueToken ? { continueToken: page.continueToken } : {}),
        }),
      );
    } else if (format.kind === "partial") {
      send(ctx, 200, {
        kind: "PartialObjectMetadataList",
        apiVersion: "meta.k8s.io/v1",
        metadata: listMeta,
        items: page.items.map((o) => ({
          kind: "PartialObjectMetadata",
          apiVersion: "meta.k8s.io/v1",
          metadata: o.metadata,
        })),
      });
    } else {
      send(
        ctx,
        200,
        { apiVersion: apiVersionOf(kind), kind: kind.listKind, metadata: listMeta, items: page.items },
        format,
      );
    }
    return false;
  };

  const serveWatch = async (
    ctx: Ctx,
    kind: ResourceKind,
    namespace: string | undefined,
    sel: { labelSelector?: LabelSelector; fieldSelector?: FieldSelector },
  ): Promise<void> => {
    const q = ctx.url.searchParams;
    const format = negotiateObject(ctx.req.headers.accept);
    const include = includeObject(ctx);
    const timeoutSec = intParam("timeoutSeconds", q.get("timeoutSeconds"));
    const bookmarks = flag(q.get("allowWatchBookmarks")) && q.get("allowWatchBookmarks") !== null;
    const rv = q.get("resourceVersion") ?? undefined;
    const { res } = ctx;
    const writeEvent = (type: string, object: unknown) => res.write(JSON.stringify({ type, object }) + "\n");
    const startStream = () => {
      res.writeHead(200, {
        "content-type": JSON_CT,
        "cache-control": "no-cache, private",
        "transfer-encoding": "chunked",
      });
      res.flushHeaders();
    };
    let watch;
    try {
      watch = await service.watch(kind, {
        ...(namespace !== undefined ? { namespace } : {}),
        ...sel,
        ...(rv !== undefined ? { resourceVersion: rv } : {}),
      });
    } catch (err) {
      // A history that no longer reaches back is one ERROR event on a 200 stream, as
      // kube-apiserver does; clients relist. Other refusals are plain Status answers.
      if (!(err instanceof ApiError && err.code === 410)) throw err;
      startStream();
      writeEvent("ERROR", err.toStatus());
      res.end();
      metrics?.requests.inc({ verb: "watch", resource: ctx.resource, code: "410" });
      return;
    }
    startStream();
    metrics?.watches.inc();
    let lastRv = rv && /^[0-9]+$/.test(rv) ? rv : undefined;
    let headersSent = false;
    const stop = () => watch.stop();
    openWatches.add(stop);
    const limitMs = Math.min(
      maxWatchMs,
      timeoutSec !== undefined && timeoutSec > 0 ? timeoutSec * 1000 : maxWatchMs,
    );
    const timer = setTimeout(stop, limitMs);
    const bookmarkTimer = bookmarks
      ? setInterval(() => {
          void opts.store
            .currentRevision()
            .then((r) => {
              const at = String(Math.max(r, Number(lastRv ?? 0)));
              writeEvent("BOOKMARK", {
                kind: kind.kind,
                apiVersion: apiVersionOf(kind),
                metadata: { resourceVersion: at },
              });
            })
            .catch(() => undefined);
        }, bookmarkMs)
      : undefined;
    res.once("close", stop);
    try {
      for await (const ev of watch) {
        lastRv = ev.object.metadata.resourceVersion;
        let object: unknown = ev.object;
        if (format.kind === "table") {
          object = toTable([ev.object], kind.printerColumns, {
            now: now(),
            include,
            resourceVersion: ev.object.metadata.resourceVersion,
            noHeaders: headersSent,
          });
          headersSent = true;
        } else if (format.kind === "partial") {
          object = {
            kind: "PartialObjectMetadata",
            apiVersion: "meta.k8s.io/v1",
            metadata: ev.object.metadata,
          };
        }
        if (!res.write(JSON.stringify({ type: ev.type, object }) + "\n")) {
          await new Promise<void>((resolve) => {
            res.once("drain", resolve);
            res.once("close", resolve);
          });
        }
      }
    } catch (err) {
      if (!res.writableEnded && !res.destroyed) writeEvent("ERROR", toStatus(err));
      log.warn("watch ended with an error", { resource: ctx.resource, error: err as Error });
    } finally {
      clearTimeout(timer);
      if (bookmarkTimer) clearInterval(bookmarkTimer);
      openWatches.delete(stop);
      metrics?.watches.dec();
      metrics?.requests.inc({ verb: "watch", resource: ctx.resource, code: "200" });
      if (!res.writableEnded) res.end();
    }
  };

  const collection = async (
    ctx: Ctx,
    kind: ResourceKind,
    namespace: string,
    method: string,
    path: string,
  ): Promise<boolean> => {
    switch (method) {
      case "GET":
        return listOrWatch(ctx, kind, namespace);
      case "POST": {
        ctx.verb = "create";
        const body = decodeObjectBody(mediaType(ctx.req), await readBody(ctx.req));
        const wo = writeOptions(ctx);
        const created = await service.create(kind, namespace, body, wo);
        sendObject(ctx, kind, 201, created);
        return false;
      }
      case "DELETE": {
        ctx.verb = "deletecollection";
        const deleted = await service.deleteCollection(
          kind,
          { namespace, ...selectors(ctx) },
          { dryRun: writeOptions(ctx).dryRun },
        );
        send(ctx, 200, { apiVersion: apiVersionOf(kind), kind: kind.listKind, metadata: {}, items: deleted });
        return false;
      }
      default:
        throw methodNotAllowed(method, path);
    }
  };

  /** The object itself, or (sub "status") its status subresource, which has no DELETE. */
  const item = async (
    ctx: Ctx,
    kind: ResourceKind,
    namespace: string,
    name: string,
    method: string,
    path: string,
    sub?: "status",
  ): Promise<boolean> => {
    switch (method) {
      case "GET":
        ctx.verb = "get";
        sendObject(ctx, kind, 200, await service.get(kind, namespace, name));
        return false;
      case "PUT": {
        ctx.verb = "update";
        const body = decodeObjectBody(mediaType(ctx.req), await readBody(ctx.req));
        sendObject(
          ctx,
          kind,
          200,
          await service.replace(kind, namespace, name, body, writeOptions(ctx), sub),
        );
        return false;
      }
      case "PATCH":
        await patchItem(ctx, kind, namespace, name, sub);
        return false;
      case "DELETE": {
        if (sub !== undefined) throw methodNotAllowed(method, path);
        ctx.verb = "delete";
        const raw = await readBody(ctx.req);
        const deleteOpts = parseDeleteOptions(raw, ctx);
        const deleted = await service.delete(kind, namespace, name, deleteOpts);
        sendObject(ctx, kind, 200, deleted);
        return false;
      }
      default:
        throw methodNotAllowed(method, path);
    }
  };

  /** A PATCH body, decoded by its content type (YAML for server-side apply). */
  const readPatch = async (ctx: Ctx): Promise<{ type: PatchType; patch: unknown }> => {
    ctx.verb = "patch";
    const type = parsePatchType(ctx.req.headers["content-type"] ?? "");
    const raw = (await readBody(ctx.req)).toString("utf8");
    return { type, patch: type === "apply" ? decodeYaml(raw) : decodeJson(raw) };
  };

  const patchItem = async (ctx: Ctx, kind: ResourceKind, namespace: string, name: string, sub?: "status") => {
    const { type, patch } = await readPatch(ctx);
    const wo = writeOptions(ctx);
    const force = flag(ctx.url.searchParams.get("force")) && ctx.url.searchParams.get("force") !== null;
    if (type === "apply" && !ctx.url.searchParams.get("fieldManager")) {
      throw badRequest("PATCH with application/apply-patch+yaml requires the fieldManager parameter");
    }
    if (type !== "apply" && force)
      throw badRequest("force: Forbidden: may not be specified for non-apply patch");
    const { object, created } = await service.patch(
      kind,
      namespace,
      name,
      type,
      patch,
      { ...wo, force },
      sub,
    );
    sendObject(ctx, kind, created ? 201 : 200, object);
  };

  const scaleSub = async (
    ctx: Ctx,
    kind: ResourceKind,
    namespace: string,
    name: string,
    method: string,
    path: string,
  ): Promise<boolean> => {
    switch (method) {
      case "GET":
        ctx.verb = "get";
        send(ctx, 200, await service.getScale(kind, namespace, name));
        return false;
      case "PUT": {
        ctx.verb = "update";
        const body = decodeObjectBody(mediaType(ctx.req), await readBody(ctx.req));
        if (!isPlainObject(body) || body.kind !== "Scale")
          throw badRequest("the body must be an autoscaling/v1 Scale");
        send(ctx, 200, await service.writeScale(kind, namespace, name, () => body, writeOptions(ctx)));
        return false;
      }
      case "PATCH": {
        const { type, patch } = await readPatch(ctx);
        const scale = await service.writeScale(
          kind,
          namespace,
          name,
          (current) => {
            try {
              if (type === "json") return jsonPatch(current, patch);
              if (!isPlainObject(patch)) throw new PatchError("a merge patch must be a JSON object");
              return mergePatch(current, patch);
            } catch (err) {
              if (err instanceof PatchError) throw badRequest(err.message);
              throw err;
            }
          },
          writeOptions(ctx),
        );
        send(ctx, 200, scale);
        return false;
      }
      default:
        throw methodNotAllowed(method, path);
    }
  };

  const prototypeCreate = async (ctx: Ctx, kindName: string): Promise<void> => {
    ctx.verb = "create";
    const kind = kinds.kinds.find((k) => k.kind === kindName);
    if (!kind) throw pathNotFound(ctx.url.pathname);
    ctx.resource = kind.plural;
    const body = decodeLenient(await readBody(ctx.req));
    if (!isPlainObject(body)) throw badRequest("the request body must be a JSON or YAML object");
    if (body.kind !== undefined && body.kind !== kindName) {
      throw badRequest(`this endpoint takes ${kindName}, not ${JSON.stringify(body.kind)}`);
    }
    const obj = { ...body, apiVersion: body.apiVersion ?? apiVersionOf(kind), kind: kindName };
    const meta = isPlainObject(body.metadata) ? body.metadata : {};
    const namespace =
      typeof meta.namespace === "string" && meta.namespace !== "" ? meta.namespace : "default";
    if (!isValidNamespace(namespace))
      throw badRequest(`namespace ${JSON.stringify(namespace)} is not a DNS-1123 label`);
    const created = await service.create(kind, namespace, obj, {
      ...writeOptions(ctx),
      fieldValidation: "Strict",
    });
    send(ctx, 202, {
      name: created.metadata.name,
      namespace: created.metadata.namespace,
      uid: created.metadata.uid,
    });
  };

  const parseDeleteOptions = (raw: Buffer, ctx: Ctx) => {
    const wo = writeOptions(ctx);
    let dryRun = wo.dryRun;
    let preconditions: { uid?: string; resourceVersion?: string } | undefined;
    if (raw.length > 0) {
      const body = decodeJson(raw.toString("utf8"));
      if (!isPlainObject(body)) throw badRequest("DeleteOptions must be an object");
      if (Array.isArray(body.dryRun) && body.dryRun.includes("All")) dryRun = true;
      if (isPlainObject(body.preconditions)) {
        const p = body.preconditions;
        preconditions = {
          ...(typeof p.uid === "string" ? { uid: p.uid } : {}),
          ...(typeof p.resourceVersion === "string" ? { resourceVersion: p.resourceVersion } : {}),
        };
      }
    }
    return { dryRun, ...(preconditions ? { preconditions } : {}) };
  };

  // ------------------------------------------------------------ server ---

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res);
  };
  let server: Server | HttpsServer;
  if (!insecure && opts.tls) {
    server = createHttpsServer(
      {
        cert: opts.tls.certPem,
        key: opts.tls.keyPem,
        ca: opts.tls.bundlePem,
        requestCert: true,
        // Refusals are answered as 401 Status by the handler, not as a TLS alert.
        rejectUnauthorized: false,
        minVersion: "TLSv1.2",
      },
      listener,
    );
  } else {
    server = createHttpServer(listener);
  }
  server.requestTimeout = 0; // watches are long
  server.headersTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  address = `${host}:${port}`;
  const scheme = insecure ? "http" : "https";
  log.info("api server listening", { url: `${scheme}://${address}`, tls: scheme === "https" });
  return {
    port,
    url: `${scheme}://${address}`,
    service,
    updateTls(tls) {
      if (!("setSecureContext" in server)) throw new ApiServerConfigError("this server runs without TLS");
      (server as HttpsServer).setSecureContext({ cert: tls.certPem, key: tls.keyPem, ca: tls.bundlePem });
      auth.setBundle?.(tls.bundlePem);
    },
    async close() {
      for (const stop of [...openWatches]) stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function toStatus(err: unknown): Status {
  if (err instanceof ApiError) return err.toStatus();
  if (err instanceof SelectorError) return badRequest(err.message).toStatus();
  if (err instanceof URIError) return badRequest(`malformed request path: ${err.message}`).toStatus();
  return internalError(err instanceof Error ? err.message : String(err)).toStatus();
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}
