// The protobuf wire format (protobuf.dev/programming-guides/encoding) of the
// X.509 messages of workload.proto, by hand: a Workload API client needs five
// small messages, and protobufjs with its loader costs the watchdog sidecar
// ~3 MB. The shapes are what @grpc/proto-loader hands out (keepCase, defaults
// filled in), so the server (which keeps proto-loader) and the client agree.
// Decoding rejects malformed input (truncated varints or lengths, wrong wire
// types for known fields) with WorkloadApiCodecError and skips unknown fields.

/** Metadata every Workload API call must carry (SPIFFE Workload Endpoint §"Transport"). */
export const SECURITY_HEADER = "workload.spiffe.io";
export const SECURITY_HEADER_VALUE = "true";

/** gRPC method paths: workload.proto has no package, so the service is plain SpiffeWorkloadAPI. */
export const FETCH_X509_SVID_PATH = "/SpiffeWorkloadAPI/FetchX509SVID";
export const FETCH_X509_BUNDLES_PATH = "/SpiffeWorkloadAPI/FetchX509Bundles";

export interface X509SvidRequestMsg {
  readonly [key: string]: never;
}
export interface X509SvidMsg {
  spiffe_id: string;
  x509_svid: Uint8Array;
  x509_svid_key: Uint8Array;
  bundle: Uint8Array;
  hint: string;
}
export interface X509SvidResponseMsg {
  svids: X509SvidMsg[];
  crl: Uint8Array[];
  federated_bundles: Record<string, Uint8Array>;
}
export interface X509BundlesResponseMsg {
  crl: Uint8Array[];
  bundles: Record<string, Uint8Array>;
}

export class WorkloadApiCodecError extends Error {
  override name = "WorkloadApiCodecError";
  constructor(message: string) {
    super(`identity: workload api: protobuf: ${message}`);
  }
}

const WIRE = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

// ------------------------------------------------------------- decoding ---

/** A cursor over one message's bytes. */
class Reader {
  private at = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {}

  get done(): boolean {
    return this.at >= this.bytes.length;
  }

  /** A varint of at most 10 bytes; values past 2^53 are refused (no field here needs them). */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.bytes[this.at];
      if (b === undefined)
        throw new WorkloadApiCodecError(`${this.what}: truncated varint at byte ${this.at}`);
      this.at++;
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (value > Number.MAX_SAFE_INTEGER)
          throw new WorkloadApiCodecError(`${this.what}: varint too large at byte ${this.at - 1}`);
        return value;
      }
      scale *= 128;
    }
    throw new WorkloadApiCodecError(`${this.what}: varint longer than 10 bytes at byte ${this.at}`);
  }

  /** Field number and wire type of the next field. */
  tag(): { field: number; wire: number } {
    const at = this.at;
    const key = this.varint();
    const field = Math.floor(key / 8);
    if (field === 0 || field > 0x1fffffff)
      throw new WorkloadApiCodecError(`${this.what}: invalid field number ${field} at byte ${at}`);
    return { field, wire: key % 8 };
  }

  /** A length-delimited payload (a view into the input). */
  bytesField(): Uint8Array {
    const at = this.at;
    const length = this.varint();
    if (length > this.bytes.length - this.at)
      throw new WorkloadApiCodecError(
        `${this.what}: length ${length} at byte ${at} runs past the end (${this.bytes.length - this.at} left)`,
      );
    const out = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  /** Steps over a varint without its value: an unknown int64/uint64 field may use all 64 bits. */
  private skipVarint(): void {
    for (let i = 0; i < 10; i++) {
      const b = this.bytes[this.at];
      if (b === undefined)
        throw new WorkloadApiCodecError(`${this.what}: truncated varint at byte ${this.at}`);
      this.at++;
      if ((b & 0x80) === 0) return;
    }
    throw new WorkloadApiCodecError(`${this.what}: varint longer than 10 bytes at byte ${this.at}`);
  }

  skip(wire: number, field: number): void {
    switch (wire) {
      case WIRE.VARINT:
        this.skipVarint();
        return;
      case WIRE.I64:
        this.advance(8, field);
        return;
      case WIRE.LEN:
        this.bytesField();
        return;
      case WIRE.I32:
        this.advance(4, field);
        return;
      default:
        // Groups are proto2-only and deprecated; nothing in proto3 sends them.
        throw new WorkloadApiCodecError(`${this.what}: unsupported wire type ${wire} for field ${field}`);
    }
  }

  private advance(n: number, field: number): void {
    if (n > this.bytes.length - this.at)
      throw new WorkloadApiCodecError(`${this.what}: field ${field} is truncated at byte ${this.at}`);
    this.at += n;
  }
}

function expectLen(wire: number, what: string, field: string): void {
  if (wire !== WIRE.LEN)
    throw new WorkloadApiCodecError(`${what}.${field}: wire type ${wire}, expected 2 (length-delimited)`);
}

// ignoreBOM keeps a leading U+FEFF in the string (as protobufjs does) instead of silently dropping it.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function text(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new WorkloadApiCodecError(`${what} is not valid UTF-8`);
  }
}

/** A copy, so a decoded message does not pin the whole gRPC frame. */
function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/** map<string, bytes> entries: a message of key = 1, value = 2; missing parts default to empty. */
function decodeMapEntry(bytes: Uint8Array, what: string): [string, Uint8Array] {
  const r = new Reader(bytes, what);
  let key = "";
  let value: Uint8Array = new Uint8Array(0);
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) {
      expectLen(wire, what, "key");
      key = text(r.bytesField(), `${what}.key`);
    } else if (field === 2) {
      expectLen(wire, what, "value");
      value = copy(r.bytesField());
    } else r.skip(wire, field);
  }
  return [key, value];
}

