// A Workload API client that hands back DER: fetches and watches this
// workload's X.509-SVIDs over the unix socket its node agent mounted, with
// node:http2 (grpc-stream.ts) and the hand-written codec (codec.ts), and checks
// every response with Node's crypto (no certificate library, no protobufjs, no
// grpc-js: the watchdog sidecar runs this in every pod). Checked before use: SPIFFE ID
// well formed and equal to the leaf's only URI SAN, every certificate readable,
// the key ECDSA P-256 and matching the leaf. client.ts wraps it with
// @peculiar/x509 objects for tools that want them.
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readCertificate, type CertificateFields } from "../certificate.js";
import { splitConcatenatedDer } from "../der.js";
import type { SpiffeId } from "../spiffe-id.js";
import { parseSpiffeId } from "../spiffe-id.js";
import { GrpcStatus, UnixGrpcChannel } from "./grpc-stream.js";
import {
  FETCH_X509_BUNDLES_PATH,
  FETCH_X509_SVID_PATH,
  SECURITY_HEADER,
  SECURITY_HEADER_VALUE,
  decodeX509BundlesResponse,
  decodeX509SvidResponse,
  encodeEmptyRequest,
} from "./codec.js";

export class WorkloadApiResponseError extends Error {
  override name = "WorkloadApiResponseError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`identity: workload api response: ${message}`, options);
  }
}

export interface X509SvidDer {
  readonly spiffeId: SpiffeId;
  /** DER certificates, leaf first, then intermediates. */
  readonly chain: readonly Uint8Array[];
  /** The leaf's fields (names, validity, SANs), already read. */
  readonly leaf: CertificateFields;
  /** PKCS#8 DER. */
  readonly privateKeyDer: Uint8Array;
  /** DER CA certificates of the trust domain. */
  readonly bundle: readonly Uint8Array[];
  readonly hint: string;
  readonly notAfter: Date;
}

export interface X509DerContext {
  readonly svids: readonly X509SvidDer[];
  /** Trust domain SPIFFE ID → DER CA certificates. */
  readonly federatedBundles: ReadonlyMap<string, readonly Uint8Array[]>;
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new WorkloadApiResponseError(`${what} is not a message`);
  return v as Record<string, unknown>;
}

/** Concatenated DER certificates, each one read in full; the first one's fields too. */
function certificates(bytes: unknown, what: string): { ders: Uint8Array[]; first: CertificateFields } {
  if (!isBytes(bytes) || bytes.length === 0) throw new WorkloadApiResponseError(`${what} is empty`);
  try {
    const ders = splitConcatenatedDer(bytes).map((d) => new Uint8Array(d));
    const fields = ders.map((d) => readCertificate(d));
    return { ders, first: fields[0]! };
  } catch (err) {
    throw new WorkloadApiResponseError(`${what} is not DER certificates`, { cause: err });
  }
}

function ecP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

function parseSvidEntry(raw: unknown, index: number): X509SvidDer {
  const m = record(raw, `svids[${index}]`);
  if (typeof m["spiffe_id"] !== "string")
    throw new WorkloadApiResponseError(`svids[${index}].spiffe_id is missing`);
  let id: SpiffeId;
  try {
    id = parseSpiffeId(m["spiffe_id"]);
  } catch (err) {
    throw new WorkloadApiResponseError(`svids[${index}].spiffe_id is invalid`, { cause: err });
  }
  const { ders: chain, first: leaf } = certificates(m["x509_svid"], `svids[${index}].x509_svid`);
  const { ders: bundle } = certificates(m["bundle"], `svids[${index}].bundle`);
  const key = m["x509_svid_key"];
  if (!isBytes(key) || key.length === 0)
    throw new WorkloadApiResponseError(`svids[${index}].x509_svid_key is empty`);
  const uris = leaf.uriSans;
  if (uris.length !== 1 || uris[0] !== id.toString()) {
    throw new WorkloadApiResponseError(
      `svids[${index}] leaf names ${uris.join(",") || "nothing"}, not ${id.toString()}`,
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(key), format: "der", type: "pkcs8" });
    if (!ecP256(privateKey)) throw new Error(`a ${privateKey.asymmetricKeyType ?? "symmetric"} key`);
  } catch (err) {
    throw new WorkloadApiResponseError(`svids[${index}].x509_svid_key is not an ECDSA P-256 PKCS#8 key`, {
      cause: err,
    });
  }
  let leafKey: KeyObject;
  try {
    leafKey = createPublicKey({ key: Buffer.from(leaf.spki), format: "der", type: "spki" });
  } catch (err) {
    throw new WorkloadApiResponseError(`svids[${index}] leaf public key is unreadable`, { cause: err });
  }
  if (!ecP256(leafKey) || !leafKey.equals(createPublicKey(privateKey))) {
    throw new WorkloadApiResponseError(`svids[${index}].x509_svid_key does not belong to its certificate`);
  }
  const hint = typeof m["hint"] === "string" ? m["hint"] : "";
  return {
    spiffeId: id,
    chain,
    leaf,
    privateKeyDer: new Uint8Array(key),
    bundle,
    hint,
    notAfter: leaf.notAfter,
  };
}

