// DER and PEM plumbing for certificate lists. The Workload API carries chains
// and bundles as DER certificates concatenated back to back (no separator), so
// splitting them means reading each ASN.1 SEQUENCE header.
import { x509 } from "./crypto.js";

export class DerError extends Error {
  override name = "DerError";
  constructor(message: string) {
    super(`identity: ${message}`);
  }
}

const SEQUENCE_TAG = 0x30;

/** Splits concatenated DER SEQUENCEs (certificates); throws DerError on truncated or foreign bytes. */
export function splitConcatenatedDer(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] !== SEQUENCE_TAG) throw new DerError(`expected a DER SEQUENCE at byte ${i}`);
    const first = bytes[i + 1];
    if (first === undefined) throw new DerError(`truncated DER length at byte ${i + 1}`);
    let length: number;
    let header: number;
    if (first < 0x80) {
      length = first;
      header = 2;
    } else {
      const lengthBytes = first & 0x7f;
      // 0x80 is BER's indefinite length, never valid DER; 4 bytes is 4 GiB, enough for any certificate.
      if (lengthBytes === 0 || lengthBytes > 4)
        throw new DerError(`unsupported DER length form at byte ${i + 1}`);
      length = 0;
      for (let k = 0; k < lengthBytes; k++) {
        const b = bytes[i + 2 + k];
        if (b === undefined) throw new DerError(`truncated DER length at byte ${i + 2 + k}`);
        length = length * 256 + b;
      }
      header = 2 + lengthBytes;
    }
    const end = i + header + length;
    if (end > bytes.length)
      throw new DerError(`DER element at byte ${i} runs past the end (${end} > ${bytes.length})`);
    out.push(bytes.subarray(i, end));
    i = end;
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

/** All CERTIFICATE blocks of a PEM text, as DER. */
export function pemCertificatesToDer(pem: string): Uint8Array[] {
  return x509.PemConverter.decodeWithHeaders(pem)
    .filter((block) => block.type === "CERTIFICATE")
    .map((block) => new Uint8Array(block.rawData));
}

export function derToPem(der: Uint8Array, label: "CERTIFICATE" | "PRIVATE KEY"): string {
  return x509.PemConverter.encode(toArrayBuffer(der), label);
}

/** A standalone ArrayBuffer copy: WebCrypto and x509 want ArrayBuffer, not a view into a larger one. */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return copy;
}
