// The SPIFFE Workload API served by a node agent (DESIGN §5): one gRPC server
// per pod on its own unix socket, mounted into that pod only, so the socket a
// caller reached is what identifies it and each socket serves one identity.
// SVIDs are issued over a key generated here (the private key never leaves
// the node) and rotated at half life; every open FetchX509SVID stream gets the
// new one.
import { chmod, lstat, mkdir, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { Svid } from "../ca.js";
import { uriSanOf } from "../ca.js";
import type { Clock } from "../clock.js";
import { systemClock } from "../clock.js";
import type { CryptoKey } from "../crypto.js";
import { generateKeyPair, subtle } from "../crypto.js";
import { concatDer, pemCertificatesToDer } from "../der.js";
import type { IdentityLog } from "../log.js";
import { silentLog } from "../log.js";
import type { SpiffeId } from "../spiffe-id.js";
import { parseSpiffeId, spiffeId } from "../spiffe-id.js";
import { sha256Hex } from "../verify.js";
import type { X509BundlesResponseMsg, X509SvidResponseMsg } from "./proto.js";
import { SECURITY_HEADER, SECURITY_HEADER_VALUE, workloadApiService } from "./proto.js";

/**
 * Issues an SVID for `id`. The server always passes the public key of a pair it
 * generated; the returned certificate must certify that key.
 */
export type IssueSvidFn = (id: SpiffeId, publicKey?: CryptoKey) => Promise<Svid>;

export class WorkloadApiError extends Error {
  override name = "WorkloadApiError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`identity: workload api: ${message}`, options);
  }
}

/** Never rotate sooner than this, so a clock jump or a tiny TTL cannot spin. */
export const MIN_ROTATION_DELAY_MS = 100;

/** Delay until an SVID issued at issuedAtMs and expiring at notAfterMs reaches half life. */
export function rotationDelayMs(issuedAtMs: number, notAfterMs: number, nowMs: number): number {
  const halfLife = issuedAtMs + (notAfterMs - issuedAtMs) / 2;
  return Math.max(MIN_ROTATION_DELAY_MS, Math.round(halfLife - nowMs));
}

/** Delay before retrying a failed issuance: doubles per failure, capped. */
export function retryDelayMs(failures: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(failures - 1, 20)));
}

export interface WorkloadApiServerOptions {
  issue: IssueSvidFn;
  clock?: Clock;
  log?: IdentityLog;
  /** First retry delay after a failed issuance (doubling up to 60 s). */
  retryBaseMs?: number;
}

interface PodSvidState {
  readonly svidResponse: X509SvidResponseMsg;
  readonly bundlesResponse: X509BundlesResponseMsg;
  readonly bundleFingerprint: string;
  readonly issuedAt: number;
  readonly notAfter: number;
}

type SvidStream = grpc.ServerWritableStream<unknown, X509SvidResponseMsg>;
type BundleStream = grpc.ServerWritableStream<unknown, X509BundlesResponseMsg>;

interface PodEndpoint {
  readonly podKey: string;
  readonly id: SpiffeId;
  readonly socketPath: string;
  readonly svidStreams: Set<SvidStream>;
  readonly bundleStreams: Set<BundleStream>;
  server: grpc.Server | undefined;
  current: PodSvidState | undefined;
  pending: Promise<PodSvidState> | undefined;
  cancelTimer: (() => void) | undefined;
  failures: number;
  closed: boolean;
}

function hasSecurityHeader(md: grpc.Metadata): boolean {
  return md.get(SECURITY_HEADER).some((v) => String(v) === SECURITY_HEADER_VALUE);
}

function refuse(code: grpc.status, details: string): Partial<grpc.StatusObject> {
  return { code, details };
}

const MISSING_HEADER = refuse(grpc.status.INVALID_ARGUMENT, "security header missing from request");
const JWT_UNIMPLEMENTED = refuse(
  grpc.status.UNIMPLEMENTED,
  "the JWT-SVID profile is not served by this endpoint",
);

