// Server-streaming gRPC calls over HTTP/2 on a unix socket, with node:http2
// alone (grpc/grpc doc/PROTOCOL-HTTP2.md): a POST with the length-prefixed
// request, length-prefixed messages back, the status in the trailers. That is
// all a Workload API client needs; @grpc/grpc-js (~0.7 MB of source, ~3 MB of
// RSS) stays with the server and the tests. Failures are GrpcStatusError with
// the numeric gRPC status `code`, as grpc-js reports them.
import { connect as netConnect } from "node:net";
import {
  connect as http2Connect,
  constants as h2,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
} from "node:http2";

/** gRPC status codes (grpc/grpc doc/statuscodes.md); the same numbers as grpc-js's `status`. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export class GrpcStatusError extends Error {
  override name = "GrpcStatusError";
  constructor(
    /** The gRPC status code (GrpcStatus). */
    readonly code: number,
    /** The server's grpc-message, or what went wrong locally. */
    readonly details: string,
    options?: { cause?: unknown },
  ) {
    super(`identity: grpc: ${code} ${statusName(code)}: ${details}`, options);
  }
}

function statusName(code: number): string {
  return Object.entries(GrpcStatus).find(([, v]) => v === code)?.[0] ?? "UNKNOWN";
}

/** grpc-js's default receive limit: a bigger message is refused, not buffered. */
export const MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024;

/** RST_STREAM codes to gRPC statuses, as PROTOCOL-HTTP2.md maps them. */
function statusOfReset(rstCode: number): number {
  switch (rstCode) {
    case h2.NGHTTP2_REFUSED_STREAM:
      return GrpcStatus.UNAVAILABLE;
    case h2.NGHTTP2_CANCEL:
      return GrpcStatus.CANCELLED;
    case h2.NGHTTP2_ENHANCE_YOUR_CALM:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case h2.NGHTTP2_INADEQUATE_SECURITY:
      return GrpcStatus.PERMISSION_DENIED;
    default:
      return GrpcStatus.INTERNAL;
  }
}

/** HTTP statuses of a non-gRPC answer to gRPC statuses, as PROTOCOL-HTTP2.md maps them. */
function statusOfHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md "Responses"). */
function decodeGrpcMessage(v: string | string[] | undefined): string {
  const s = Array.isArray(v) ? v.join(",") : (v ?? "");
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Reassembles length-prefixed messages from DATA chunks that may split or join them. */
export class GrpcFrameReader {
  private buffered: Buffer[] = [];
  private size = 0;
  /** Length of the message being gathered, once its prefix has been read. */
  private expected: number | undefined;
  /** After a bad prefix the byte stream has no message boundaries left: every later push fails too. */
  private failure: GrpcStatusError | undefined;

  constructor(private readonly maxMessageBytes = MAX_RECEIVE_MESSAGE_BYTES) {}

  /** The messages completed by `chunk`; throws GrpcStatusError on compression or an oversized frame. */
  push(chunk: Buffer): Buffer[] {
    if (this.failure !== undefined) throw this.failure;
    this.buffered.push(chunk);
    this.size += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.expected === undefined) {
        if (this.size < 5) return out;
        const head = this.flatten();
        const flag = head[0]!;
        const length = head.readUInt32BE(1);
        // We never send grpc-accept-encoding, so a compressed message is a broken server.
        if (flag !== 0)
          this.fail(GrpcStatus.INTERNAL, `compressed message (flag ${flag}) was not negotiated`);
        if (length > this.maxMessageBytes)
          this.fail(
            GrpcStatus.RESOURCE_EXHAUSTED,
            `message of ${length} bytes exceeds the limit of ${this.maxMessageBytes}`,
          );
        this.expected = length;
      }
      // Joining chunks only once the whole message is here keeps a large message linear, not quadratic.
      if (this.size < 5 + this.expected) return out;
      const all = this.flatten();
      out.push(all.subarray(5, 5 + this.expected));
      const rest = all.subarray(5 + this.expected);
      this.buffered = rest.length > 0 ? [rest] : [];
      this.size = rest.length;
      this.expected = undefined;
    }
  }

  private flatten(): Buffer {
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    this.buffered = [all];
    return all;
  }

  private fail(code: number, details: string): never {
    this.failure = new GrpcStatusError(code, details);
    this.buffered = [];
    throw this.failure;
  }

  /** Bytes of an unfinished message (non-zero at the end of a stream means it was cut). */
  get pending(): number {
    return this.size;
  }
}

/** One length-prefixed, uncompressed message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** A gRPC channel to a unix socket: one HTTP/2 connection, opened on first use and again after it closes. */
export class UnixGrpcChannel {
  private session: ClientHttp2Session | undefined;
  private closed = false;
  /** Open calls: the connection keeps the process alive only while there are some (as grpc-js's does). */
  private active = 0;

  constructor(private readonly socketPath: string) {}

