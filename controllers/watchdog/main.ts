// The watchdog sidecar's entry point: the environment is read here and only
// here (STYLE §8). The dispatcher's renderer sets the Deployment's env, the
// node agent adds the pod's name and node at deploy time; the SVID comes from
// the Workload API socket the node agent mounted (or, for development, from
// an SVID directory). SIGTERM/SIGINT stop it gracefully: the pod is going
// away, so it neither retires nor clones on the way out.
import { pathToFileURL } from "node:url";
import { Registry } from "../../protocol/bus/prom-core.js";
import { createLogger, type LogLevel } from "../common/log.js";
import { envInt, envLogLevel, envOptional, envOptionalInt, envString, type Env } from "../common/env.js";
import type { HealthServer } from "../common/health-server.js";
import { Bus, type SvidSource } from "../../protocol/bus/index.js";
import type { WatchdogOptions } from "./logic/index.js";
import { ContainerProbes } from "./probes.js";
import { Watchdog, type WatchdogTarget } from "./watchdog.js";

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
  taskShards: number;
  healthPort: number | undefined;
  probeHost: string;
  probePeriodMs: number | undefined;
  logLevel: LogLevel;
}

/**
 * The configuration from the environment (docs/configuration.md); throws
 * EnvError naming the first bad variable, WatchdogConfigError when no
 * identity source is set.
 */
export function configFromEnv(env: Env): WatchdogConfig {
  const natsUrl = envString(env, "BEEMESH_NATS_URL");
  const prefix = envString(env, "BEEMESH_PREFIX", "beemesh");
  const intervalMs = envOptionalInt(env, "BEEMESH_WATCHDOG_INTERVAL_MS", { min: 1 });
  const ttlIntervals = envOptionalInt(env, "BEEMESH_WATCHDOG_TTL_INTERVALS", { min: 1 });
  const socketPath = envOptional(env, "BEEMESH_WORKLOAD_API_SOCKET");
  const svidDir = envOptional(env, "BEEMESH_SVID_DIR");
  if (socketPath === undefined && svidDir === undefined) {
    throw new WatchdogConfigError("set BEEMESH_WORKLOAD_API_SOCKET (or BEEMESH_SVID_DIR for development)");
  }
  const taskId = envOptional(env, "BEEMESH_TASK_ID");
  return {
    target: {
      ns: envString(env, "BEEMESH_NAMESPACE"),
      parent: envString(env, "BEEMESH_PARENT"),
      parentUid: envString(env, "BEEMESH_PARENT_UID"),
      pod: envString(env, "BEEMESH_POD_NAME"),
      nodeId: envString(env, "BEEMESH_NODE_ID"),
      generation: envInt(env, "BEEMESH_GENERATION", 1, { min: 0 }),
      templateHash: envString(env, "BEEMESH_TEMPLATE_HASH"),
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
    // Clones go to the shard of their task id among the dispatcher's shards (its renderer sets this).
    taskShards: envInt(env, "BEEMESH_SHARDS", 1, { min: 1, max: 65536 }),
    // Off by default: replicas share the host network, one port would collide.
    healthPort: envOptionalInt(env, "BEEMESH_HEALTH_PORT", { min: 0, max: 65535 }),
    probeHost: envString(env, "BEEMESH_WATCHDOG_PROBE_HOST", "127.0.0.1"),
    probePeriodMs: envOptionalInt(env, "BEEMESH_WATCHDOG_PROBE_PERIOD_MS", { min: 1 }),
    logLevel: envLogLevel(env),
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

  // The sidecar runs in every pod, so it loads only what its config uses: the
  // gRPC stack for the Workload API, the HTTP server for a health port.
  const svid: SvidSource =
    cfg.socketPath !== undefined
      ? await (
          await import("./workload-svid.js")
        ).workloadSvidSource(cfg.socketPath, stop.signal, {
          onError: (err) => log.warn("workload api stream broke", { err }),
        })
      : await (
          await import("../common/svid-dir.js")
        ).svidDirSource(cfg.svidDir!, { onError: (err) => log.warn("svid reload failed", { err }) });

  // No collectDefaultMetrics: its event-loop monitor wakes the process every 10 ms.
  const registry = new Registry();
  registry.setDefaultLabels({ component: "watchdog" });
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
    const { startHealthServer } = await import("../common/health-server.js");
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