/** Validates one X509SVIDResponse (as codec.ts or proto-loader decoded it). */
export function parseX509SvidDerResponse(raw: unknown): X509DerContext {
  const m = record(raw, "X509SVIDResponse");
  const svids = m["svids"];
  if (!Array.isArray(svids) || svids.length === 0)
    throw new WorkloadApiResponseError("no SVIDs in the response");
  const entries = svids.map((s, i) => parseSvidEntry(s, i));
  const federated = new Map<string, Uint8Array[]>();
  const fed = m["federated_bundles"];
  if (fed !== undefined) {
    for (const [td, bytes] of Object.entries(record(fed, "federated_bundles"))) {
      federated.set(td, certificates(bytes, `federated_bundles[${td}]`).ders);
    }
  }
  return { svids: entries, federatedBundles: federated };
}

/** Validates one X509BundlesResponse: trust domain ID → DER CA certificates. */
export function parseX509BundlesDerResponse(raw: unknown): Map<string, Uint8Array[]> {
  const m = record(raw, "X509BundlesResponse");
  const out = new Map<string, Uint8Array[]>();
  for (const [td, bytes] of Object.entries(record(m["bundles"] ?? {}, "bundles"))) {
    out.set(td, certificates(bytes, `bundles[${td}]`).ders);
  }
  if (out.size === 0) throw new WorkloadApiResponseError("no bundles in the response");
  return out;
}

export interface WorkloadApiClientOptions {
  socketPath: string;
}

/** True when a stream ended because we cancelled it. */
function isCancelled(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === GrpcStatus.CANCELLED;
}

const SECURITY_METADATA = { [SECURITY_HEADER]: SECURITY_HEADER_VALUE } as const;

export class WorkloadApiDerClient {
  private readonly channel: UnixGrpcChannel;

  constructor(opts: WorkloadApiClientOptions) {
    this.channel = new UnixGrpcChannel(opts.socketPath);
  }

  /** The first X509SVIDResponse: the workload's current SVIDs. */
  async fetchX509Context(opts: { timeoutMs?: number } = {}): Promise<X509DerContext> {
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
   * (then it throws GrpcStatusError, e.g. code PERMISSION_DENIED, or WorkloadApiResponseError).
   */
  async *watchX509Context(signal: AbortSignal): AsyncGenerator<X509DerContext> {
    for await (const bytes of this.stream(FETCH_X509_SVID_PATH, signal)) {
      yield parseX509SvidDerResponse(decoded(() => decodeX509SvidResponse(bytes)));
    }
  }

  async *watchX509Bundles(signal: AbortSignal): AsyncGenerator<Map<string, Uint8Array[]>> {
    for await (const bytes of this.stream(FETCH_X509_BUNDLES_PATH, signal)) {
      yield parseX509BundlesDerResponse(decoded(() => decodeX509BundlesResponse(bytes)));
    }
  }

  close(): void {
    this.channel.close();
  }

  /** Raw response messages; an abort of `signal` ends them quietly, other failures throw GrpcStatusError. */
  private async *stream(path: string, signal: AbortSignal): AsyncGenerator<Buffer> {
    if (signal.aborted) return;
    try {
      yield* this.channel.serverStream(path, encodeEmptyRequest(), SECURITY_METADATA, signal);
    } catch (err) {
      if (signal.aborted && isCancelled(err)) return;
      throw err;
    }
  }
}

function decoded<T>(decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    throw new WorkloadApiResponseError("undecodable message", { cause: err });
  }
}
