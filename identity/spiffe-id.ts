// SPIFFE ID parsing by the rules of the SPIFFE ID standard (spiffe/spiffe
// standards/SPIFFE-ID.md): scheme "spiffe", a trust domain of [a-z0-9.-_],
// path segments of [A-Za-z0-9.-_], no "." or ".." segments, no query,
// fragment, port or userinfo, at most 2048 bytes in all.

export class SpiffeIdError extends Error {
  override name = "SpiffeIdError";
  constructor(
    message: string,
    readonly input: string,
  ) {
    super(`identity: ${message}`);
  }
}

const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN_CHARS = 255;
const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const SEGMENT_CHAR = /^[A-Za-z0-9._-]$/;

export interface SpiffeId {
  readonly trustDomain: string;
  /** Path with its leading slash, "" for the trust domain itself. */
  readonly path: string;
  readonly segments: readonly string[];
  toString(): string;
}

function makeId(trustDomain: string, segments: readonly string[]): SpiffeId {
  const path = segments.length ? "/" + segments.join("/") : "";
  const text = `spiffe://${trustDomain}${path}`;
  return { trustDomain, path, segments, toString: () => text };
}

export function validateTrustDomain(td: string): void {
  if (td.length === 0) throw new SpiffeIdError("trust domain is missing", td);
  if (td.length > MAX_TRUST_DOMAIN_CHARS) throw new SpiffeIdError("trust domain is too long", td);
  for (const ch of td) {
    if (!TRUST_DOMAIN_CHAR.test(ch)) {
      throw new SpiffeIdError(
        `trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (got ${JSON.stringify(ch)})`,
        td,
      );
    }
  }
}

export function validatePathSegment(segment: string, input = segment): void {
  if (segment.length === 0) throw new SpiffeIdError("path cannot contain empty segments", input);
  if (segment === "." || segment === "..") throw new SpiffeIdError("path cannot contain dot segments", input);
  for (const ch of segment) {
    if (!SEGMENT_CHAR.test(ch)) {
      throw new SpiffeIdError(
        `path segment characters are limited to letters, numbers, dots, dashes, and underscores (got ${JSON.stringify(ch)})`,
        input,
      );
    }
  }
}

/** Parses and validates a SPIFFE ID; throws SpiffeIdError naming the rule it broke. */
export function parseSpiffeId(input: string): SpiffeId {
  if (typeof input !== "string" || input.length === 0)
    throw new SpiffeIdError("cannot be empty", String(input));
  if (Buffer.byteLength(input, "utf8") > MAX_ID_BYTES)
    throw new SpiffeIdError("is longer than 2048 bytes", input);
  const prefix = "spiffe://";
  if (!input.startsWith(prefix)) {
    throw new SpiffeIdError(
      input.toLowerCase().startsWith(prefix) ? "scheme must be lowercase" : "scheme is missing or invalid",
      input,
    );
  }
  const rest = input.slice(prefix.length);
  if (rest.includes("?")) throw new SpiffeIdError("query is not allowed", input);
  if (rest.includes("#")) throw new SpiffeIdError("fragment is not allowed", input);
  const slash = rest.indexOf("/");
  const td = slash === -1 ? rest : rest.slice(0, slash);
  if (td.includes("@")) throw new SpiffeIdError("user info is not allowed", input);
  if (td.includes(":")) throw new SpiffeIdError("port is not allowed", input);
  validateTrustDomain(td);
  if (slash === -1) return makeId(td, []);
  const path = rest.slice(slash);
  if (path.endsWith("/")) throw new SpiffeIdError("path cannot have a trailing slash", input);
  const segments = path.slice(1).split("/");
  for (const s of segments) validatePathSegment(s, input);
  return makeId(td, segments);
}

/** Builds an ID from a trust domain and path segments, validating each. */
export function spiffeId(trustDomain: string, ...segments: string[]): SpiffeId {
  validateTrustDomain(trustDomain);
  for (const s of segments) validatePathSegment(s);
  return makeId(trustDomain, segments);
}

export function isMemberOf(id: SpiffeId, trustDomain: string): boolean {
  return id.trustDomain === trustDomain;
}

/** Roles of Beemesh identities (DESIGN §5), read from the first path segment(s). */
export type Principal =
  | { kind: "controller"; name: string; instance: string }
  | { kind: "node"; nodeId: string }
  | { kind: "workload"; ns: string; workloadKind: string; parent: string; pod: string }
  | { kind: "user"; name: string }
  | { kind: "other" };

export function principalOf(id: SpiffeId): Principal {
  const [a, b, c, d, e] = id.segments;
  const n = id.segments.length;
  if (a === "controller" && n === 3 && b && c) return { kind: "controller", name: b, instance: c };
  if (a === "node" && n === 2 && b) return { kind: "node", nodeId: b };
  if (a === "ns" && n === 5 && b && c && d && e)
    return { kind: "workload", ns: b, workloadKind: c, parent: d, pod: e };
  if (a === "user" && n === 2 && b) return { kind: "user", name: b };
  return { kind: "other" };
}

export const DEFAULT_TRUST_DOMAIN = "beemesh.local";