/** An empty map without a prototype: a key of "__proto__" is just a key. */
function emptyMap(): Record<string, Uint8Array> {
  return Object.create(null) as Record<string, Uint8Array>;
}

export function decodeX509Svid(bytes: Uint8Array, what = "X509SVID"): X509SvidMsg {
  const r = new Reader(bytes, what);
  const m: X509SvidMsg = {
    spiffe_id: "",
    x509_svid: new Uint8Array(0),
    x509_svid_key: new Uint8Array(0),
    bundle: new Uint8Array(0),
    hint: "",
  };
  while (!r.done) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1:
        expectLen(wire, what, "spiffe_id");
        m.spiffe_id = text(r.bytesField(), `${what}.spiffe_id`);
        break;
      case 2:
        expectLen(wire, what, "x509_svid");
        m.x509_svid = copy(r.bytesField());
        break;
      case 3:
        expectLen(wire, what, "x509_svid_key");
        m.x509_svid_key = copy(r.bytesField());
        break;
      case 4:
        expectLen(wire, what, "bundle");
        m.bundle = copy(r.bytesField());
        break;
      case 5:
        expectLen(wire, what, "hint");
        m.hint = text(r.bytesField(), `${what}.hint`);
        break;
      default:
        r.skip(wire, field);
    }
  }
  return m;
}

export function decodeX509SvidResponse(bytes: Uint8Array): X509SvidResponseMsg {
  const what = "X509SVIDResponse";
  const r = new Reader(bytes, what);
  const m: X509SvidResponseMsg = { svids: [], crl: [], federated_bundles: emptyMap() };
  while (!r.done) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1:
        expectLen(wire, what, "svids");
        m.svids.push(decodeX509Svid(r.bytesField(), `${what}.svids[${m.svids.length}]`));
        break;
      case 2:
        expectLen(wire, what, "crl");
        m.crl.push(copy(r.bytesField()));
        break;
      case 3: {
        expectLen(wire, what, "federated_bundles");
        const [k, v] = decodeMapEntry(r.bytesField(), `${what}.federated_bundles`);
        m.federated_bundles[k] = v;
        break;
      }
      default:
        r.skip(wire, field);
    }
  }
  return m;
}

export function decodeX509BundlesResponse(bytes: Uint8Array): X509BundlesResponseMsg {
  const what = "X509BundlesResponse";
  const r = new Reader(bytes, what);
  const m: X509BundlesResponseMsg = { crl: [], bundles: emptyMap() };
  while (!r.done) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1:
        expectLen(wire, what, "crl");
        m.crl.push(copy(r.bytesField()));
        break;
      case 2: {
        expectLen(wire, what, "bundles");
        const [k, v] = decodeMapEntry(r.bytesField(), `${what}.bundles`);
        m.bundles[k] = v;
        break;
      }
      default:
        r.skip(wire, field);
    }
  }
  return m;
}

// ------------------------------------------------------------- encoding ---

/** Appends fields; proto3 leaves out empty strings and bytes of singular fields. */
class Writer {
  private readonly parts: Uint8Array[] = [];

  private varint(n: number): void {
    const out: number[] = [];
    let v = n;
    while (v >= 0x80) {
      out.push((v % 128) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(v);
    this.parts.push(Uint8Array.from(out));
  }

  /** A length-delimited field, written even when empty (repeated and map entries need that). */
  len(field: number, bytes: Uint8Array): this {
    this.varint(field * 8 + WIRE.LEN);
    this.varint(bytes.length);
    this.parts.push(bytes);
    return this;
  }

  optionalBytes(field: number, bytes: Uint8Array): this {
    return bytes.length === 0 ? this : this.len(field, bytes);
  }

  optionalString(field: number, s: string): this {
    return s === "" ? this : this.len(field, Buffer.from(s, "utf8"));
  }

  finish(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

function encodeMap(w: Writer, field: number, map: Record<string, Uint8Array>): void {
  for (const [k, v] of Object.entries(map)) {
    w.len(field, new Writer().optionalString(1, k).optionalBytes(2, v).finish());
  }
}

/** X509SVIDRequest and X509BundlesRequest have no fields. */
export function encodeEmptyRequest(): Uint8Array {
  return new Uint8Array(0);
}

export function encodeX509Svid(m: X509SvidMsg): Uint8Array {
  return new Writer()
    .optionalString(1, m.spiffe_id)
    .optionalBytes(2, m.x509_svid)
    .optionalBytes(3, m.x509_svid_key)
    .optionalBytes(4, m.bundle)
    .optionalString(5, m.hint)
    .finish();
}

export function encodeX509SvidResponse(m: X509SvidResponseMsg): Uint8Array {
  const w = new Writer();
  for (const s of m.svids) w.len(1, encodeX509Svid(s));
  for (const c of m.crl) w.len(2, c);
  encodeMap(w, 3, m.federated_bundles);
  return w.finish();
}

export function encodeX509BundlesResponse(m: X509BundlesResponseMsg): Uint8Array {
  const w = new Writer();
  for (const c of m.crl) w.len(1, c);
  encodeMap(w, 2, m.bundles);
  return w.finish();
}
