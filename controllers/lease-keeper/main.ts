// The lease-keeper process: environment in, a LeaseKeeper on a Bus with its
// SVID, /metrics /healthz /readyz, a graceful stop on SIGTERM. Run as many as
// you like: they race safely on KV create.
import { connectProcess, runMain, serveProcess } from "../common/controller-process.js";
import { ensureSchedulingInfra } from "../common/nats-setup.js";
import { parseKeeperEnv } from "./config.js";
import { LeaseKeeper } from "./keeper.js";

async function main(): Promise<void> {
  const cfg = parseKeeperEnv(process.env);
  const p = await connectProcess({
    component: "lease-keeper",
    settings: cfg,
    identify: (principal, spiffeId) => {
      if (principal.kind !== "controller" || principal.name !== "lease-keeper")
        throw new Error(`lease-keeper: the SVID ${spiffeId} is not /controller/lease-keeper/<instance>`);
      return { instance: principal.instance };
    },
  });
  const infra = await ensureSchedulingInfra(p.bus.nc, {
    prefix: cfg.prefix,
    create: cfg.createInfra ? "try" : false,
    waitTimeoutMs: 300_000,
  });
  const keeper = new LeaseKeeper({
    bus: p.bus,
    buckets: infra.buckets,
    logger: p.log,
    registry: p.registry,
    logic: cfg.logic,
    earlyClose: cfg.earlyClose,
  });
  const health = await serveProcess(p, { settings: cfg, controller: keeper });
  p.log.info("ready", { health_port: health.port });
}

runMain("lease-keeper", main);
