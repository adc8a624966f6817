// The fields of an X.509 certificate (RFC 5280 §4.1) that SVID checks need and
// Node's crypto.X509Certificate does not expose (key usage bits, basic
// constraints, URI SANs, key identifiers, parsed names), read straight from
// the DER. Signatures are left to Node (X509Certificate.verify): this reads,
// it does not trust. No certificate library, so the watchdog sidecar stays small.
import { DerError, readDerChildren, readDerElement, type DerElement } from "./der.js";

export class CertificateFormatError extends Error {
  override name = "CertificateFormatError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`identity: certificate: ${message}`, options);
  }
}

/** KeyUsage bits as flags (bit 0 of the BIT STRING is 1, bit 5 is 32), as @peculiar/x509 numbers them. */
export const KeyUsage = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
  encipherOnly: 128,
  decipherOnly: 256,
} as const;

export interface NameAttribute {
  /** Dotted OID, e.g. "2.5.4.11" for OU. */
  readonly oid: string;
  readonly value: string;
}

export interface DistinguishedName {
  /** Relative distinguished names in DER order, each a set of attributes. */
  readonly rdns: readonly (readonly NameAttribute[])[];
  /** "CN=Beemesh CA, O=beemesh": for messages and for comparing names by value. */
  readonly text: string;
}

export interface CertificateFields {
  readonly issuer: DistinguishedName;
  readonly subject: DistinguishedName;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The SubjectPublicKeyInfo element, DER (what crypto.createPublicKey and subtle.importKey("spki") take). */
  readonly spki: Uint8Array;
  /** basicConstraints cA; false when the extension is absent. */
  readonly isCa: boolean;
  /** KeyUsage flags (see KeyUsage), undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  /** uniformResourceIdentifier entries of the subjectAltName, in order. */
  readonly uriSans: readonly string[];
  /** Hex keyIdentifier of the subjectKeyIdentifier extension. */
  readonly subjectKeyId: string | undefined;
  /** Hex keyIdentifier of the authorityKeyIdentifier extension. */
  readonly authorityKeyId: string | undefined;
  /** Dotted OIDs of the extensions marked critical, so a verifier can refuse the ones it does not handle. */
  readonly criticalExtensions: readonly string[];
  /** Dotted OID of the signatureAlgorithm (equal to the one inside tbsCertificate). */
  readonly signatureAlgorithm: string;
}

const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  VISIBLE_STRING: 0x1a,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
  VERSION: 0xa0, // [0] EXPLICIT
  EXTENSIONS: 0xa3, // [3] EXPLICIT
  SAN_URI: 0x86, // GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String
  KEY_ID: 0x80, // AuthorityKeyIdentifier keyIdentifier [0] IMPLICIT OCTET STRING
} as const;

/** Extension OIDs (RFC 5280 §4.2.1); extKeyUsage is not read here but verifiers may list it as known. */
export const EXTENSION_OID = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
} as const;
const EXT = EXTENSION_OID;

/** Short names for the DN attributes SVIDs use; others print as their OID. */
const ATTRIBUTE_NAMES: Readonly<Record<string, string>> = {
  "2.5.4.3": "CN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "0.9.2342.19200300.100.1.25": "DC",
};
export const OID_OU = "2.5.4.11";

function want(el: DerElement | undefined, tag: number, what: string): DerElement {
  if (el === undefined) throw new CertificateFormatError(`${what} is missing`);
  if (el.tag !== tag)
    throw new CertificateFormatError(
      `${what}: expected tag 0x${tag.toString(16)}, got 0x${el.tag.toString(16)}`,
    );
  return el;
}

export function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new CertificateFormatError("empty OBJECT IDENTIFIER");
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (v === 0 && b === 0x80) throw new CertificateFormatError("OBJECT IDENTIFIER arc is not minimal");
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw new CertificateFormatError("OBJECT IDENTIFIER arc too large");
    if ((b & 0x80) === 0) {
      arcs.push(v);
      v = 0;
    } else if (i === bytes.length - 1) {
      throw new CertificateFormatError("truncated OBJECT IDENTIFIER");
    }
  }
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join(".");
}

