// HTTP plumbing of the API: media type negotiation, bounded body reading,
// JSON/YAML decoding, query flags. Errors come out as ApiError.
import type { IncomingMessage } from "node:http";
import { load as loadYaml } from "js-yaml";
import { badRequest, notAcceptable, tooLarge, unsupportedMediaType } from "./status.js";

export const MAX_BODY_BYTES = 1024 * 1024;
const DRAIN_FACTOR = 8;

export interface MediaRange {
  type: string;
  params: Record<string, string>;
}

/** Accept header entries in the order given (q-values are rare from Kubernetes clients and ignored). */
export function parseAccept(header: string | undefined): MediaRange[] {
  if (!header || header.trim() === "") return [{ type: "*/*", params: {} }];
  return header.split(",").map((part) => {
    const [type, ...rest] = part.split(";").map((s) => s.trim());
    const params: Record<string, string> = {};
    for (const p of rest) {
      const eq = p.indexOf("=");
      if (eq > 0) params[p.slice(0, eq).trim().toLowerCase()] = p.slice(eq + 1).trim();
    }
    return { type: (type ?? "").toLowerCase(), params };
  });
}

export type ObjectFormat = { kind: "json" } | { kind: "yaml" } | { kind: "table" } | { kind: "partial" };

const isJsonish = (t: string) =>
  t === "application/json" || t === "*/*" || t === "application/*" || t === "application/json;stream=watch";

/** What to send for an object or list: the first Accept entry we can produce. */
export function negotiateObject(header: string | undefined): ObjectFormat {
  for (const r of parseAccept(header)) {
    const as = r.params["as"];
    if (as !== undefined) {
      if (r.params["g"] !== "meta.k8s.io" || !isJsonish(r.type)) continue;
      if (as === "Table") return { kind: "table" };
      if (as === "PartialObjectMetadata" || as === "PartialObjectMetadataList") return { kind: "partial" };
      continue;
    }
    if (isJsonish(r.type)) return { kind: "json" };
    if (r.type === "application/yaml") return { kind: "yaml" };
  }
  throw notAcceptable([
    "application/json",
    "application/yaml",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
  ]);
}

/** Aggregated discovery version asked for, if any, in the client's order of preference. */
export function negotiateDiscovery(header: string | undefined): "v2" | "v2beta1" | undefined {
  for (const r of parseAccept(header)) {
    if (r.params["g"] === "apidiscovery.k8s.io" && r.params["as"] === "APIGroupDiscoveryList") {
      if (r.params["v"] === "v2" || r.params["v"] === "v2beta1") return r.params["v"];
      continue;
    }
    if (isJsonish(r.type) && r.params["as"] === undefined) return undefined;
  }
  return undefined;
}

export function mediaType(req: IncomingMessage): string {
  return (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
}

/** Reads the body, refusing more than `limit` bytes (413) before or while it arrives. */
export async function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  // A flood is refused unread (the connection closes); a modest excess is drained
  // below so that the client, still sending, reads the 413 instead of a reset.
  if (Number.isFinite(declared) && declared > limit * DRAIN_FACTOR) {
    req.once("end", () => undefined).resume();
    throw tooLarge(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) over = true;
    if (!over) chunks.push(buf);
    if (size > limit * DRAIN_FACTOR) {
      req.destroy();
      break;
    }
  }
  if (over) throw tooLarge(limit);
  return Buffer.concat(chunks);
}

export function decodeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(
      `the request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

export function decodeYaml(text: string): unknown {
  try {
    return loadYaml(text);
  } catch (err) {
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw badRequest(`error converting YAML to JSON: ${msg}`);
  }
}

const JSON_TYPES = new Set(["application/json", ""]);
const YAML_TYPES = new Set(["application/yaml", "application/x-yaml", "text/yaml"]);

/** A create/update body: JSON or YAML by Content-Type; protobuf and the rest get 415. */
export function decodeObjectBody(contentType: string, body: Buffer): unknown {
  const text = body.toString("utf8");
  if (JSON_TYPES.has(contentType)) return decodeJson(text);
  if (YAML_TYPES.has(contentType)) return decodeYaml(text);
  throw unsupportedMediaType(contentType, ["application/json", "application/yaml"]);
}

/** The first prototype took YAML even when labelled JSON (its README's curl does that): sniff. */
export function decodeLenient(body: Buffer): unknown {
  const text = body.toString("utf8");
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{")) return decodeJson(text);
  return decodeYaml(text);
}

export function flag(value: string | null): boolean {
  return value === "true" || value === "1" || value === "";
}

export function intParam(name: string, value: string | null): number | undefined {
  if (value === null || value === "") return undefined;
  if (!/^-?[0-9]+$/.test(value))
    throw badRequest(`${name}: Invalid value: ${JSON.stringify(value)}: must be an integer`);
  return Number(value);
}

/** Kubernetes' default field manager: the user agent up to its first "/". */
export function managerFromUserAgent(ua: string | undefined): string {
  const name = (ua ?? "").split("/")[0]!.trim();
  return (name || "unknown").slice(0, 128);
}
