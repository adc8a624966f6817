// A small client for the dispatcher's Kubernetes-compatible API (DESIGN §6):
// reads a kubeconfig (the same file kubectl uses), speaks HTTPS with the
// user's SVID as client certificate, and turns metav1.Status errors into one
// line the way kubectl prints them.
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { load as loadYaml } from "js-yaml";
import { CliError, type CliContext } from "./common.js";

export class KubeconfigError extends Error {
  override name = "KubeconfigError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`kubeconfig: ${message}`, options);
  }
}

/** The API answered with an error: its metav1.Status, as kubectl prints it. */
export class ApiStatusError extends CliError {
  override name = "ApiStatusError";
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(`Error from server${reason ? ` (${reason})` : ""}: ${message}`);
  }
}

// Only the fields beemeshctl uses; everything else in the file is left alone.
const NamedCluster = Type.Object({
  name: Type.String(),
  cluster: Type.Object({
    server: Type.String({ minLength: 1 }),
    "certificate-authority": Type.Optional(Type.String()),
    "certificate-authority-data": Type.Optional(Type.String()),
    "insecure-skip-tls-verify": Type.Optional(Type.Boolean()),
    "tls-server-name": Type.Optional(Type.String()),
  }),
});
const NamedUser = Type.Object({
  name: Type.String(),
  user: Type.Union([
    Type.Object({
      "client-certificate": Type.Optional(Type.String()),
      "client-certificate-data": Type.Optional(Type.String()),
      "client-key": Type.Optional(Type.String()),
      "client-key-data": Type.Optional(Type.String()),
    }),
    Type.Null(),
  ]),
});
const NamedContext = Type.Object({
  name: Type.String(),
  context: Type.Object({
    cluster: Type.String(),
    user: Type.Optional(Type.String()),
    namespace: Type.Optional(Type.String()),
  }),
});
const KubeconfigFile = Type.Object({
  clusters: Type.Array(NamedCluster),
  users: Type.Optional(Type.Union([Type.Array(NamedUser), Type.Null()])),
  contexts: Type.Array(NamedContext),
  "current-context": Type.Optional(Type.String()),
});
type KubeconfigFile = Static<typeof KubeconfigFile>;

/** What one kubeconfig context resolves to. */
export interface ApiTarget {
  server: string;
  namespace: string;
  caPem?: string;
  certPem?: string;
  keyPem?: string;
  insecureSkipVerify: boolean;
  tlsServerName?: string;
}

/** The kubeconfig path: --kubeconfig, else the first of $KUBECONFIG, else ~/.kube/config. */
export function kubeconfigPath(
  flag: string | undefined,
  ctx: Pick<CliContext, "env" | "cwd" | "homeDir">,
): string {
  if (flag) return resolve(ctx.cwd, flag);
  const fromEnv = ctx.env["KUBECONFIG"]?.split(":").find((p) => p !== "");
  if (fromEnv) return resolve(ctx.cwd, fromEnv);
  return join(ctx.homeDir, ".kube", "config");
}