function decodeString(el: DerElement, what: string): string {
  switch (el.tag) {
    case TAG.UTF8_STRING:
      try {
        return new TextDecoder("utf-8", { fatal: true }).decode(el.value);
      } catch (err) {
        throw new CertificateFormatError(`${what} is not UTF-8`, { cause: err });
      }
    case TAG.NUMERIC_STRING:
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.VISIBLE_STRING:
    case TAG.T61_STRING:
      return Buffer.from(el.value).toString("latin1");
    case TAG.BMP_STRING: {
      if (el.value.length % 2 !== 0) throw new CertificateFormatError(`${what} is an odd-length BMPString`);
      let s = "";
      for (let i = 0; i < el.value.length; i += 2)
        s += String.fromCharCode((el.value[i]! << 8) | el.value[i + 1]!);
      return s;
    }
    case TAG.UNIVERSAL_STRING: {
      if (el.value.length % 4 !== 0) throw new CertificateFormatError(`${what} is a bad UniversalString`);
      let s = "";
      for (let i = 0; i < el.value.length; i += 4) {
        const cp =
          ((el.value[i]! << 24) | (el.value[i + 1]! << 16) | (el.value[i + 2]! << 8) | el.value[i + 3]!) >>>
          0;
        if (cp > 0x10ffff) throw new CertificateFormatError(`${what} holds an invalid code point`);
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default:
      throw new CertificateFormatError(`${what}: unsupported string type 0x${el.tag.toString(16)}`);
  }
}

function readName(el: DerElement, what: string): DistinguishedName {
  want(el, TAG.SEQUENCE, what);
  const rdns = readDerChildren(el.value).map((set) => {
    want(set, TAG.SET, `${what} RDN`);
    const attrs = readDerChildren(set.value).map((atv) => {
      const [type, value] = readDerChildren(want(atv, TAG.SEQUENCE, `${what} attribute`).value);
      const oid = decodeOid(want(type, TAG.OID, `${what} attribute type`).value);
      if (value === undefined) throw new CertificateFormatError(`${what} attribute ${oid} has no value`);
      return { oid, value: decodeString(value, `${what} attribute ${oid}`) };
    });
    if (attrs.length === 0) throw new CertificateFormatError(`${what} has an empty RDN`);
    return attrs;
  });
  const text = rdns
    .map((rdn) => rdn.map((a) => `${ATTRIBUTE_NAMES[a.oid] ?? a.oid}=${a.value}`).join("+"))
    .join(", ");
  return { rdns, text };
}

function digits(s: string, from: number, n: number): number {
  const part = s.slice(from, from + n);
  if (!/^\d+$/.test(part) || part.length !== n)
    throw new CertificateFormatError(`bad time ${JSON.stringify(s)}`);
  return Number(part);
}

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as RFC 5280 §4.1.2.5 allows them. */
function readTime(el: DerElement | undefined, what: string): Date {
  if (el === undefined) throw new CertificateFormatError(`${what} is missing`);
  const s = Buffer.from(el.value).toString("latin1");
  let year: number;
  let rest: number;
  if (el.tag === TAG.UTC_TIME) {
    if (s.length !== 13) throw new CertificateFormatError(`${what}: bad UTCTime ${JSON.stringify(s)}`);
    const yy = digits(s, 0, 2);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    rest = 2;
  } else if (el.tag === TAG.GENERALIZED_TIME) {
    if (s.length !== 15)
      throw new CertificateFormatError(`${what}: bad GeneralizedTime ${JSON.stringify(s)}`);
    year = digits(s, 0, 4);
    rest = 4;
  } else {
    throw new CertificateFormatError(`${what} is not a time`);
  }
  if (s[s.length - 1] !== "Z") throw new CertificateFormatError(`${what} is not in UTC`);
  const [mo, d, h, mi, sec] = [0, 2, 4, 6, 8].map((o) => digits(s, rest + o, 2)) as [
    number,
    number,
    number,
    number,
    number,
  ];
  // Date.UTC reads years 0-99 as 1900-1999; setUTCFullYear takes a GeneralizedTime's "0050" as written.
  const back = new Date(Date.UTC(2000, mo - 1, d, h, mi, sec));
  back.setUTCFullYear(year, mo - 1, d);
  if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || sec > 59)
    throw new CertificateFormatError(`${what}: no such time ${JSON.stringify(s)}`);
  return back;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, k) => x === b[k]);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

