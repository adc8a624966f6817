// The trust domain's certificate authority: ECDSA P-256, issuing X.509-SVIDs
// (exactly one URI SAN, role in the Subject DN for NATS verify_and_map).
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, open, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { x509, generateKeyPair, exportPkcs8Pem, importPkcs8Pem, subtle, SIGN_ALG, EC_ALG } from "./crypto.js";
import type { CryptoKey } from "./crypto.js";
import type { SpiffeId } from "./spiffe-id.js";
import type { SvidCredentials } from "./svid.js";
import { parseSpiffeId, spiffeId, DEFAULT_TRUST_DOMAIN } from "./spiffe-id.js";

export const DEFAULT_SVID_TTL_MS = 60 * 60 * 1000;
export const DEFAULT_CA_TTL_MS = 10 * 365 * 24 * 60 * 60 * 1000;
/** Issued certificates start a little in the past so small clock skew does not reject them. */
const BACKDATE_MS = 60 * 1000;

export class CaError extends Error {
  override name = "CaError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`identity: ${message}`, options);
  }
}

export interface CertificateAuthority {
  readonly trustDomain: string;
  readonly cert: x509.X509Certificate;
  readonly certPem: string;
  readonly privateKey: CryptoKey;
}

/** SvidCredentials (svid.ts) plus the parsed leaf, for issuers and tools that inspect it. */
export interface Svid extends SvidCredentials {
  readonly cert: x509.X509Certificate;
}

export interface CreateCaOptions {
  trustDomain?: string;
  now?: Date;
  ttlMs?: number;
  commonName?: string;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive INTEGER
  return b.toString("hex");
}

export async function createCa(opts: CreateCaOptions = {}): Promise<CertificateAuthority> {
  const trustDomain = opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const now = opts.now ?? new Date();
  const keys = await generateKeyPair();
  const tdId = spiffeId(trustDomain).toString();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${opts.commonName ?? "Beemesh CA"}, O=beemesh`,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + (opts.ttlMs ?? DEFAULT_CA_TTL_MS)),
    keys,
    signingAlgorithm: SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: tdId }]),
    ],
  });
  return { trustDomain, cert, certPem: cert.toString("pem"), privateKey: keys.privateKey };
}

export interface IssueSvidOptions {
  id: SpiffeId;
  /** Goes into the Subject DN as OU=<role>,O=beemesh; nats-server maps it to a user. */
  role: string;
  now?: Date;
  ttlMs?: number;
  /** Extra SANs for servers (nats-server, the dispatcher API). */
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Sign this public key (CSR-style issuance) instead of generating a key pair. */
  publicKey?: CryptoKey;
}

export async function issueSvid(ca: CertificateAuthority, opts: IssueSvidOptions): Promise<Svid> {
  if (opts.id.trustDomain !== ca.trustDomain) {
    throw new CaError(`refusing to issue ${opts.id.toString()} outside trust domain ${ca.trustDomain}`);
  }
  if (!/^[a-z0-9][a-z0-9-]*$/.test(opts.role)) throw new CaError(`invalid role ${JSON.stringify(opts.role)}`);
  const now = opts.now ?? new Date();
  const ttl = opts.ttlMs ?? DEFAULT_SVID_TTL_MS;
  const keys = opts.publicKey ? undefined : await generateKeyPair();
  const publicKey = opts.publicKey ?? keys!.publicKey;
  const notAfter = new Date(Math.min(now.getTime() + ttl, ca.cert.notAfter.getTime()));
  const sans: x509.JsonGeneralName[] = [{ type: "url", value: opts.id.toString() }];
  for (const d of opts.dnsNames ?? []) sans.push({ type: "dns", value: d });
  for (const ip of opts.ipAddresses ?? []) sans.push({ type: "ip", value: ip });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `OU=${opts.role}, O=beemesh`,
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter,
    signingKey: ca.privateKey,
    publicKey,
    signingAlgorithm: SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(sans, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  const certPem = cert.toString("pem");
  const keyPem = keys ? await exportPkcs8Pem(keys.privateKey) : "";
  return {
    spiffeId: opts.id.toString(),
    role: opts.role,
    cert,
    certPem,
    certDer: new Uint8Array(cert.rawData),
    keyPem,
    privateKey: keys ? keys.privateKey : (undefined as unknown as CryptoKey),
    chainPem: `${certPem}\n${ca.certPem}\n`,
    bundlePem: ca.certPem,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

/** The single URI SAN of an SVID, or an error naming what is wrong. */
export function uriSanOf(cert: x509.X509Certificate): string {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = (san?.names.toJSON() ?? []).filter((n) => n.type === "url").map((n) => n.value);
  if (uris.length !== 1)
    throw new CaError(`an X.509-SVID must have exactly one URI SAN (found ${uris.length})`);
  return uris[0]!;
}

/**
 * Writes a file so readers see the old or the new content, never a torn one:
 * temp file in the same dir, fsync, rename, then fsync the dir so the rename
 * survives a crash.
 */
async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fh = await open(tmp, "wx", mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode); // open's mode is filtered by the umask
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dirHandle = await open(dirname(path), "r");
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

export const CA_CERT_FILE = "ca.crt";
export const CA_KEY_FILE = "ca.key";

/** Stores the CA in dir (key mode 0600); loads it when it is already there. */
export async function loadOrCreateCa(dir: string, opts: CreateCaOptions = {}): Promise<CertificateAuthority> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    return await loadCa(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const ca = await createCa(opts);
  await writeFileAtomic(join(dir, CA_KEY_FILE), await exportPkcs8Pem(ca.privateKey), 0o600);
  await writeFileAtomic(join(dir, CA_CERT_FILE), ca.certPem, 0o644);
  return ca;
}

export async function loadCa(dir: string): Promise<CertificateAuthority> {
  const certPem = await readFile(join(dir, CA_CERT_FILE), "utf8");
  const keyPem = await readFile(join(dir, CA_KEY_FILE), "utf8");
  const cert = new x509.X509Certificate(certPem);
  const trustDomain = parseSpiffeId(uriSanOf(cert)).trustDomain;
  if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca)
    throw new CaError(`${CA_CERT_FILE} is not a CA certificate`);
  const privateKey = await importPkcs8Pem(keyPem);
  // A key that does not belong to the certificate would issue SVIDs nobody can verify.
  const keyJwk = await subtle.exportKey("jwk", privateKey);
  const certJwk = await subtle.exportKey("jwk", await cert.publicKey.export(EC_ALG, ["verify"]));
  if (keyJwk.x !== certJwk.x || keyJwk.y !== certJwk.y) {
    throw new CaError(`${CA_KEY_FILE} does not match ${CA_CERT_FILE}`);
  }
  return { trustDomain, cert, certPem: cert.toString("pem"), privateKey };
}

/** Writes an SVID's cert chain, key (0600) and bundle atomically, for TLS servers and clients. */
export async function writeSvidFiles(
  dir: string,
  name: string,
  svid: Svid,
): Promise<{ cert: string; key: string; bundle: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const paths = {
    cert: join(dir, `${name}.crt`),
    key: join(dir, `${name}.key`),
    bundle: join(dir, "bundle.crt"),
  };
  await writeFileAtomic(paths.key, svid.keyPem, 0o600);
  await writeFileAtomic(paths.cert, svid.chainPem, 0o644);
  await writeFileAtomic(paths.bundle, svid.bundlePem, 0o644);
  return paths;
}

export { writeFileAtomic, subtle, EC_ALG };
export type { SvidCredentials };