async function prepareSocketPath(socketPath: string): Promise<void> {
  const dir = dirname(socketPath);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  try {
    const st = await lstat(socketPath);
    if (!st.isSocket()) throw new WorkloadApiError(`${socketPath} exists and is not a socket`);
    await unlink(socketPath); // left behind by a previous run
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/** Serves each pod its own identity on its own socket. */
export class WorkloadApiServer {
  private readonly pods = new Map<string, PodEndpoint>();
  private readonly issue: IssueSvidFn;
  private readonly clock: Clock;
  private readonly log: IdentityLog;
  private readonly retryBaseMs: number;

  constructor(opts: WorkloadApiServerOptions) {
    this.issue = opts.issue;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? silentLog;
    this.retryBaseMs = opts.retryBaseMs ?? 1000;
  }

  podKeys(): string[] {
    return [...this.pods.keys()];
  }

  /** Binds `socketPath` (dir 0700, socket 0600) to serve `id` and starts issuing its first SVID. */
  async addPod(podKey: string, id: SpiffeId | string, socketPath: string): Promise<void> {
    const parsed = typeof id === "string" ? parseSpiffeId(id) : id;
    if (this.pods.has(podKey)) throw new WorkloadApiError(`pod ${podKey} already has a socket`);
    for (const p of this.pods.values()) {
      if (p.socketPath === socketPath)
        throw new WorkloadApiError(`${socketPath} already serves pod ${p.podKey}`);
    }
    const pod: PodEndpoint = {
      podKey,
      id: parsed,
      socketPath,
      svidStreams: new Set(),
      bundleStreams: new Set(),
      server: undefined,
      current: undefined,
      pending: undefined,
      cancelTimer: undefined,
      failures: 0,
      closed: false,
    };
    this.pods.set(podKey, pod); // reserve the key while binding
    try {
      await prepareSocketPath(socketPath);
      const server = new grpc.Server();
      server.addService(workloadApiService().service, this.handlers(pod));
      await new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
          err ? reject(new WorkloadApiError(`cannot bind ${socketPath}`, { cause: err })) : resolve(),
        );
      });
      pod.server = server;
      await chmod(socketPath, 0o600);
      if (pod.closed)
        throw new WorkloadApiError(`pod ${podKey} was removed while its socket was being bound`);
    } catch (err) {
      pod.closed = true;
      pod.server?.forceShutdown();
      if (this.pods.get(podKey) === pod) this.pods.delete(podKey);
      await unlink(socketPath).catch(() => undefined);
      throw err;
    }
    this.refresh(pod).catch(() => undefined); // failures are logged and retried inside
  }

  /** Ends the pod's streams (PermissionDenied: its identity is withdrawn), closes and unlinks its socket. */
  async removePod(podKey: string): Promise<void> {
    const pod = this.pods.get(podKey);
    if (!pod) return;
    this.pods.delete(podKey);
    pod.closed = true;
    pod.cancelTimer?.();
    const withdrawn = refuse(grpc.status.PERMISSION_DENIED, "the pod's identity was withdrawn");
    for (const s of pod.svidStreams) s.emit("error", withdrawn);
    for (const s of pod.bundleStreams) s.emit("error", withdrawn);
    pod.svidStreams.clear();
    pod.bundleStreams.clear();
    const server = pod.server;
    if (server) {
      // Let the statuses above reach the clients, but never wait on a stuck one.
      await new Promise<void>((resolve) => {
        const grace = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(grace);
          resolve();
        });
      });
    }
    await unlink(pod.socketPath).catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pods.keys()].map((k) => this.removePod(k)));
  }

  /** Issues a new SVID for the pod now (e.g. after a CA rotation) and pushes it to its streams. */
  async rotateNow(podKey: string): Promise<void> {
    const pod = this.pods.get(podKey);
    if (!pod) throw new WorkloadApiError(`no pod ${podKey}`);
    await this.refresh(pod);
  }

  private handlers(pod: PodEndpoint): grpc.UntypedServiceImplementation {
    return {
      FetchX509SVID: (call: SvidStream) => {
        if (!hasSecurityHeader(call.metadata)) return void call.emit("error", MISSING_HEADER);
        this.serveStream(pod, call, pod.svidStreams, (s) => s.svidResponse);
      },
      FetchX509Bundles: (call: BundleStream) => {
        if (!hasSecurityHeader(call.metadata)) return void call.emit("error", MISSING_HEADER);
        this.serveStream(pod, call, pod.bundleStreams, (s) => s.bundlesResponse);
      },
      FetchJWTSVID: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        callback(hasSecurityHeader(call.metadata) ? JWT_UNIMPLEMENTED : MISSING_HEADER);
      },
      FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        call.emit("error", hasSecurityHeader(call.metadata) ? JWT_UNIMPLEMENTED : MISSING_HEADER);
      },
      ValidateJWTSVID: (
        call: grpc.ServerUnaryCall<unknown, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        callback(hasSecurityHeader(call.metadata) ? JWT_UNIMPLEMENTED : MISSING_HEADER);
      },
    };
  }

  /** Sends the current message at once (the standard requires it), then every change until the call ends. */
  private serveStream<T>(
    pod: PodEndpoint,
    call: grpc.ServerWritableStream<unknown, T>,
    streams: Set<grpc.ServerWritableStream<unknown, T>>,
    pick: (s: PodSvidState) => T,
  ): void {
    const forget = () => streams.delete(call);
    call.on("cancelled", forget);
    call.on("close", forget);
    call.on("finish", forget);
    this.currentState(pod).then(
      (state) => {
        if (call.cancelled || call.writableEnded || pod.closed) return;
        streams.add(call);
        call.write(pick(state));
      },
      () => {
        if (!call.cancelled && !call.writableEnded) {
          call.emit("error", refuse(grpc.status.UNAVAILABLE, "no SVID could be issued yet; retry"));
        }
      },
    );
  }

  private async currentState(pod: PodEndpoint): Promise<PodSvidState> {
    const cur = pod.current;
    if (cur && this.clock.now() < cur.notAfter) return cur;
    return this.refresh(pod);
  }

  private refresh(pod: PodEndpoint): Promise<PodSvidState> {
    if (pod.pending) return pod.pending;
    const work = this.issueFor(pod).then(
      (state) => {
        pod.pending = undefined;
        if (pod.closed) return state;
        const bundleChanged = pod.current?.bundleFingerprint !== state.bundleFingerprint;
        pod.current = state;
        pod.failures = 0;
        for (const s of pod.svidStreams) s.write(state.svidResponse);
        if (bundleChanged) for (const s of pod.bundleStreams) s.write(state.bundlesResponse);
        this.schedule(pod, rotationDelayMs(state.issuedAt, state.notAfter, this.clock.now()));
        this.log.info("workload api: issued svid", {
          pod: pod.podKey,
          spiffe_id: pod.id.toString(),
          not_after: new Date(state.notAfter).toISOString(),
          streams: pod.svidStreams.size,
        });
        return state;
      },
      (err: unknown) => {
        pod.pending = undefined;
        pod.failures++;
        const delay = retryDelayMs(pod.failures, this.retryBaseMs, 60_000);
        this.log.warn("workload api: svid issuance failed", {
          pod: pod.podKey,
          spiffe_id: pod.id.toString(),
          error: err instanceof Error ? err.message : String(err),
          retry_in_ms: delay,
        });
        if (!pod.closed) this.schedule(pod, delay);
        throw err;
      },
    );
    pod.pending = work;
    return work;
  }

  private schedule(pod: PodEndpoint, delayMs: number): void {
    pod.cancelTimer?.();
    pod.cancelTimer = this.clock.setTimer(() => {
      pod.cancelTimer = undefined;
      if (!pod.closed) this.refresh(pod).catch(() => undefined);
    }, delayMs);
  }

  private async issueFor(pod: PodEndpoint): Promise<PodSvidState> {
    const keys = await generateKeyPair();
    const issuedAt = this.clock.now();
    const svid = await this.issue(pod.id, keys.publicKey);
    // Guards against a wrong issuer wiring: a socket must never carry another pod's identity or key.
    const san = uriSanOf(svid.cert);
    if (san !== pod.id.toString())
      throw new WorkloadApiError(`issuer returned ${san} for ${pod.id.toString()}`);
    const spki = new Uint8Array(await subtle.exportKey("spki", keys.publicKey));
    if (!Buffer.from(svid.cert.publicKey.rawData).equals(spki)) {
      throw new WorkloadApiError("issuer did not certify the key it was given");
    }
    const bundleDer = pemCertificatesToDer(svid.bundlePem);
    if (bundleDer.length === 0) throw new WorkloadApiError("issuer returned an empty bundle");
    const inBundle = new Set(bundleDer.map(sha256Hex));
    // x509_svid is the leaf and any intermediates; roots belong in the bundle only.
    const chain = pemCertificatesToDer(svid.chainPem).filter((d) => !inBundle.has(sha256Hex(d)));
    if (chain.length === 0 || !Buffer.from(chain[0]!).equals(Buffer.from(svid.certDer))) {
      chain.unshift(svid.certDer);
    }
    const keyDer = new Uint8Array(await subtle.exportKey("pkcs8", keys.privateKey));
    const bundle = concatDer(bundleDer);
    const trustDomainId = spiffeId(pod.id.trustDomain).toString();
    return {
      svidResponse: {
        svids: [
          {
            spiffe_id: pod.id.toString(),
            x509_svid: concatDer(chain),
            x509_svid_key: keyDer,
            bundle,
            hint: "",
          },
        ],
        crl: [],
        federated_bundles: {},
      },
      bundlesResponse: { crl: [], bundles: { [trustDomainId]: bundle } },
      bundleFingerprint: sha256Hex(bundle),
      issuedAt,
      notAfter: svid.notAfter.getTime(),
    };
  }
}