interface Extension {
  readonly critical: boolean;
  readonly value: Uint8Array;
}

function readExtensions(el: DerElement | undefined): Map<string, Extension> {
  const out = new Map<string, Extension>();
  if (el === undefined) return out;
  const seq = readDerChildren(el.value);
  if (seq.length !== 1) throw new CertificateFormatError("extensions: expected one SEQUENCE");
  for (const ext of readDerChildren(want(seq[0], TAG.SEQUENCE, "extensions").value)) {
    const parts = readDerChildren(want(ext, TAG.SEQUENCE, "extension").value);
    const oid = decodeOid(want(parts[0], TAG.OID, "extension id").value);
    let critical = false;
    let i = 1;
    if (parts[i]?.tag === TAG.BOOLEAN) {
      critical = readBoolean(parts[i]!, `extension ${oid} critical`);
      i++;
    }
    const value = want(parts[i], TAG.OCTET_STRING, `extension ${oid} value`).value;
    if (parts.length !== i + 1) throw new CertificateFormatError(`extension ${oid} has trailing elements`);
    // RFC 5280 §4.2: at most one instance of an extension; two would make "which one" ambiguous.
    if (out.has(oid)) throw new CertificateFormatError(`extension ${oid} appears twice`);
    out.set(oid, { critical, value });
  }
  return out;
}

/** A BOOLEAN is exactly one octet; an empty one must not read as TRUE (undefined !== 0). */
function readBoolean(el: DerElement, what: string): boolean {
  if (el.value.length !== 1)
    throw new CertificateFormatError(`${what}: BOOLEAN of ${el.value.length} octets`);
  return el.value[0] !== 0;
}

function only(value: Uint8Array, tag: number, what: string): DerElement {
  const el = readDerElement(value, 0);
  if (el.end !== value.length) throw new CertificateFormatError(`${what} has trailing bytes`);
  return want(el, tag, what);
}

function keyUsageFlags(value: Uint8Array): number {
  const bits = only(value, TAG.BIT_STRING, "keyUsage").value;
  const unused = bits[0];
  if (unused === undefined || unused > 7) throw new CertificateFormatError("keyUsage: bad BIT STRING");
  let flags = 0;
  const nbits = (bits.length - 1) * 8 - unused;
  for (let i = 0; i < nbits && i < 16; i++) {
    if ((bits[1 + (i >> 3)]! & (0x80 >> (i & 7))) !== 0) flags |= 1 << i;
  }
  return flags;
}

function basicConstraintsCa(value: Uint8Array): boolean {
  const parts = readDerChildren(only(value, TAG.SEQUENCE, "basicConstraints").value);
  const first = parts[0];
  return first !== undefined && first.tag === TAG.BOOLEAN && readBoolean(first, "basicConstraints cA");
}

function uriSans(value: Uint8Array): string[] {
  return readDerChildren(only(value, TAG.SEQUENCE, "subjectAltName").value)
    .filter((n) => n.tag === TAG.SAN_URI)
    .map((n) => Buffer.from(n.value).toString("latin1"));
}

