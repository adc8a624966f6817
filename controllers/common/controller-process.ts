// What every controller process does around its controller: a logger and a
// metrics registry, its SVID from a directory (checked against the role it
// runs as), a Bus on NATS, /metrics /healthz /readyz, and a graceful stop on
// SIGTERM/SIGINT. Each main.ts keeps only what is its own.
import type { Registry } from "prom-client";
import { Bus } from "../../protocol/bus/index.js";
import { principalOf, parseSpiffeId, type Principal } from "../../identity/spiffe-id.js";
import { startHealthServer, newRegistry, type HealthServer } from "./health-server.js";
import { createLogger, errorText, type Logger } from "./log.js";
import type { ProcessSettings } from "./process-settings.js";
import { svidDirSource, type SvidDirSource } from "./svid-dir.js";

export interface ControllerProcess<I> {
  log: Logger;
  registry: Registry;
  svids: SvidDirSource;
  bus: Bus;
  /** What identify() made of the SVID; also on every log line. */
  identity: I;
}

export interface ConnectOptions<I> {
  /** Log component and metrics label. */
  component: string;
  settings: ProcessSettings;
  /** Refuses an SVID of another role (throws); returns the fields that name this instance. */
  identify: (principal: Principal, spiffeId: string) => I;
}

/** Logger, registry, SVID source and Bus, in that order; throws when the SVID is not this role's. */
export async function connectProcess<I extends Record<string, string>>(
  opts: ConnectOptions<I>,
): Promise<ControllerProcess<I>> {
  const { component, settings } = opts;
  let log: Logger = createLogger({ component, level: settings.logLevel });
  const registry = newRegistry(component);
  const svids = await svidDirSource(settings.svidDir, {
    onError: (err) => log.warn("svid reload failed", { err: String(err) }),
  });
  const spiffeId = svids.current().spiffeId;
  const identity = opts.identify(principalOf(parseSpiffeId(spiffeId)), spiffeId);
  log = log.child(identity);
  const bus = await Bus.connect({
    servers: settings.natsUrls,
    svid: svids,
    registry,
    logger: log.child({ part: "bus" }),
    trustDomain: settings.trustDomain,
    prefix: settings.prefix,
    waitOnFirstConnect: true,
  });
  return { log, registry, svids, bus, identity };
}

/** A controller as a process runs it (STYLE §4). */
export interface RunnableController {
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  isReady(): boolean;
}

export interface ServeOptions {
  settings: ProcessSettings;
  controller: RunnableController;
  /** Runs on a graceful stop after the controller stopped, before the bus drains. */
  afterStop?: () => Promise<void>;
}

/**
 * Serves health and metrics, stops gracefully on SIGTERM/SIGINT (exit 0) and
 * exits 1 when the bus closes under it; resolves once the controller started.
 */
export async function serveProcess(p: ControllerProcess<unknown>, opts: ServeOptions): Promise<HealthServer> {
  const { log, bus, svids } = p;
  const { controller } = opts;
  const health = await startHealthServer({
    port: opts.settings.healthPort,
    host: opts.settings.healthHost,
    registry: p.registry,
    healthy: () => !bus.nc.isClosed(),
    ready: () => controller.isReady() && bus.isConnected(),
  });

  const abort = new AbortController();
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    abort.abort();
    await controller.stop();
    await opts.afterStop?.();
    await bus.drain().catch(() => undefined);
    await health.close();
    svids.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
  void bus.closed().then((err) => {
    if (!stopping) {
      log.error("bus closed", { err: err instanceof Error ? err.message : undefined });
      process.exit(1);
    }
  });
  await controller.start(abort.signal);
  return health;
}

/** Runs a process's main; a failure to start is logged and exits 1. */
export function runMain(component: string, main: () => Promise<void>): void {
  const bootLog = createLogger({ component });
  main().catch((err: unknown) => {
    bootLog.error("failed to start", { err: errorText(err) });
    process.exit(1);
  });
}
