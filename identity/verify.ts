// X.509-SVID verification against a trust bundle (SPIFFE X509-SVID standard §4,
// §5): the leaf is signed by a bundle CA, valid now, not a CA, signs with
// digitalSignature only, and carries exactly one URI SAN naming a workload of
// the expected trust domain. SvidVerifier caches good results by the sha256 of
// the DER until the certificate expires (DESIGN §2: verify once per cert).
// Node's X509Certificate checks signatures and certificate.ts reads the
// extensions, so no certificate library is loaded (the watchdog sidecar's size).
import { createHash, createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import {
  EXTENSION_OID,
  KeyUsage,
  OID_OU,
  nameAttribute,
  readCertificate,
  type CertificateFields,
} from "./certificate.js";
import { pemCertificatesToDer, splitConcatenatedDer } from "./der.js";
import type { SpiffeId } from "./spiffe-id.js";
import { parseSpiffeId, SpiffeIdError } from "./spiffe-id.js";
import { EC_ALG, subtle, type CryptoKey } from "./webcrypto.js";

export type SvidVerifyReason =
  | "malformed"
  | "expired"
  | "not-yet-valid"
  | "untrusted"
  | "uri-san"
  | "ca-leaf"
  | "key-usage"
  | "trust-domain";

/** Base of every verification failure; `reason` is a stable label for metrics and logs. */
export class SvidVerifyError extends Error {
  override name = "SvidVerifyError";
  constructor(
    readonly reason: SvidVerifyReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`identity: svid rejected (${reason}): ${message}`, options);
  }
}
export class SvidMalformedError extends SvidVerifyError {
  override name = "SvidMalformedError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("malformed", message, options);
  }
}
export class SvidExpiredError extends SvidVerifyError {
  override name = "SvidExpiredError";
  constructor(message: string) {
    super("expired", message);
  }
}
export class SvidNotYetValidError extends SvidVerifyError {
  override name = "SvidNotYetValidError";
  constructor(message: string) {
    super("not-yet-valid", message);
  }
}
/** No CA of the bundle issued it: unknown issuer, or a signature that does not verify. */
export class SvidUntrustedError extends SvidVerifyError {
  override name = "SvidUntrustedError";
  constructor(message: string) {
    super("untrusted", message);
  }
}
export class SvidUriSanError extends SvidVerifyError {
  override name = "SvidUriSanError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("uri-san", message, options);
  }
}
export class SvidCaLeafError extends SvidVerifyError {
  override name = "SvidCaLeafError";
  constructor(message: string) {
    super("ca-leaf", message);
  }
}
export class SvidKeyUsageError extends SvidVerifyError {
  override name = "SvidKeyUsageError";
  constructor(message: string) {
    super("key-usage", message);
  }
}
export class SvidTrustDomainError extends SvidVerifyError {
  override name = "SvidTrustDomainError";
  constructor(message: string) {
    super("trust-domain", message);
  }
}

export interface VerifiedSvid {
  readonly id: SpiffeId;
  /** ECDSA P-256 key usable with subtle.verify (message signatures on the bus). */
  readonly publicKey: CryptoKey;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Hex sha256 of the certificate's DER. */
  readonly fingerprint: string;
  /** The OU of the Subject DN (the NATS role), when there is one. */
  readonly role: string | undefined;
}

/** A parsed certificate object: @peculiar/x509's (rawData) or Node's crypto.X509Certificate (raw). */
export type BundleCertificate = { readonly rawData: ArrayBuffer } | { readonly raw: Uint8Array };

/** CA certificates (x509 objects), a PEM text of them, or concatenated DER as the Workload API carries them. */
export type TrustBundleInput = readonly BundleCertificate[] | string | Uint8Array;

interface TrustAnchor {
  readonly fields: CertificateFields;
  readonly publicKey: KeyObject;
}

