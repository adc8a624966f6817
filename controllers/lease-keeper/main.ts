// The lease-keeper process: environment in, a LeaseKeeper on a Bus with its
// SVID, /metrics /healthz /readyz, a graceful stop on SIGTERM. Run as many as
// you like: they race safely on KV create.
import { Bus } from "../../protocol/bus/index.js";
import { principalOf, parseSpiffeId } from "../../identity/spiffe-id.js";
import { startHealthServer, newRegistry } from "../common/health-server.js";
import { createLogger, type Logger } from "../common/log.js";
import { ensureSchedulingInfra } from "../common/nats-setup.js";
import { svidDirSource } from "../common/svid-dir.js";
import { parseKeeperEnv } from "./config.js";
import { LeaseKeeper } from "./keeper.js";

async function main(): Promise<void> {
  const cfg = parseKeeperEnv(process.env);
  let log: Logger = createLogger({ component: "lease-keeper", level: cfg.logLevel });
  const registry = newRegistry("lease-keeper");
  const svids = await svidDirSource(cfg.svidDir, {
    onError: (err) => log.warn("svid reload failed", { err: String(err) }),
  });
  const principal = principalOf(parseSpiffeId(svids.current().spiffeId));
  if (principal.kind !== "controller" || principal.name !== "lease-keeper") {
    throw new Error(
      `lease-keeper: the SVID ${svids.current().spiffeId} is not /controller/lease-keeper/<instance>`,
    );
  }
  log = log.child({ instance: principal.instance });

  const bus = await Bus.connect({
    servers: cfg.natsUrls,
    svid: svids,
    registry,
    logger: log.child({ part: "bus" }),
    trustDomain: cfg.trustDomain,
    prefix: cfg.prefix,
    waitOnFirstConnect: true,
  });
  const infra = await ensureSchedulingInfra(bus.nc, {
    prefix: cfg.prefix,
    create: cfg.createInfra ? "try" : false,
    waitTimeoutMs: 300_000,
  });
  const keeper = new LeaseKeeper({
    bus,
    buckets: infra.buckets,
    logger: log,
    registry,
    logic: cfg.logic,
    earlyClose: cfg.earlyClose,
  });
  const health = await startHealthServer({
    port: cfg.healthPort,
    host: cfg.healthHost,
    registry,
    healthy: () => !bus.nc.isClosed(),
    ready: () => keeper.isReady() && bus.isConnected(),
  });

  const abort = new AbortController();
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    abort.abort();
    await keeper.stop();
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
  await keeper.start(abort.signal);
  log.info("ready", { health_port: health.port });
}

const bootLog = createLogger({ component: "lease-keeper" });
main().catch((err: unknown) => {
  bootLog.error("failed to start", {
    err: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
  });
  process.exit(1);
});
