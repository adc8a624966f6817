// Local health of the app container from its pod spec (DESIGN §4): the
// liveness and readiness probes Kubernetes would run — httpGet, tcpSocket,
// exec (grpc is checked as a TCP connect) — run by the sidecar, which shares
// the pod's network. Only single results come out of here: the hysteresis
// (how many failures make "unhealthy") belongs to the replica logic.
import { connect } from "node:net";
import type { Container, Probe } from "../../protocol/index.js";
import type { ControllerClock } from "../common/clock.js";
import { systemClock } from "../common/clock.js";
import type { HealthVerdict, LocalHealth } from "./watchdog.js";

// http, https and child_process are fetched when a probe first needs them, not
// imported: an ESM import of node:http builds its export facade, whose WebSocket
// getter loads undici (about 14 MB of RSS) into every sidecar, probes or not.
const builtin = {
  http: () => process.getBuiltinModule("node:http"),
  https: () => process.getBuiltinModule("node:https"),
  childProcess: () => process.getBuiltinModule("node:child_process"),
};

export class ProbeError extends Error {
  override name = "ProbeError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`watchdog: probe: ${message}`, options);
  }
}

/** Runs a command for an exec probe; resolves with its exit code. */
export type ExecRunner = (
  command: readonly string[],
  opts: { timeoutMs: number; signal: AbortSignal },
) => Promise<number>;

/** Runs the command inside the sidecar's own container (a pod's containers share no process space here). */
export const localExec: ExecRunner = (command, { timeoutMs, signal }) =>
  new Promise((resolve) => {
    const [file, ...args] = command;
    if (file === undefined) {
      resolve(127);
      return;
    }
    builtin.childProcess().execFile(file, args, { timeout: timeoutMs, signal, windowsHide: true }, (err) => {
      if (err === null) resolve(0);
      else resolve(typeof err.code === "number" ? err.code : 1);
    });
  });

export interface ProbeRunnerOptions {
  /** Where the app listens when a probe names no host (the pod's own network). */
  host?: string;
  /** How often the driver asks (default: the probes' periodSeconds, else 1000 ms). */
  periodMs?: number;
  exec?: ExecRunner;
  clock?: ControllerClock;
}

export interface ProbeResult {
  ok: boolean;
  detail: string;
}

function resolvePort(port: number | string, container: Container): number {
  if (typeof port === "number") return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = container.ports?.find((p) => p.name === port);
  if (named === undefined) throw new ProbeError(`container ${container.name} has no port named ${port}`);
  return named.containerPort;
}

function httpProbe(
  probe: NonNullable<Probe["httpGet"]>,
  container: Container,
  host: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let port: number;
    try {
      port = resolvePort(probe.port, container);
    } catch (err) {
      resolve({ ok: false, detail: err instanceof Error ? err.message : String(err) });
      return;
    }
    const headers: Record<string, string> = { "user-agent": "beemesh-watchdog" };
    for (const h of probe.httpHeaders ?? []) headers[h.name] = h.value;
    const https = probe.scheme === "HTTPS";
    const req = (https ? builtin.https() : builtin.http()).request(
      {
        host: probe.host ?? host,
        port,
        path: probe.path ?? "/",
        method: "GET",
        headers,
        timeout: timeoutMs,
        signal,
        // Kubernetes does not verify the app's certificate either.
        ...(https ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve({ ok: code >= 200 && code < 400, detail: `HTTP ${code}` });
      },
    );
    req.on("timeout", () => req.destroy(new ProbeError(`timed out after ${timeoutMs} ms`)));
    req.on("error", (err) => resolve({ ok: false, detail: err.message }));
    req.end();
  });
}

function tcpProbe(port: number, host: string, timeoutMs: number, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs, signal });
    socket.once("connect", () => {
      socket.destroy();
      resolve({ ok: true, detail: `connected to ${host}:${port}` });
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve({ ok: false, detail: `connect to ${host}:${port} timed out` });
    });
    socket.once("error", (err) => resolve({ ok: false, detail: err.message }));
  });
}

/** Runs one probe once. */
export async function runProbe(
  probe: Probe,
  container: Container,
  opts: { host: string; exec: ExecRunner; signal: AbortSignal },
): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet) return await httpProbe(probe.httpGet, container, opts.host, timeoutMs, opts.signal);
    if (probe.tcpSocket) {
      return await tcpProbe(
        resolvePort(probe.tcpSocket.port, container),
        probe.tcpSocket.host ?? opts.host,
        timeoutMs,
        opts.signal,
      );
    }
    if (probe.grpc) return await tcpProbe(probe.grpc.port, opts.host, timeoutMs, opts.signal);
    if (probe.exec) {
      const code = await opts.exec(probe.exec.command ?? [], { timeoutMs, signal: opts.signal });
      return { ok: code === 0, detail: `exit ${code}` };
    }
    return { ok: true, detail: "no handler" };
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * The LocalHealth of one app container. Without a liveness probe the app
 * counts as live; without a readiness probe, ready follows liveness. Within a
 * probe's initialDelaySeconds, liveness counts as passed and readiness as not.
 */
export class ContainerProbes implements LocalHealth {
  readonly periodMs: number;
  private readonly host: string;
  private readonly exec: ExecRunner;
  private readonly clock: ControllerClock;
  private readonly startedMs: number;
  /** The last results, for logs and status pages. */
  last: { live?: ProbeResult; ready?: ProbeResult } = {};

  constructor(
    private readonly container: Container,
    opts: ProbeRunnerOptions = {},
  ) {
    this.host = opts.host ?? "127.0.0.1";
    this.exec = opts.exec ?? localExec;
    this.clock = opts.clock ?? systemClock;
    this.startedMs = this.clock.monotonic();
    const periods = [container.livenessProbe, container.readinessProbe]
      .map((p) => p?.periodSeconds)
      .filter((s): s is number => s !== undefined);
    this.periodMs = opts.periodMs ?? (periods.length > 0 ? Math.min(...periods) * 1000 : 1000);
    if (!(this.periodMs > 0)) throw new ProbeError(`period must be positive, got ${this.periodMs}`);
  }

  async check(signal: AbortSignal): Promise<HealthVerdict> {
    const c = this.container;
    const [live, ready] = await Promise.all([
      this.one(c.livenessProbe, true, signal),
      this.one(c.readinessProbe, false, signal),
    ]);
    this.last = { ...(live ? { live } : {}), ...(ready ? { ready } : {}) };
    const isLive = live?.ok ?? true;
    return { live: isLive, ready: ready !== undefined ? ready.ok && isLive : isLive };
  }

  private async one(
    probe: Probe | undefined,
    passWhileWaiting: boolean,
    signal: AbortSignal,
  ): Promise<ProbeResult | undefined> {
    if (probe === undefined) return undefined;
    const delayMs = (probe.initialDelaySeconds ?? 0) * 1000;
    if (this.clock.monotonic() - this.startedMs < delayMs)
      return { ok: passWhileWaiting, detail: "initial delay" };
    return runProbe(probe, this.container, { host: this.host, exec: this.exec, signal });
  }
}