export function sha256Hex(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

function certificateDer(cert: BundleCertificate): Uint8Array {
  return "rawData" in cert ? new Uint8Array(cert.rawData) : new Uint8Array(cert.raw);
}

function bundleCertificates(bundle: TrustBundleInput): Uint8Array[] {
  if (typeof bundle === "string") return pemCertificatesToDer(bundle);
  if (bundle instanceof Uint8Array) return splitConcatenatedDer(bundle);
  return bundle.map(certificateDer);
}

function prepareAnchors(bundle: TrustBundleInput): Promise<TrustAnchor[]> {
  // Async so a bad bundle surfaces as a rejection of verify(), as before, not from the constructor.
  return Promise.resolve().then(() => {
    const certs = bundleCertificates(bundle);
    if (certs.length === 0) throw new SvidVerifyError("untrusted", "the trust bundle is empty");
    return certs.map((der, i) => {
      try {
        const fields = readCertificate(der);
        return {
          fields,
          publicKey: createPublicKey({ key: Buffer.from(fields.spki), format: "der", type: "spki" }),
        };
      } catch (err) {
        throw new SvidVerifyError("untrusted", `trust bundle certificate ${i} is malformed`, { cause: err });
      }
    });
  });
}

/** Issuer and subject names match by value, as @peculiar/x509's string forms did. */
function sameName(a: CertificateFields["issuer"], b: CertificateFields["subject"]): boolean {
  return JSON.stringify(a.rdns) === JSON.stringify(b.rdns);
}

/** Extensions a leaf may mark critical: the ones checked here, plus extKeyUsage (no bus purpose to match). */
const LEAF_CRITICAL_KNOWN: ReadonlySet<string> = new Set([
  EXTENSION_OID.basicConstraints,
  EXTENSION_OID.keyUsage,
  EXTENSION_OID.subjectAltName,
  EXTENSION_OID.subjectKeyIdentifier,
  EXTENSION_OID.authorityKeyIdentifier,
  EXTENSION_OID.extKeyUsage,
]);

/** Leaf signature algorithms: ECDSA and RSA with SHA-2, RSASSA-PSS, Ed25519; SHA-1 and MD5 are refused. */
const LEAF_SIGNATURE_ALGORITHMS: ReadonlySet<string> = new Set([
  "1.2.840.10045.4.3.2", // ecdsa-with-SHA256
  "1.2.840.10045.4.3.3", // ecdsa-with-SHA384
  "1.2.840.10045.4.3.4", // ecdsa-with-SHA512
  "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
  "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
  "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
  "1.2.840.113549.1.1.10", // RSASSA-PSS
  "1.3.101.112", // Ed25519
]);

/**
 * Node's X509Certificate tries PEM before DER and skips any text before a
 * BEGIN line, so a DER certificate carrying a CA's PEM inside (in its signature
 * bits, say) would have OpenSSL check the CA's own signature while the fields
 * come from the DER. Both parsers must therefore see exactly these bytes:
 * OpenSSL's re-encoding must be the input, and it must agree on the key.
 */
function parseLeaf(der: Uint8Array): { cert: X509Certificate; fields: CertificateFields } {
  let cert: X509Certificate;
  let fields: CertificateFields;
  try {
    fields = readCertificate(der);
    cert = new X509Certificate(der);
  } catch (err) {
    throw new SvidMalformedError("not a DER X.509 certificate", { cause: err });
  }
  if (!Buffer.from(cert.raw).equals(der))
    throw new SvidMalformedError("OpenSSL read a different certificate out of these bytes");
  let sameKey: boolean;
  try {
    sameKey = cert.publicKey.equals(
      createPublicKey({ key: Buffer.from(fields.spki), format: "der", type: "spki" }),
    );
  } catch (err) {
    throw new SvidMalformedError("public key is unreadable", { cause: err });
  }
  if (!sameKey) throw new SvidMalformedError("OpenSSL and the DER reader disagree on the public key");
  return { cert, fields };
}

/** A verified SVID and how long the answer holds: the leaf's window clipped to its CA's. */
interface Verification {
  readonly svid: VerifiedSvid;
  readonly validFromMs: number;
  readonly validUntilMs: number;
}

async function verifyAgainst(
  der: Uint8Array,
  anchors: readonly TrustAnchor[],
  trustDomain: string | undefined,
  nowMs: number,
): Promise<Verification> {
  const { cert, fields } = parseLeaf(der);

  if (nowMs < fields.notBefore.getTime()) {
    throw new SvidNotYetValidError(
      `valid from ${fields.notBefore.toISOString()}, now ${new Date(nowMs).toISOString()}`,
    );
  }
  if (nowMs > fields.notAfter.getTime()) {
    throw new SvidExpiredError(
      `expired at ${fields.notAfter.toISOString()}, now ${new Date(nowMs).toISOString()}`,
    );
  }

  if (fields.isCa) throw new SvidCaLeafError("leaf has CA:true");
  // RFC 5280 §4.2: a critical extension the verifier does not handle means "do not accept".
  const unknownCritical = fields.criticalExtensions.filter((oid) => !LEAF_CRITICAL_KNOWN.has(oid));
  if (unknownCritical.length > 0)
    throw new SvidMalformedError(`unsupported critical extension ${unknownCritical.join(", ")}`);
  const ku = fields.keyUsage;
  if (ku === undefined || (ku & KeyUsage.digitalSignature) === 0) {
    throw new SvidKeyUsageError("leaf lacks the digitalSignature key usage");
  }
  if (ku & (KeyUsage.keyCertSign | KeyUsage.cRLSign)) {
    throw new SvidKeyUsageError("leaf may sign certificates or CRLs");
  }

  const uris = fields.uriSans;
  if (uris.length !== 1) throw new SvidUriSanError(`expected exactly one URI SAN, found ${uris.length}`);
  let id: SpiffeId;
  try {
    id = parseSpiffeId(uris[0]!);
  } catch (err) {
    if (err instanceof SpiffeIdError) throw new SvidUriSanError(err.message, { cause: err });
    throw err;
  }
  if (id.path === "")
    throw new SvidUriSanError("a leaf SVID must name a workload, not the bare trust domain");
  if (trustDomain !== undefined && id.trustDomain !== trustDomain) {
    throw new SvidTrustDomainError(`${id.toString()} is not in trust domain ${trustDomain}`);
  }

  if (!LEAF_SIGNATURE_ALGORITHMS.has(fields.signatureAlgorithm))
    throw new SvidUntrustedError(`signature algorithm ${fields.signatureAlgorithm} is not accepted`);
  const issuer = checkIssuedByBundle(cert, fields, anchors, nowMs);

  let publicKey: CryptoKey;
  try {
    publicKey = await subtle.importKey("spki", fields.spki, EC_ALG, true, ["verify"]);
  } catch (err) {
    throw new SvidMalformedError("public key is not ECDSA P-256", { cause: err });
  }
  return {
    svid: {
      id,
      publicKey,
      notBefore: fields.notBefore,
      notAfter: fields.notAfter,
      fingerprint: sha256Hex(der),
      role: nameAttribute(fields.subject, OID_OU),
    },
    validFromMs: Math.max(fields.notBefore.getTime(), issuer.fields.notBefore.getTime()),
    validUntilMs: Math.min(fields.notAfter.getTime(), issuer.fields.notAfter.getTime()),
  };
}

function checkIssuedByBundle(
  cert: X509Certificate,
  fields: CertificateFields,
  anchors: readonly TrustAnchor[],
  nowMs: number,
): TrustAnchor {
  const authorityKeyId = fields.authorityKeyId;
  const candidates = anchors.filter(
    (a) =>
      sameName(a.fields.subject, fields.issuer) &&
      (authorityKeyId === undefined ||
        a.fields.subjectKeyId === undefined ||
        a.fields.subjectKeyId === authorityKeyId),
  );
  if (candidates.length === 0)
    throw new SvidUntrustedError(`issuer "${fields.issuer.text}" is not in the trust bundle`);
  for (const anchor of candidates) {
    if (nowMs < anchor.fields.notBefore.getTime() || nowMs > anchor.fields.notAfter.getTime()) continue;
    if (!anchor.fields.isCa) continue;
    // RFC 5280 §4.2.1.3: a CA whose key usage is stated must be allowed to sign certificates.
    const ku = anchor.fields.keyUsage;
    if (ku !== undefined && (ku & KeyUsage.keyCertSign) === 0) continue;
    if (signedBy(cert, anchor.publicKey)) return anchor;
  }
  throw new SvidUntrustedError(
    `signature does not verify against any valid CA named "${fields.issuer.text}"`,
  );
}

/** The certificate's signature checks out under `key` (OpenSSL X509_verify); a key of another type is a no. */
function signedBy(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.verify(key);
  } catch {
    return false;
  }
}

