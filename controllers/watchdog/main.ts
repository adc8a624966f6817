// The watchdog sidecar's entry point: the environment is read here and only
// here (STYLE §8). The dispatcher's renderer sets the Deployment's env, the
// node agent adds the pod's name and node at deploy time; the SVID comes from
// the Workload API socket the node agent mounted (or, for development, from
// an SVID directory). SIGTERM/SIGINT stop it gracefully: the pod is going
// away, so it neither retires nor clones on the way out.
import "reflect-metadata";
import { pathToFileURL } from "node:url";
import { Registry, collectDefaultMetrics } from "prom-client";
import { createLogger, type LogLevel } from "../common/log.js";
import { startHealthServer, type HealthServer } from "../common/health-server.js";
import { svidDirSource } from "../common/svid-dir.js";
import { Bus, type SvidSource } from "../../protocol/bus/index.js";
import { DEFAULT_SIDECAR_IMAGE, type RenderOptions } from "../dispatcher/fanout/render.js";
import type { WatchdogOptions } from "./logic/index.js";
import { ContainerProbes } from "./probes.js";
import { Watchdog, type WatchdogTarget } from "./watchdog.js";
import { workloadSvidSource } from "./workload-svid.js";

export class WatchdogConfigError extends Error {
  override name = "WatchdogConfigError";
  constructor(message: string) {
    super(`watchdog: config: ${message}`);
  }
}

export interface WatchdogConfig {
  target: WatchdogTarget;
  natsUrl: string;
  prefix: string;
  socketPath: string | undefined;
  svidDir: string | undefined;
  logic: WatchdogOptions;
  render: RenderOptions;
  taskShards: number;
  healthPort: number | undefined;
  probeHost: string;
  probePeriodMs: number | undefined;
  logLevel: LogLevel;
}

type Env = Record<string, string | undefined>;

function required(env: Env, name: string): string {
  const v = env[name];
  if (v === undefined || v.trim() === "") throw new WatchdogConfigError(`${name} is not set`);
  return v.trim();
}

function integer(env: Env, name: string, fallback?: number): number | undefined {
  const v = env[name];
  if (v === undefined || v.trim() === "") return fallback;
  if (!/^\d+$/.test(v.trim()))
    throw new WatchdogConfigError(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v.trim());
}

/** The configuration from the environment; throws WatchdogConfigError naming the first bad variable. */
export function configFromEnv(env: Env): WatchdogConfig {
  const natsUrl = required(env, "BEEMESH_NATS_URL");
  const prefix = env["BEEMESH_SUBJECT_PREFIX"]?.trim() || "beemesh";
  const intervalMs = integer(env, "BEEMESH_WATCHDOG_INTERVAL_MS");
  const ttlIntervals = integer(env, "BEEMESH_WATCHDOG_TTL_INTERVALS");
  const socketPath = env["BEEMESH_WORKLOAD_API_SOCKET"]?.trim() || undefined;
  const svidDir = env["BEEMESH_SVID_DIR"]?.trim() || undefined;
  if (socketPath === undefined && svidDir === undefined) {
    throw new WatchdogConfigError("set BEEMESH_WORKLOAD_API_SOCKET (or BEEMESH_SVID_DIR for development)");
  }
  const taskId = env["BEEMESH_TASK_ID"]?.trim() || undefined;
  const level = (env["BEEMESH_LOG_LEVEL"]?.trim() || "info") as LogLevel;
  if (!["debug", "info", "warn", "error"].includes(level))
    throw new WatchdogConfigError(`BEEMESH_LOG_LEVEL ${level} is not a level`);
  const sidecarCpu = env["BEEMESH_SIDECAR_CPU"]?.trim();
  const sidecarMemory = env["BEEMESH_SIDECAR_MEMORY"]?.trim();
  return {
    target: {
      ns: required(env, "BEEMESH_NAMESPACE"),
      parent: required(env, "BEEMESH_PARENT"),
      parentUid: required(env, "BEEMESH_PARENT_UID"),
      pod: required(env, "BEEMESH_POD_NAME"),
      nodeId: required(env, "BEEMESH_NODE_ID"),
      generation: integer(env, "BEEMESH_GENERATION", 1) ?? 1,
      templateHash: required(env, "BEEMESH_TEMPLATE_HASH"),
      ...(taskId !== undefined ? { taskId } : {}),
    },
    natsUrl,
    prefix,
    socketPath,
    svidDir,
    logic: {
      ...(intervalMs !== undefined ? { intervalMs } : {}),
      ...(ttlIntervals !== undefined ? { ttlIntervals } : {}),
    },
    // The manifest key a clone names is a hash of the rendered pod, so these must be the
    // dispatcher's own render options; the sidecar's env carries what it can of them.
    render: {
      natsUrl,
      watchdogImage: env["BEEMESH_WATCHDOG_IMAGE"]?.trim() || DEFAULT_SIDECAR_IMAGE,
      ...(prefix !== "beemesh" ? { prefix } : {}),
      ...(sidecarCpu && sidecarMemory
        ? { sidecarResources: { cpu: sidecarCpu, memory: sidecarMemory } }
        : {}),
    },
    taskShards: integer(env, "BEEMESH_TASK_SHARDS", 1) ?? 1,
    healthPort: integer(env, "BEEMESH_WATCHDOG_HEALTH_PORT"),
    probeHost: env["BEEMESH_WATCHDOG_PROBE_HOST"]?.trim() || "127.0.0.1",
    probePeriodMs: integer(env, "BEEMESH_WATCHDOG_PROBE_PERIOD_MS"),
    logLevel: level,
  };
}

