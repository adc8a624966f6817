// X.509-SVID verification against a trust bundle (SPIFFE X509-SVID standard §4,
// §5): the leaf is signed by a bundle CA, valid now, not a CA, signs with
// digitalSignature only, and carries exactly one URI SAN naming a workload of
// the expected trust domain. SvidVerifier caches good results by the sha256 of
// the DER until the certificate expires (DESIGN §2: verify once per cert).
import { createHash } from "node:crypto";
import { x509, subtle, EC_ALG } from "./crypto.js";
import type { CryptoKey } from "./crypto.js";
import { pemCertificatesToDer, splitConcatenatedDer, toArrayBuffer } from "./der.js";
import type { SpiffeId } from "./spiffe-id.js";
import { parseSpiffeId, SpiffeIdError } from "./spiffe-id.js";

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

/** CA certificates (x509 objects), a PEM text of them, or concatenated DER as the Workload API carries them. */
export type TrustBundleInput = readonly x509.X509Certificate[] | string | Uint8Array;

interface TrustAnchor {
  readonly cert: x509.X509Certificate;
  readonly subject: string;
  readonly subjectKeyId: string | undefined;
  readonly publicKey: CryptoKey;
}

export function sha256Hex(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

function bundleCertificates(bundle: TrustBundleInput): x509.X509Certificate[] {
  if (typeof bundle === "string")
    return pemCertificatesToDer(bundle).map((d) => new x509.X509Certificate(toArrayBuffer(d)));
  if (bundle instanceof Uint8Array) {
    return splitConcatenatedDer(bundle).map((d) => new x509.X509Certificate(toArrayBuffer(d)));
  }
  return [...bundle];
}

async function prepareAnchors(bundle: TrustBundleInput): Promise<TrustAnchor[]> {
  const certs = bundleCertificates(bundle);
  if (certs.length === 0) throw new SvidVerifyError("untrusted", "the trust bundle is empty");
  return Promise.all(
    certs.map(async (cert) => ({
      cert,
      subject: cert.subject,
      subjectKeyId: cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
      publicKey: await cert.publicKey.export(),
    })),
  );
}

function roleOf(cert: x509.X509Certificate): string | undefined {
  const ou = cert.subjectName.getField("OU");
  return ou[0];
}

async function verifyAgainst(
  der: Uint8Array,
  anchors: readonly TrustAnchor[],
  trustDomain: string | undefined,
  nowMs: number,
): Promise<VerifiedSvid> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(toArrayBuffer(der));
  } catch (err) {
    throw new SvidMalformedError("not a DER X.509 certificate", { cause: err });
  }

  if (nowMs < cert.notBefore.getTime()) {
    throw new SvidNotYetValidError(
      `valid from ${cert.notBefore.toISOString()}, now ${new Date(nowMs).toISOString()}`,
    );
  }
  if (nowMs > cert.notAfter.getTime()) {
    throw new SvidExpiredError(
      `expired at ${cert.notAfter.toISOString()}, now ${new Date(nowMs).toISOString()}`,
    );
  }

  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca) throw new SvidCaLeafError("leaf has CA:true");
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku || (ku.usages & x509.KeyUsageFlags.digitalSignature) === 0) {
    throw new SvidKeyUsageError("leaf lacks the digitalSignature key usage");
  }
  if (ku.usages & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign)) {
    throw new SvidKeyUsageError("leaf may sign certificates or CRLs");
  }

  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = (san?.names.toJSON() ?? []).filter((n) => n.type === "url").map((n) => n.value);
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

  await checkIssuedByBundle(cert, anchors, nowMs);

  let publicKey: CryptoKey;
  try {
    publicKey = await subtle.importKey("spki", cert.publicKey.rawData, EC_ALG, true, ["verify"]);
  } catch (err) {
    throw new SvidMalformedError("public key is not ECDSA P-256", { cause: err });
  }
  return {
    id,
    publicKey,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprint: sha256Hex(der),
    role: roleOf(cert),
  };
}

async function checkIssuedByBundle(
  cert: x509.X509Certificate,
  anchors: readonly TrustAnchor[],
  nowMs: number,
): Promise<void> {
  const authorityKeyId = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  const candidates = anchors.filter(
    (a) =>
      a.subject === cert.issuer &&
      (authorityKeyId === undefined || a.subjectKeyId === undefined || a.subjectKeyId === authorityKeyId),
  );
  if (candidates.length === 0)
    throw new SvidUntrustedError(`issuer "${cert.issuer}" is not in the trust bundle`);
  for (const anchor of candidates) {
    if (nowMs < anchor.cert.notBefore.getTime() || nowMs > anchor.cert.notAfter.getTime()) continue;
    if (!anchor.cert.getExtension(x509.BasicConstraintsExtension)?.ca) continue;
    if (await cert.verify({ publicKey: anchor.publicKey, signatureOnly: true })) return;
  }
  throw new SvidUntrustedError(`signature does not verify against any valid CA named "${cert.issuer}"`);
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
  const verified = await verifyAgainst(certDer, await prepareAnchors(bundle), trustDomain, toMs(now));
  return verified.id;
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
  private readonly cache = new Map<string, VerifiedSvid>();
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

  async verify(der: Uint8Array): Promise<VerifiedSvid> {
    const fp = sha256Hex(der);
    const nowMs = this.now();
    const hit = this.cache.get(fp);
    if (hit) {
      if (nowMs <= hit.notAfter.getTime() && nowMs >= hit.notBefore.getTime()) {
        this.hits++;
        return hit;
      }
      this.cache.delete(fp);
    }
    this.misses++;
    const pending = this.inflight.get(fp);
    if (pending) return pending;
    const generation = this.generation;
    const work = (async () => {
      try {
        const verified = await verifyAgainst(der, await this.anchors, this.trustDomain, nowMs);
        if (generation === this.generation) this.remember(fp, verified, nowMs);
        return verified;
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

  private remember(fp: string, verified: VerifiedSvid, nowMs: number): void {
    if (this.cache.size >= this.maxEntries) {
      for (const [key, v] of this.cache) if (v.notAfter.getTime() < nowMs) this.cache.delete(key);
    }
    while (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next();
      if (oldest.done) break;
      this.cache.delete(oldest.value);
    }
    this.cache.set(fp, verified);
  }
}