function toMs(now: Date | number): number {
  return typeof now === "number" ? now : now.getTime();
}

/**
 * Verifies a leaf X.509-SVID (DER) against a bundle at time `now`; returns its SPIFFE ID
 * or throws a SvidVerifyError subclass. `trustDomain` defaults to accepting any.
 */
export async function verifySvidChain(
  certDer: Uint8Array,
  bundle: TrustBundleInput,
  now: Date | number,
  trustDomain?: string,
): Promise<SpiffeId> {
  const verified = await verifyAgainst(
    new Uint8Array(certDer),
    await prepareAnchors(bundle),
    trustDomain,
    toMs(now),
  );
  return verified.svid.id;
}

export interface SvidVerifierOptions {
  bundle: TrustBundleInput;
  trustDomain: string;
  /** Milliseconds since the epoch; injected so tests can move time. */
  now?: () => number;
  /** Bound on cached certificates; expired ones go first, then the oldest. */
  maxCacheEntries?: number;
}

export interface SvidVerifierStats {
  hits: number;
  misses: number;
  rejected: number;
  cached: number;
}

/**
 * Verifies SVIDs once and caches the good ones by fingerprint until notAfter.
 * The time window is still checked on every hit, so an entry never outlives its cert.
 */
export class SvidVerifier {
  readonly trustDomain: string;
  private readonly now: () => number;
  private readonly maxEntries: number;
  private anchors: Promise<TrustAnchor[]>;
  private readonly cache = new Map<string, Verification>();
  private readonly inflight = new Map<string, Promise<VerifiedSvid>>();
  private generation = 0;
  private hits = 0;
  private misses = 0;
  private rejected = 0;

