// The one bus connection every controller uses (STYLE §5): mutual TLS to
// NATS with an SVID, every message signed on the way out and verified on the
// way in, rotation without dropping the connection.
import { connect, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient, type PubAck } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { Registry } from "prom-client";
import type { SvidCredentials } from "../../identity/svid.js";
import { parseSpiffeId } from "../../identity/spiffe-id.js";
import { SvidVerifier } from "../../identity/verify.js";
import { createAuthorizer, type MessageAuthorizer } from "./authz.js";
import {
  EnvelopeSigner,
  EnvelopeVerifier,
  encodeEnvelope,
  DEFAULT_SKEW_MS,
  type Accepted,
  type MessageSpec,
  type RejectReason,
} from "./envelope.js";
import { BusError, BusIdentityError, BusReplyRejectedError } from "./errors.js";
import { busMetrics, type BusMetrics } from "./metrics.js";
import { NonceCache } from "./nonce-cache.js";

/** Where the bus gets its SVID; `onUpdate` (when present) drives rotation. */
export interface SvidSource {
  current(): SvidCredentials;
  onUpdate?(listener: (svid: SvidCredentials) => void): () => void;
}

/** Structurally the controllers' Logger (controllers/common/log.ts). */
export interface BusLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const silentLogger: BusLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

export interface BusOptions {
  servers: string | string[];
  svid: SvidCredentials | SvidSource;
  /** prom-client registry for beemesh_messages_*_total. */
  registry: Registry;
  logger?: BusLogger;
  /** Trust bundle PEM; defaults to the SVID's bundle. */
  bundle?: string;
  /** Defaults to the SVID's own trust domain. */
  trustDomain?: string;
  prefix?: string;
  skewMs?: number;
  nonceCacheSize?: number;
  /** Milliseconds since the epoch, for signing and the skew check. */
  now?: () => number;
  authorize?: MessageAuthorizer;
  /** Connection name shown by the server; defaults to the SPIFFE ID. */
  name?: string;
  /** Keep trying when no server answers at start (controllers may start before NATS). */
  waitOnFirstConnect?: boolean;
  reconnectTimeWaitMs?: number;
  reconnectJitterMs?: number;
  pingIntervalMs?: number;
  connectTimeoutMs?: number;
  /** Rejected messages logged per reason per minute; the rest are only counted. */
  rejectLogsPerMinute?: number;
}

/** A verified message and the transport message it came in (core Msg, or a JetStream JsMsg). */
export type Received<T, M = Msg> = Accepted<T> & { readonly msg: M };

export interface BusSubscription<T> extends AsyncIterable<Received<T>> {
  readonly subject: string;
  unsubscribe(): void;
  drain(): Promise<void>;
}

export interface RequestOptions<T> extends MessageSpec<T> {
  timeoutMs?: number;
  /** Extra check on who answered (e.g. the peer that was asked); false drops the reply as unauthorized. */
  authorizeReply?: (reply: Accepted<T>) => boolean;
}

interface TlsCredentials {
  cert: string;
  key: string;
  ca: string;
}

function isSource(s: SvidCredentials | SvidSource): s is SvidSource {
  return typeof (s as SvidSource).current === "function";
}

