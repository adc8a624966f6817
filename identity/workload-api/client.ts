// A Workload API client: fetches and watches this workload's X.509-SVIDs over
// the unix socket its node agent mounted. Every response is checked before use
// (SPIFFE ID well formed and equal to the leaf's URI SAN, key matching the
// leaf), since the files it feeds are what the workload will present.
import * as grpc from "@grpc/grpc-js";
import { x509, subtle, EC_ALG } from "../crypto.js";
import { splitConcatenatedDer, toArrayBuffer } from "../der.js";
import type { SpiffeId } from "../spiffe-id.js";
import { parseSpiffeId } from "../spiffe-id.js";
import type { WorkloadApiStub } from "./proto.js";
import { createWorkloadApiStub, securityMetadata } from "./proto.js";

export class WorkloadApiResponseError extends Error {
  override name = "WorkloadApiResponseError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`identity: workload api response: ${message}`, options);
  }
}

export interface X509SvidEntry {
  readonly spiffeId: SpiffeId;
  /** Leaf first, then intermediates. */
  readonly chain: readonly x509.X509Certificate[];
  /** PKCS#8 DER. */
  readonly privateKeyDer: Uint8Array;
  readonly bundle: readonly x509.X509Certificate[];
  readonly hint: string;
  readonly notAfter: Date;
}

export interface X509Context {
  readonly svids: readonly X509SvidEntry[];
  /** Trust domain SPIFFE ID → CA certificates. */
  readonly federatedBundles: ReadonlyMap<string, readonly x509.X509Certificate[]>;
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new WorkloadApiResponseError(`${what} is not a message`);
  return v as Record<string, unknown>;
}

function certificates(bytes: unknown, what: string): x509.X509Certificate[] {
  if (!isBytes(bytes) || bytes.length === 0) throw new WorkloadApiResponseError(`${what} is empty`);
  try {
    return splitConcatenatedDer(bytes).map((d) => new x509.X509Certificate(toArrayBuffer(d)));
  } catch (err) {
    throw new WorkloadApiResponseError(`${what} is not DER certificates`, { cause: err });
  }
}

async function parseSvidEntry(raw: unknown, index: number): Promise<X509SvidEntry> {
  const m = record(raw, `svids[${index}]`);
  if (typeof m["spiffe_id"] !== "string")
    throw new WorkloadApiResponseError(`svids[${index}].spiffe_id is missing`);
  let id: SpiffeId;
  try {
    id = parseSpiffeId(m["spiffe_id"]);
  } catch (err) {
    throw new WorkloadApiResponseError(`svids[${index}].spiffe_id is invalid`, { cause: err });
  }
  const chain = certificates(m["x509_svid"], `svids[${index}].x509_svid`);
  const bundle = certificates(m["bundle"], `svids[${index}].bundle`);
  const key = m["x509_svid_key"];
  if (!isBytes(key) || key.length === 0)
    throw new WorkloadApiResponseError(`svids[${index}].x509_svid_key is empty`);
  const leaf = chain[0]!;
  const uris = (leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [])
    .filter((n) => n.type === "url")
    .map((n) => n.value);
  if (uris.length !== 1 || uris[0] !== id.toString()) {
    throw new WorkloadApiResponseError(
      `svids[${index}] leaf names ${uris.join(",") || "nothing"}, not ${id.toString()}`,
    );
  }
  let privateJwk: { x?: string; y?: string };
  try {
    const privateKey = await subtle.importKey("pkcs8", toArrayBuffer(key), EC_ALG, true, ["sign"]);
    privateJwk = await subtle.exportKey("jwk", privateKey);
  } catch (err) {
    throw new WorkloadApiResponseError(`svids[${index}].x509_svid_key is not an ECDSA P-256 PKCS#8 key`, {
      cause: err,
    });
  }
  const leafJwk = await subtle.exportKey("jwk", await leaf.publicKey.export(EC_ALG, ["verify"]));
  if (privateJwk.x !== leafJwk.x || privateJwk.y !== leafJwk.y) {
    throw new WorkloadApiResponseError(`svids[${index}].x509_svid_key does not belong to its certificate`);
  }
  const hint = typeof m["hint"] === "string" ? m["hint"] : "";
  return { spiffeId: id, chain, privateKeyDer: new Uint8Array(key), bundle, hint, notAfter: leaf.notAfter };
}