  constructor(opts: SvidVerifierOptions) {
    this.trustDomain = opts.trustDomain;
    this.now = opts.now ?? Date.now;
    this.maxEntries = opts.maxCacheEntries ?? 10_000;
    this.anchors = prepareAnchors(opts.bundle);
    // The rejection surfaces on the first verify(); this only keeps it from being "unhandled".
    this.anchors.catch(() => undefined);
  }

  /** Replaces the trust bundle (CA rotation) and forgets everything verified against the old one. */
  setBundle(bundle: TrustBundleInput): void {
    this.anchors = prepareAnchors(bundle);
    this.anchors.catch(() => undefined);
    this.cache.clear();
    this.inflight.clear();
    this.generation++;
  }

  async verify(input: Uint8Array): Promise<VerifiedSvid> {
    const fp = sha256Hex(input);
    const nowMs = this.now();
    const hit = this.cache.get(fp);
    if (hit) {
      // The CA's window too: a leaf outliving its CA must not stay trusted from the cache.
      if (nowMs <= hit.validUntilMs && nowMs >= hit.validFromMs) {
        this.hits++;
        return hit.svid;
      }
      this.cache.delete(fp);
    }
    this.misses++;
    const pending = this.inflight.get(fp);
    if (pending) return pending;
    // A private copy, taken in the same synchronous run as the hash: the caller's
    // buffer could change before parsing (an await later). Cache hits need none.
    const der = new Uint8Array(input);
    const generation = this.generation;
    const work = (async () => {
      try {
        const verified = await verifyAgainst(der, await this.anchors, this.trustDomain, nowMs);
        if (generation === this.generation) this.remember(fp, verified, nowMs);
        return verified.svid;
      } catch (err) {
        this.rejected++;
        throw err;
      } finally {
        this.inflight.delete(fp);
      }
    })();
    this.inflight.set(fp, work);
    return work;
  }

  stats(): SvidVerifierStats {
    return { hits: this.hits, misses: this.misses, rejected: this.rejected, cached: this.cache.size };
  }

  private remember(fp: string, verified: Verification, nowMs: number): void {
    if (this.cache.size >= this.maxEntries) {
      for (const [key, v] of this.cache) if (v.validUntilMs < nowMs) this.cache.delete(key);
    }
    while (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next();
      if (oldest.done) break;
      this.cache.delete(oldest.value);
    }
    this.cache.set(fp, verified);
  }
}