function authorityKeyId(value: Uint8Array): string | undefined {
  const keyId = readDerChildren(only(value, TAG.SEQUENCE, "authorityKeyIdentifier").value).find(
    (p) => p.tag === TAG.KEY_ID,
  );
  return keyId === undefined ? undefined : hex(keyId.value);
}

/** Reads a DER certificate; throws CertificateFormatError when it is not one. */
export function readCertificate(der: Uint8Array): CertificateFields {
  try {
    const cert = readDerElement(der, 0);
    if (cert.end !== der.length) throw new CertificateFormatError("trailing bytes after the certificate");
    const top = readDerChildren(want(cert, TAG.SEQUENCE, "certificate").value);
    if (top.length !== 3) throw new CertificateFormatError(`expected 3 elements, found ${top.length}`);
    const [tbsEl, sigAlg, sig] = top;
    const sigAlgEl = want(sigAlg, TAG.SEQUENCE, "signatureAlgorithm");
    const signatureAlgorithm = decodeOid(
      want(readDerChildren(sigAlgEl.value)[0], TAG.OID, "signatureAlgorithm algorithm").value,
    );
    want(sig, TAG.BIT_STRING, "signatureValue");
    const tbs = readDerChildren(want(tbsEl, TAG.SEQUENCE, "tbsCertificate").value);
    let i = tbs[0]?.tag === TAG.VERSION ? 1 : 0;
    want(tbs[i++], TAG.INTEGER, "serialNumber");
    // RFC 5280 §4.1.1.2: the signed copy of the algorithm must match the outer, unsigned one.
    if (!sameBytes(want(tbs[i++], TAG.SEQUENCE, "signature").raw, sigAlgEl.raw))
      throw new CertificateFormatError("signature algorithm differs inside and outside tbsCertificate");
    const issuer = readName(want(tbs[i++], TAG.SEQUENCE, "issuer"), "issuer");
    const validity = readDerChildren(want(tbs[i++], TAG.SEQUENCE, "validity").value);
    if (validity.length !== 2) throw new CertificateFormatError("validity: expected notBefore and notAfter");
    const subject = readName(want(tbs[i++], TAG.SEQUENCE, "subject"), "subject");
    const spkiEl = want(tbs[i++], TAG.SEQUENCE, "subjectPublicKeyInfo");
    const extEl = tbs.slice(i).find((el) => el.tag === TAG.EXTENSIONS);
    const exts = readExtensions(extEl);
    const ext = (oid: string) => exts.get(oid)?.value;
    const ku = ext(EXT.keyUsage);
    const bc = ext(EXT.basicConstraints);
    const san = ext(EXT.subjectAltName);
    const ski = ext(EXT.subjectKeyIdentifier);
    const aki = ext(EXT.authorityKeyIdentifier);
    return {
      issuer,
      subject,
      notBefore: readTime(validity[0], "notBefore"),
      notAfter: readTime(validity[1], "notAfter"),
      spki: spkiEl.raw,
      isCa: bc !== undefined && basicConstraintsCa(bc),
      keyUsage: ku === undefined ? undefined : keyUsageFlags(ku),
      uriSans: san === undefined ? [] : uriSans(san),
      subjectKeyId:
        ski === undefined ? undefined : hex(only(ski, TAG.OCTET_STRING, "subjectKeyIdentifier").value),
      authorityKeyId: aki === undefined ? undefined : authorityKeyId(aki),
      criticalExtensions: [...exts].filter(([, e]) => e.critical).map(([oid]) => oid),
      signatureAlgorithm,
    };
  } catch (err) {
    if (err instanceof CertificateFormatError) throw err;
    if (err instanceof DerError) throw new CertificateFormatError(err.message, { cause: err });
    throw err;
  }
}

/** The first value of attribute `oid` in a name, e.g. the OU that carries an SVID's role. */
export function nameAttribute(name: DistinguishedName, oid: string): string | undefined {
  for (const rdn of name.rdns) for (const a of rdn) if (a.oid === oid) return a.value;
  return undefined;
}