/** Resolves the context (`contextName` or current-context) of a kubeconfig's text. Pure but for file references. */
export async function parseKubeconfig(text: string, path: string, contextName?: string): Promise<ApiTarget> {
  let raw: unknown;
  try {
    raw = loadYaml(text);
  } catch (err) {
    throw new KubeconfigError(`${path} is not YAML`, { cause: err });
  }
  if (!Value.Check(KubeconfigFile, raw)) {
    const first = Value.Errors(KubeconfigFile, raw).First();
    throw new KubeconfigError(
      `${path} is malformed at ${first?.path || "/"}: ${first?.message ?? "invalid"}`,
    );
  }
  const cfg: KubeconfigFile = raw;
  const name = contextName ?? cfg["current-context"];
  if (!name) throw new KubeconfigError(`${path} has no current-context; pass --context`);
  const context = cfg.contexts.find((c) => c.name === name)?.context;
  if (!context) throw new KubeconfigError(`context ${JSON.stringify(name)} is not in ${path}`);
  const cluster = cfg.clusters.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster) throw new KubeconfigError(`cluster ${JSON.stringify(context.cluster)} is not in ${path}`);
  const user = context.user ? (cfg.users ?? []).find((u) => u.name === context.user)?.user : undefined;
  if (context.user && user === undefined)
    throw new KubeconfigError(`user ${JSON.stringify(context.user)} is not in ${path}`);
  // File references in a kubeconfig are relative to the kubeconfig's own directory.
  const base = dirname(path);
  const pem = async (data: string | undefined, file: string | undefined, what: string) => {
    if (data) return Buffer.from(data, "base64").toString("utf8");
    if (file) {
      const p = isAbsolute(file) ? file : join(base, file);
      try {
        return await readFile(p, "utf8");
      } catch (err) {
        throw new KubeconfigError(`cannot read the ${what} ${p}`, { cause: err });
      }
    }
    return undefined;
  };
  const caPem = await pem(cluster["certificate-authority-data"], cluster["certificate-authority"], "CA file");
  const certPem = await pem(
    user?.["client-certificate-data"],
    user?.["client-certificate"],
    "client certificate",
  );
  const keyPem = await pem(user?.["client-key-data"], user?.["client-key"], "client key");
  if ((certPem === undefined) !== (keyPem === undefined)) {
    throw new KubeconfigError(
      `user ${JSON.stringify(context.user)} needs both a client certificate and its key`,
    );
  }
  return {
    server: cluster.server,
    namespace: context.namespace || "default",
    insecureSkipVerify: cluster["insecure-skip-tls-verify"] === true,
    ...(caPem !== undefined ? { caPem } : {}),
    ...(certPem !== undefined ? { certPem } : {}),
    ...(keyPem !== undefined ? { keyPem } : {}),
    ...(cluster["tls-server-name"] ? { tlsServerName: cluster["tls-server-name"] } : {}),
  };
}

export async function loadKubeconfig(path: string, contextName?: string): Promise<ApiTarget> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new KubeconfigError(`cannot read ${path}`, { cause: err });
  }
  return parseKubeconfig(text, path, contextName);
}

export interface ApiResponse {
  status: number;
  contentType: string;
  body: string;
}

export interface RequestOptions {
  body?: string;
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
}

/** A watch event as the API streams it (one JSON object per line). */
export interface WatchEvent {
  type: string;
  object: Record<string, unknown>;
}

const WatchEventSchema = Type.Object({
  type: Type.String(),
  object: Type.Record(Type.String(), Type.Unknown()),
});

const StatusSchema = Type.Object({
  kind: Type.Literal("Status"),
  message: Type.Optional(Type.String()),
  reason: Type.Optional(Type.String()),
  code: Type.Optional(Type.Number()),
});

const USER_AGENT = "beemeshctl/0.1.0";
const MAX_BODY_BYTES = 64 * 1024 * 1024;

export class ApiClient {
  readonly base: URL;

  constructor(readonly target: ApiTarget) {
    try {
      this.base = new URL(target.server);
    } catch {
      throw new KubeconfigError(`server ${JSON.stringify(target.server)} is not a URL`);
    }
    if (this.base.protocol !== "https:" && this.base.protocol !== "http:") {
      throw new KubeconfigError(`server ${target.server} must be http(s)`);
    }
  }

