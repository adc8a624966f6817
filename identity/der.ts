// DER and PEM plumbing for certificate lists. The Workload API carries chains
// and bundles as DER certificates concatenated back to back (no separator), so
// splitting them means reading each ASN.1 SEQUENCE header. No certificate
// library here: the watchdog sidecar loads this module and must stay small.

export class DerError extends Error {
  override name = "DerError";
  constructor(message: string) {
    super(`identity: ${message}`);
  }
}

const SEQUENCE_TAG = 0x30;

/** One DER element: its tag byte and its content octets, and where it ends in the input. */
export interface DerElement {
  readonly tag: number;
  /** The content octets (a view into the input, not a copy). */
  readonly value: Uint8Array;
  /** The whole element, tag and length included (a view into the input). */
  readonly raw: Uint8Array;
  /** Offset of the byte after this element. */
  readonly end: number;
}

/** Reads the DER element at `at`; throws DerError on truncated, indefinite or multi-byte-tag input. */
export function readDerElement(bytes: Uint8Array, at: number): DerElement {
  const tag = bytes[at];
  if (tag === undefined) throw new DerError(`truncated DER element at byte ${at}`);
  // Tag numbers of 31 and up take more bytes; nothing a certificate needs uses them.
  if ((tag & 0x1f) === 0x1f) throw new DerError(`unsupported multi-byte DER tag at byte ${at}`);
  const first = bytes[at + 1];
  if (first === undefined) throw new DerError(`truncated DER length at byte ${at + 1}`);
  let length: number;
  let header: number;
  if (first < 0x80) {
    length = first;
    header = 2;
  } else {
    const lengthBytes = first & 0x7f;
    // 0x80 is BER's indefinite length, never valid DER; 4 bytes is 4 GiB, enough for any certificate.
    if (lengthBytes === 0 || lengthBytes > 4)
      throw new DerError(`unsupported DER length form at byte ${at + 1}`);
    length = 0;
    for (let k = 0; k < lengthBytes; k++) {
      const b = bytes[at + 2 + k];
      if (b === undefined) throw new DerError(`truncated DER length at byte ${at + 2 + k}`);
      length = length * 256 + b;
    }
    header = 2 + lengthBytes;
  }
  const end = at + header + length;
  if (end > bytes.length)
    throw new DerError(`DER element at byte ${at} runs past the end (${end} > ${bytes.length})`);
  return { tag, value: bytes.subarray(at + header, end), raw: bytes.subarray(at, end), end };
}

/** The elements of a constructed value (a SEQUENCE's or SET's content), in order. */
export function readDerChildren(content: Uint8Array): DerElement[] {
  const out: DerElement[] = [];
  for (let i = 0; i < content.length;) {
    const el = readDerElement(content, i);
    out.push(el);
    i = el.end;
  }
  return out;
}

/** Splits concatenated DER SEQUENCEs (certificates); throws DerError on truncated or foreign bytes. */
export function splitConcatenatedDer(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] !== SEQUENCE_TAG) throw new DerError(`expected a DER SEQUENCE at byte ${i}`);
    const el = readDerElement(bytes, i);
    out.push(el.raw);
    i = el.end;
  }
  return out;
}

export function concatDer(parts: readonly Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One block of a PEM text (RFC 7468): its label (e.g. "CERTIFICATE") and its DER bytes. */
export interface PemBlock {
  readonly label: string;
  readonly der: Uint8Array;
}

const PEM_BLOCK = /-----BEGIN ([^\n-][^\n]*?)-----\n([\s\S]*?)-----END \1-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Every block of a PEM text, in order; text outside blocks is ignored.
 * RFC 1421 headers (Proc-Type: ... then a blank line) are skipped; a body that
 * is not base64 throws DerError rather than being dropped unseen.
 */
export function decodePem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.replace(/\r/g, "").matchAll(PEM_BLOCK)) {
    const label = m[1]!;
    let body = m[2]!;
    const blank = body.indexOf("\n\n");
    if (blank !== -1 && /^[^\n:]+:/.test(body)) body = body.slice(blank + 2);
    const base64 = body.replace(/[ \t\n]+/g, "");
    if (!BASE64_BODY.test(base64) || base64.length % 4 !== 0)
      throw new DerError(`PEM block ${label} is not base64`);
    out.push({ label, der: new Uint8Array(Buffer.from(base64, "base64")) });
  }
  return out;
}

/** All CERTIFICATE blocks of a PEM text, as DER. */
export function pemCertificatesToDer(pem: string): Uint8Array[] {
  return decodePem(pem)
    .filter((block) => block.label === "CERTIFICATE")
    .map((block) => block.der);
}

/** PEM text of one DER value: 64-column base64, "\n" line ends, no final newline. */
export function derToPem(der: Uint8Array, label: "CERTIFICATE" | "PRIVATE KEY"): string {
  const base64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  const lines = [`-----BEGIN ${label}-----`];
  for (let i = 0; i < base64.length; i += 64) lines.push(base64.slice(i, i + 64));
  lines.push(`-----END ${label}-----`);
  return lines.join("\n");
}

/** A standalone ArrayBuffer copy: WebCrypto and x509 want ArrayBuffer, not a view into a larger one. */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return copy;
}