/** Validates one X509SVIDResponse as it came off the wire. */
export async function parseX509SvidResponse(raw: unknown): Promise<X509Context> {
  const m = record(raw, "X509SVIDResponse");
  const svids = m["svids"];
  if (!Array.isArray(svids) || svids.length === 0)
    throw new WorkloadApiResponseError("no SVIDs in the response");
  const entries = await Promise.all(svids.map((s, i) => parseSvidEntry(s, i)));
  const federated = new Map<string, x509.X509Certificate[]>();
  const fed = m["federated_bundles"];
  if (fed !== undefined) {
    for (const [td, bytes] of Object.entries(record(fed, "federated_bundles"))) {
      federated.set(td, certificates(bytes, `federated_bundles[${td}]`));
    }
  }
  return { svids: entries, federatedBundles: federated };
}

/** Validates one X509BundlesResponse: trust domain ID → CA certificates. */
export function parseX509BundlesResponse(raw: unknown): Map<string, x509.X509Certificate[]> {
  const m = record(raw, "X509BundlesResponse");
  const out = new Map<string, x509.X509Certificate[]>();
  for (const [td, bytes] of Object.entries(record(m["bundles"] ?? {}, "bundles"))) {
    out.set(td, certificates(bytes, `bundles[${td}]`));
  }
  if (out.size === 0) throw new WorkloadApiResponseError("no bundles in the response");
  return out;
}

export interface WorkloadApiClientOptions {
  socketPath: string;
}

/** True when a stream ended because we cancelled it. */
function isCancelled(err: unknown): boolean {
  return (
    typeof err === "object" && err !== null && (err as { code?: unknown }).code === grpc.status.CANCELLED
  );
}

export class WorkloadApiClient {
  private readonly stub: WorkloadApiStub;

  constructor(opts: WorkloadApiClientOptions) {
    this.stub = createWorkloadApiStub(opts.socketPath);
  }

  /** The first X509SVIDResponse: the workload's current SVIDs. */
  async fetchX509Context(opts: { timeoutMs?: number } = {}): Promise<X509Context> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), opts.timeoutMs ?? 10_000);
    try {
      for await (const ctx of this.watchX509Context(ac.signal)) return ctx;
      throw new WorkloadApiResponseError(
        ac.signal.aborted ? "timed out waiting for an SVID" : "stream ended without an SVID",
      );
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
  }

  /**
   * Every X509SVIDResponse until `signal` aborts (then it just ends) or the stream fails
   * (then it throws the gRPC error, e.g. code PERMISSION_DENIED).
   */
  async *watchX509Context(signal: AbortSignal): AsyncGenerator<X509Context> {
    for await (const raw of this.stream((md, o) => this.stub.FetchX509SVID({}, md, o), signal)) {
      yield await parseX509SvidResponse(raw);
    }
  }

  async *watchX509Bundles(signal: AbortSignal): AsyncGenerator<Map<string, x509.X509Certificate[]>> {
    for await (const raw of this.stream((md, o) => this.stub.FetchX509Bundles({}, md, o), signal)) {
      yield parseX509BundlesResponse(raw);
    }
  }

  close(): void {
    this.stub.close();
  }

  private async *stream(
    open: (md: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>,
    signal: AbortSignal,
  ): AsyncGenerator<unknown> {
    if (signal.aborted) return;
    const call = open(securityMetadata(), {});
    const onAbort = () => call.cancel();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const raw of call as AsyncIterable<unknown>) yield raw;
    } catch (err) {
      if (signal.aborted && isCancelled(err)) return;
      throw err;
    } finally {
      signal.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }
}