  private open(method: string, path: string, opts: RequestOptions): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    const headers: Record<string, string> = {
      "user-agent": USER_AGENT,
      accept: opts.accept ?? "application/json",
    };
    if (opts.body !== undefined) {
      headers["content-type"] = opts.contentType ?? "application/json";
      headers["content-length"] = String(Buffer.byteLength(opts.body));
    }
    const t = this.target;
    return new Promise((resolvePromise, reject) => {
      const onResponse = (res: IncomingMessage) => resolvePromise(res);
      const common = { method, headers, ...(opts.signal ? { signal: opts.signal } : {}) };
      const req =
        url.protocol === "https:"
          ? httpsRequest(
              url,
              {
                ...common,
                agent: false,
                ...(t.caPem !== undefined ? { ca: t.caPem } : {}),
                ...(t.certPem !== undefined ? { cert: t.certPem, key: t.keyPem } : {}),
                ...(t.tlsServerName ? { servername: t.tlsServerName } : {}),
                rejectUnauthorized: !t.insecureSkipVerify,
              },
              onResponse,
            )
          : httpRequest(url, common, onResponse);
      req.on("error", (err) => reject(new CliError(`cannot reach ${this.base.origin}`, { cause: err })));
      req.end(opts.body);
    });
  }

  /** One request; an error status becomes ApiStatusError. */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const res = await this.open(method, path, opts);
    const body = await readAll(res);
    const response = {
      status: res.statusCode ?? 0,
      contentType: String(res.headers["content-type"] ?? ""),
      body,
    };
    if (response.status >= 400) throw statusError(response);
    return response;
  }

  /** request() and JSON.parse of the answer. */
  async json(method: string, path: string, opts: RequestOptions = {}): Promise<unknown> {
    const res = await this.request(method, path, opts);
    try {
      return JSON.parse(res.body) as unknown;
    } catch (err) {
      throw new CliError(`${method} ${path}: the answer is not JSON`, { cause: err });
    }
  }

  /** A watch stream; ends when the server ends it or `signal` aborts. */
  async *watch(path: string, signal: AbortSignal): AsyncGenerator<WatchEvent> {
    let res: IncomingMessage;
    try {
      res = await this.open("GET", path, { signal });
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
    if ((res.statusCode ?? 0) >= 400) {
      const body = await readAll(res);
      throw statusError({ status: res.statusCode ?? 0, contentType: "", body });
    }
    let buffer = "";
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        buffer += chunk.toString("utf8");
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line === "") continue;
          yield parseWatchLine(line);
        }
        if (buffer.length > MAX_BODY_BYTES) throw new CliError("watch event larger than 64 MiB");
      }
    } catch (err) {
      if (signal.aborted) return;
      // The server closing a long watch is normal; the caller re-watches.
      if ((err as NodeJS.ErrnoException).code === "ECONNRESET") return;
      throw err;
    } finally {
      res.destroy();
    }
  }
}

export function parseWatchLine(line: string): WatchEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    throw new CliError("watch stream sent a line that is not JSON", { cause: err });
  }
  if (!Value.Check(WatchEventSchema, raw))
    throw new CliError("watch stream sent an event without type and object");
  return raw;
}

function statusError(res: ApiResponse): ApiStatusError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body);
  } catch {
    parsed = undefined;
  }
  if (Value.Check(StatusSchema, parsed)) {
    return new ApiStatusError(res.status, parsed.reason ?? "", parsed.message ?? `HTTP ${res.status}`);
  }
  return new ApiStatusError(res.status, "", `HTTP ${res.status}: ${res.body.slice(0, 200)}`);
}

/** A metav1.Status object (from a watch ERROR event) as an error. */
export function statusObjectError(object: Record<string, unknown>): ApiStatusError {
  const code = typeof object["code"] === "number" ? object["code"] : 500;
  return statusError({ status: code, contentType: "", body: JSON.stringify(object) });
}

async function readAll(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      res.destroy();
      throw new CliError("answer larger than 64 MiB");
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** --kubeconfig / --context options shared by the API commands. */
export const API_OPTIONS = {
  kubeconfig: {
    type: "string",
    placeholder: "FILE",
    description: "kubeconfig (default $KUBECONFIG, then ~/.kube/config)",
  },
  context: {
    type: "string",
    placeholder: "NAME",
    description: "kubeconfig context (default its current-context)",
  },
} as const;

/** -n NS, for the commands that act in one namespace. */
export const NAMESPACE_OPTION = {
  type: "string",
  short: "n",
  placeholder: "NS",
  description: "namespace (default the context's)",
} as const;