  /**
   * Messages of a server-streaming call, in order, until the server ends it with
   * OK; any other status, a reset or a lost connection throws GrpcStatusError.
   * Aborting `signal` cancels the call (it then throws GrpcStatusError CANCELLED).
   */
  async *serverStream(
    path: string,
    request: Uint8Array,
    metadata: Readonly<Record<string, string>>,
    signal: AbortSignal,
  ): AsyncGenerator<Buffer> {
    if (this.closed) throw new GrpcStatusError(GrpcStatus.UNAVAILABLE, "channel closed");
    const call = new CallState();
    const onAbort = () =>
      call.fail(new GrpcStatusError(GrpcStatus.CANCELLED, "cancelled by the caller"), true);
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    let stream: ClientHttp2Stream | undefined;
    try {
      if (!call.done) {
        stream = this.open(path, metadata, call);
        stream.end(grpcFrame(request));
      }
      for (;;) {
        const next = await call.next();
        if (next === undefined) return;
        yield next;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      if (stream !== undefined && !stream.closed) stream.close(h2.NGHTTP2_CANCEL);
    }
  }

  close(): void {
    this.closed = true;
    this.session?.close();
    this.session = undefined;
  }

  private connection(): ClientHttp2Session {
    if (this.session !== undefined && !this.session.closed && !this.session.destroyed) return this.session;
    const session = http2Connect("http://localhost", {
      createConnection: () => netConnect(this.socketPath),
    });
    // Errors reach each stream too (and fail its call); this only keeps them from being uncaught.
    session.on("error", () => undefined);
    session.once("close", () => {
      if (this.session === session) this.session = undefined;
    });
    session.unref();
    this.session = session;
    return session;
  }

  private open(path: string, metadata: Readonly<Record<string, string>>, call: CallState): ClientHttp2Stream {
    const session = this.connection();
    if (this.active++ === 0) session.ref();
    const stream = session.request({
      [h2.HTTP2_HEADER_METHOD]: "POST",
      [h2.HTTP2_HEADER_PATH]: path,
      [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
      [h2.HTTP2_HEADER_TE]: "trailers",
      ...metadata,
    });
    const frames = new GrpcFrameReader();
    let status: number | undefined;
    let message = "";
    const takeStatus = (headers: IncomingHttpHeaders) => {
      const raw = headers["grpc-status"];
      if (raw === undefined) return;
      const text = Array.isArray(raw) ? raw[0] : raw;
      // Digits only: Number("") is 0, and an empty grpc-status must not read as OK.
      const code = text !== undefined && /^\d{1,2}$/.test(text) ? Number(text) : -1;
      status = code >= 0 && code <= 16 ? code : GrpcStatus.UNKNOWN;
      message = decodeGrpcMessage(headers["grpc-message"]);
    };
    stream.on("response", (headers) => {
      const httpStatus = Number(headers[h2.HTTP2_HEADER_STATUS]);
      if (httpStatus !== 200) {
        call.fail(new GrpcStatusError(statusOfHttp(httpStatus), `HTTP status ${httpStatus}`));
        return;
      }
      const type = headers[h2.HTTP2_HEADER_CONTENT_TYPE];
      if (typeof type !== "string" || !type.startsWith("application/grpc")) {
        call.fail(new GrpcStatusError(GrpcStatus.UNKNOWN, `content-type ${String(type)} is not gRPC`));
        return;
      }
      takeStatus(headers); // a trailers-only response carries the status here
    });
    stream.on("data", (chunk: Buffer) => {
      try {
        for (const m of frames.push(chunk)) call.push(m);
      } catch (err) {
        call.fail(err);
      }
    });
    stream.on("trailers", takeStatus);
    stream.on("error", (err: Error) => {
      call.fail(new GrpcStatusError(GrpcStatus.UNAVAILABLE, err.message, { cause: err }));
    });
    stream.on("close", () => {
      if (--this.active === 0 && !session.destroyed) session.unref();
      if (status === undefined) {
        call.fail(
          stream.rstCode !== undefined && stream.rstCode !== h2.NGHTTP2_NO_ERROR
            ? new GrpcStatusError(
                statusOfReset(stream.rstCode),
                `stream reset (HTTP/2 code ${stream.rstCode})`,
              )
            : new GrpcStatusError(GrpcStatus.UNAVAILABLE, "stream closed without a gRPC status"),
        );
      } else if (frames.pending > 0) {
        call.fail(new GrpcStatusError(GrpcStatus.INTERNAL, "stream ended inside a message"));
      } else if (status !== GrpcStatus.OK) {
        call.fail(new GrpcStatusError(status, message));
      } else {
        call.end();
      }
    });
    return stream;
  }
}

/** The messages of one call as an async queue; the first failure or end wins. */
class CallState {
  private readonly queue: Buffer[] = [];
  private failure: unknown;
  private finished = false;
  private wake: (() => void) | undefined;

  get done(): boolean {
    return this.finished;
  }

  push(m: Buffer): void {
    if (this.finished) return;
    this.queue.push(m);
    this.notify();
  }

  /** Messages already received are still handed out first, unless `drop` (a cancel). */
  fail(err: unknown, drop = false): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = err;
    if (drop) this.queue.length = 0;
    this.notify();
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.notify();
  }

  /** The next message, undefined at a clean end; throws the failure. */
  async next(): Promise<Buffer | undefined> {
    for (;;) {
      const m = this.queue.shift();
      if (m !== undefined) return m;
      if (this.finished) {
        if (this.failure !== undefined) throw this.failure;
        return undefined;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