export async function main(env: Env = process.env): Promise<number> {
  const cfg = configFromEnv(env);
  const log = createLogger({ component: "watchdog", level: cfg.logLevel }).child({ pod: cfg.target.pod });
  const stop = new AbortController();
  const onSignal = (sig: string) => {
    log.info("signal received; stopping", { signal: sig });
    stop.abort();
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));

  const svid: SvidSource =
    cfg.socketPath !== undefined
      ? await workloadSvidSource(cfg.socketPath, stop.signal, {
          onError: (err) => log.warn("workload api stream broke", { err }),
        })
      : await svidDirSource(cfg.svidDir!, { onError: (err) => log.warn("svid reload failed", { err }) });

  const registry = new Registry();
  registry.setDefaultLabels({ component: "watchdog" });
  collectDefaultMetrics({ register: registry });
  const bus = await Bus.connect({
    servers: cfg.natsUrl.split(",").map((s) => s.trim()),
    svid,
    registry,
    logger: log,
    prefix: cfg.prefix,
    waitOnFirstConnect: true,
  });

  let retired = false;
  const watchdog = new Watchdog({
    bus,
    target: cfg.target,
    health: (app) =>
      app !== undefined
        ? new ContainerProbes(app, {
            host: cfg.probeHost,
            ...(cfg.probePeriodMs !== undefined ? { periodMs: cfg.probePeriodMs } : {}),
          })
        : { periodMs: 1000, check: () => Promise.resolve({ live: true, ready: true }) },
    logic: cfg.logic,
    render: cfg.render,
    taskShards: cfg.taskShards,
    registry,
    logger: log,
    onRetired: (reason) => {
      retired = true;
      log.info("retired; waiting for the node agent to remove this pod", { reason });
    },
  });

  let health: HealthServer | undefined;
  if (cfg.healthPort !== undefined) {
    health = await startHealthServer({
      port: cfg.healthPort,
      registry,
      healthy: () => watchdog.healthy() || retired,
      ready: () => watchdog.ready(),
    });
    log.info("health server listening", { port: health.port });
  }

  try {
    await watchdog.start(stop.signal);
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      else stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });
  } finally {
    await watchdog.stop();
    await bus.drain().catch(() => undefined);
    await health?.close();
  }
  log.info("watchdog stopped");
  return 0;
}

// Run only as the entry point, so tests can import configFromEnv.
const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(
        `${JSON.stringify({ level: "error", component: "watchdog", msg: "fatal", err: err instanceof Error ? err.message : String(err) })}\n`,
      );
      process.exit(1);
    },
  );
}