export class Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly kvm: Kvm;
  readonly prefix: string;
  private signer: EnvelopeSigner;
  private bundlePem: string;
  private readonly tls: TlsCredentials;
  private readonly verifier: EnvelopeVerifier;
  private readonly svids: SvidVerifier;
  private readonly metrics: BusMetrics;
  private readonly logger: BusLogger;
  private readonly now: () => number;
  private readonly rejectLogBudget: number;
  private readonly rejectLogWindow = new Map<
    RejectReason,
    { start: number; logged: number; suppressed: number }
  >();
  private connected = true;
  private readyWaiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private reconnectWaiters: Array<() => void> = [];
  private reconnects = 0;
  private stopSourceUpdates: (() => void) | undefined;

  private constructor(
    nc: NatsConnection,
    tls: TlsCredentials,
    svid: SvidCredentials,
    svids: SvidVerifier,
    opts: BusOptions,
    now: () => number,
  ) {
    this.nc = nc;
    this.js = jetstream(nc);
    this.kvm = new Kvm(nc);
    this.tls = tls;
    this.prefix = opts.prefix ?? "beemesh";
    this.signer = new EnvelopeSigner(svid);
    this.bundlePem = tls.ca;
    this.svids = svids;
    this.now = now;
    this.logger = opts.logger ?? silentLogger;
    this.metrics = busMetrics(opts.registry);
    this.rejectLogBudget = opts.rejectLogsPerMinute ?? 20;
    this.verifier = new EnvelopeVerifier({
      svids,
      authorize: opts.authorize ?? createAuthorizer({ prefix: this.prefix }),
      nonces: new NonceCache({ windowMs: opts.skewMs ?? DEFAULT_SKEW_MS, maxEntries: opts.nonceCacheSize }),
      now,
      skewMs: opts.skewMs,
    });
    void this.watchStatus();
  }

  /** Connects with mutual TLS as the SVID; reconnects forever with jitter. */
  static async connect(opts: BusOptions): Promise<Bus> {
    const svid = isSource(opts.svid) ? opts.svid.current() : opts.svid;
    if (!svid.keyPem) throw new BusIdentityError(`SVID ${svid.spiffeId} has no private key for TLS`);
    const signerCheck = new EnvelopeSigner(svid);
    const trustDomain = opts.trustDomain ?? parseSpiffeId(svid.spiffeId).trustDomain;
    const now = opts.now ?? Date.now;
    // nats.js keeps a reference to this object and reads it on every (re)connect,
    // so rotate() can swap the credentials in place.
    const tls: TlsCredentials = { cert: svid.certPem, key: svid.keyPem, ca: opts.bundle ?? svid.bundlePem };
    const svids = new SvidVerifier({ bundle: tls.ca, trustDomain, now });
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: opts.servers,
        tls,
        name: opts.name ?? signerCheck.spiffeId,
        maxReconnectAttempts: -1,
        reconnectTimeWait: opts.reconnectTimeWaitMs ?? 1000,
        reconnectJitter: opts.reconnectJitterMs ?? 500,
        reconnectJitterTLS: opts.reconnectJitterMs ?? 500,
        pingInterval: opts.pingIntervalMs ?? 10_000,
        maxPingOut: 3,
        timeout: opts.connectTimeoutMs ?? 10_000,
        waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
      });
    } catch (err) {
      throw new BusError(`cannot connect to ${String(opts.servers)} as ${svid.spiffeId}`, { cause: err });
    }
    const bus = new Bus(nc, tls, svid, svids, opts, now);
    if (isSource(opts.svid) && opts.svid.onUpdate) {
      bus.stopSourceUpdates = opts.svid.onUpdate((next) => {
        bus.rotate(next).catch((err: unknown) => bus.logger.error("svid rotation failed", { err }));
      });
    }
    return bus;
  }

  /** The SPIFFE ID this bus signs as. */
  get spiffeId(): string {
    return this.signer.spiffeId;
  }

  // ----------------------------------------------------------- sending ---

  private envelope(subject: string, type: string, payload: unknown): Uint8Array {
    const data = encodeEnvelope(this.signer.sign(subject, type, payload, this.now()));
    this.metrics.published.inc({ type });
    return data;
  }

  /** Signs and publishes on core NATS (fire and forget; permission errors arrive on nc.status()). */
  publish(subject: string, type: string, payload: unknown): void {
    this.nc.publish(subject, this.envelope(subject, type, payload));
  }

  /** Signs and publishes into a JetStream stream; msgID is the Nats-Msg-Id dedup key (a task id). */
  async publishDurable(
    subject: string,
    type: string,
    payload: unknown,
    opts: { msgID?: string; timeoutMs?: number } = {},
  ): Promise<PubAck> {
    return this.js.publish(subject, this.envelope(subject, type, payload), {
      msgID: opts.msgID,
      timeout: opts.timeoutMs,
    });
  }

  /** Signed request; the reply must verify as reply.type (signed over the inbox subject it came on). */
  async request<T>(
    subject: string,
    type: string,
    payload: unknown,
    reply: RequestOptions<T>,
  ): Promise<Received<T>> {
    const msg = await this.nc.request(subject, this.envelope(subject, type, payload), {
      timeout: reply.timeoutMs ?? 5000,
    });
    const outcome = await this.verifier.verify(msg.subject, msg.data, reply);
    if (!outcome.ok) {
      this.rejected(outcome.reason, outcome.detail, msg.subject, outcome.claimed);
      throw new BusReplyRejectedError(outcome.reason, outcome.detail);
    }
    if (reply.authorizeReply && !reply.authorizeReply(outcome.value)) {
      const detail = `${outcome.value.sender.toString()} may not answer this request`;
      this.rejected("unauthorized", detail, msg.subject, {
        type: outcome.value.type,
        spiffeId: outcome.value.sender.toString(),
      });
      throw new BusReplyRejectedError("unauthorized", detail);
    }
    this.metrics.accepted.inc({ type: outcome.value.type });
    return { ...outcome.value, msg };
  }

  /** Answers a verified request on its reply subject. */
  reply(to: Received<unknown, { reply?: string }>, type: string, payload: unknown): void {
    const replySubject = to.msg.reply;
    if (!replySubject) throw new BusError(`message on ${to.subject} has no reply subject`);
    this.nc.publish(replySubject, this.envelope(replySubject, type, payload));
  }

  // --------------------------------------------------------- receiving ---

  /** Verifies one message; undefined when it was dropped (counted and logged). */
  async verify<T>(subject: string, data: Uint8Array, spec: MessageSpec<T>): Promise<Accepted<T> | undefined> {
    const outcome = await this.verifier.verify(subject, data, spec);
    if (!outcome.ok) {
      this.rejected(outcome.reason, outcome.detail, subject, outcome.claimed);
      return undefined;
    }
    this.metrics.accepted.inc({ type: outcome.value.type });
    return outcome.value;
  }

  /** Verifies a stream of messages (a core subscription, or a JetStream consumer's JsMsg), in order. */
  async *verified<T, M extends { subject: string; data: Uint8Array }>(
    source: AsyncIterable<M>,
    spec: MessageSpec<T>,
    onDropped?: (msg: M) => void,
  ): AsyncGenerator<Received<T, M>> {
    for await (const msg of source) {
      const accepted = await this.verify(msg.subject, msg.data, spec);
      if (accepted) yield { ...accepted, msg };
      else onDropped?.(msg);
    }
  }

  subscribe<T>(subject: string, spec: MessageSpec<T> & { queue?: string }): BusSubscription<T> {
    const sub: Subscription = this.nc.subscribe(subject, spec.queue ? { queue: spec.queue } : {});
    const iterate = () => this.verified(sub, spec);
    return {
      subject,
      [Symbol.asyncIterator]: () => iterate()[Symbol.asyncIterator](),
      unsubscribe: () => sub.unsubscribe(),
      drain: () => sub.drain(),
    };
  }

  private rejected(
    reason: RejectReason,
    detail: string,
    subject: string,
    claimed?: { type?: string; spiffeId?: string },
  ): void {
    this.metrics.rejected.inc({ reason });
    // Bounded logging: a flood of bad messages must not become a flood of log lines.
    const now = this.now();
    let w = this.rejectLogWindow.get(reason);
    if (!w || now - w.start >= 60_000) {
      if (w && w.suppressed > 0)
        this.logger.warn("bus messages rejected (not logged)", { reason, suppressed: w.suppressed });
      w = { start: now, logged: 0, suppressed: 0 };
      this.rejectLogWindow.set(reason, w);
    }
    if (w.logged >= this.rejectLogBudget) {
      w.suppressed++;
      return;
    }
    w.logged++;
    this.logger.warn("bus message rejected", {
      reason,
      detail,
      subject,
      type: claimed?.type,
      claimed_sender: claimed?.spiffeId,
    });
  }

  // ---------------------------------------------------------- rotation ---

  /**
   * Swaps the signing key and the TLS credentials for future (re)connects. The
   * connection, its subscriptions and anything in flight stay as they are;
   * `reconnect` presents the new certificate to the server right away.
   */
  async rotate(svid: SvidCredentials, opts: { reconnect?: boolean } = {}): Promise<void> {
    if (svid.spiffeId !== this.signer.spiffeId) {
      throw new BusIdentityError(
        `rotation must keep the SPIFFE ID (${this.signer.spiffeId}), got ${svid.spiffeId}`,
      );
    }
    if (!svid.keyPem) throw new BusIdentityError(`SVID ${svid.spiffeId} has no private key for TLS`);
    const signer = new EnvelopeSigner(svid);
    this.signer = signer;
    this.tls.cert = svid.certPem;
    this.tls.key = svid.keyPem;
    if (svid.bundlePem && svid.bundlePem !== this.bundlePem) {
      this.tls.ca = svid.bundlePem;
      this.bundlePem = svid.bundlePem;
      this.svids.setBundle(svid.bundlePem);
    }
    this.logger.info("svid rotated", { spiffe_id: svid.spiffeId, not_after: svid.notAfter.toISOString() });
    if (opts.reconnect) await this.nc.reconnect();
  }

  // --------------------------------------------------------- lifecycle ---

  /**
   * Round-trips to the server so everything published before has been
   * processed by it; a flush cut by a reconnect waits for it and tries again.
   */
  async flush(attempts = 5): Promise<void> {
    for (let i = 1; ; i++) {
      await this.ready();
      const reconnectsBefore = this.reconnects;
      try {
        await this.nc.flush();
        return;
      } catch (err) {
        if (this.nc.isClosed() || i >= attempts) throw err;
        // The status event may still be queued behind the failure: wait for the reconnect itself.
        if (this.reconnects === reconnectsBefore)
          await new Promise<void>((resolve) => this.reconnectWaiters.push(resolve));
      }
    }
  }

  isConnected(): boolean {
    return this.connected && !this.nc.isClosed();
  }

  /** Resolves while connected, or at the next reconnect. */
  ready(): Promise<void> {
    if (this.nc.isClosed()) return Promise.reject(new BusError("connection is closed"));
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Resolves when the connection is closed for good (with the error, if one closed it). */
  closed(): Promise<void | Error> {
    return this.nc.closed();
  }

  /** Lets subscriptions finish what they hold, flushes, then closes. */
  async drain(): Promise<void> {
    this.stopSourceUpdates?.();
    if (!this.nc.isClosed() && !this.nc.isDraining()) await this.nc.drain();
  }

  async close(): Promise<void> {
    this.stopSourceUpdates?.();
    if (!this.nc.isClosed()) await this.nc.close();
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      switch (s.type) {
        case "disconnect":
          this.connected = false;
          this.logger.warn("bus disconnected", { server: s.server });
          break;
        case "reconnect": {
          this.connected = true;
          this.reconnects++;
          this.logger.info("bus reconnected", { server: s.server });
          for (const w of this.readyWaiters) w.resolve();
          for (const w of this.reconnectWaiters) w();
          this.readyWaiters = [];
          this.reconnectWaiters = [];
          break;
        }
        case "error":
          this.logger.warn("bus server error", { error: s.error.message });
          break;
        case "slowConsumer":
          this.logger.warn("bus slow consumer", { subject: s.sub.getSubject(), pending: s.pending });
          break;
        default:
          break;
      }
    }
    this.connected = false;
    // Nobody waits forever on a connection that is gone.
    for (const w of this.readyWaiters) w.reject(new BusError("connection is closed"));
    for (const w of this.reconnectWaiters) w();
    this.readyWaiters = [];
    this.reconnectWaiters = [];
  }
}
