// Entry point of the dispatcher container. The only place that reads the
// environment and the command line (STYLE §8); everything else takes options.
// Every variable, its default and meaning: docs/configuration.md.
// Flags (win over the environment): --source=api|kubernetes, --dev-insecure.
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import {
  EnvError,
  envBool,
  envInt,
  envList,
  envLogLevel,
  envOptional,
  envOptionalInt,
  envString,
  type Env,
} from "../common/env.js";
import { createLogger, type LogLevel } from "../common/log.js";
import { newRegistry } from "../common/health-server.js";
import { svidDirSource } from "../common/svid-dir.js";
import { DEFAULT_TRUST_DOMAIN } from "../../identity/spiffe-id.js";
import { Dispatcher, DispatcherConfigError } from "./dispatcher.js";

export interface DispatcherCliConfig {
  natsServers: string[];
  svidDir: string;
  trustDomain: string;
  prefix: string;
  source: "api" | "kubernetes";
  api: { port: number; host: string; devInsecure: boolean; tlsCertFile?: string; tlsKeyFile?: string };
  health: { port: number; host: string };
  shards: number;
  logLevel: LogLevel;
  sidecarImage?: string;
  sidecarNatsUrl?: string;
  /** Requests = limits of each injected sidecar (both or neither). */
  sidecarResources?: { cpu: string; memory: string };
  dataRoot?: string;
  replicas: number;
  /**
   * No live replica of a Deployment for this long: its Tasks go out again
   * (0: never). Absent: the dispatcher's default (10 s).
   */
  reviveGraceMs?: number;
}

/** The settings from the environment and the arguments; refuses contradictions. Pure. */
export function parseDispatcherConfig(env: Env, argv: readonly string[]): DispatcherCliConfig {
  try {
    return parse(env, argv);
  } catch (err) {
    // One error type for a bad start, whatever part of the settings it is about.
    if (err instanceof EnvError) throw new DispatcherConfigError(err.message);
    throw err;
  }
}

function parse(env: Env, argv: readonly string[]): DispatcherCliConfig {
  let flags: { source?: string; "dev-insecure"?: boolean };
  try {
    flags = parseArgs({
      args: [...argv],
      options: { source: { type: "string" }, "dev-insecure": { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new DispatcherConfigError(err instanceof Error ? err.message : String(err));
  }
  const source = flags.source ?? envString(env, "BEEMESH_SOURCE", "api");
  if (source !== "api" && source !== "kubernetes") {
    throw new DispatcherConfigError(`source must be "api" or "kubernetes", got ${JSON.stringify(source)}`);
  }
  const natsServers = envList(env, "BEEMESH_NATS_URL", []);
  if (natsServers.length === 0) throw new DispatcherConfigError("BEEMESH_NATS_URL is required");
  const svidDir = envOptional(env, "BEEMESH_SVID_DIR");
  if (svidDir === undefined)
    throw new DispatcherConfigError("BEEMESH_SVID_DIR is required (NATS takes mutual TLS only)");
  const devInsecure = flags["dev-insecure"] ?? envBool(env, "BEEMESH_DEV_INSECURE", false);
  const apiHost = envString(env, "BEEMESH_API_HOST", "127.0.0.1");
  if (source === "api" && devInsecure && apiHost !== "127.0.0.1") {
    throw new DispatcherConfigError(`--dev-insecure serves plain HTTP on 127.0.0.1 only, not on ${apiHost}`);
  }
  const tlsCertFile = envOptional(env, "BEEMESH_API_TLS_CERT");
  const tlsKeyFile = envOptional(env, "BEEMESH_API_TLS_KEY");
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    throw new DispatcherConfigError("BEEMESH_API_TLS_CERT and BEEMESH_API_TLS_KEY go together");
  }
  const sidecarCpu = envOptional(env, "BEEMESH_SIDECAR_CPU");
  const sidecarMemory = envOptional(env, "BEEMESH_SIDECAR_MEMORY");
  if ((sidecarCpu === undefined) !== (sidecarMemory === undefined)) {
    throw new DispatcherConfigError("BEEMESH_SIDECAR_CPU and BEEMESH_SIDECAR_MEMORY go together");
  }
  const sidecarImage = envOptional(env, "BEEMESH_SIDECAR_IMAGE");
  const sidecarNatsUrl = envOptional(env, "BEEMESH_SIDECAR_NATS_URL");
  const dataRoot = envOptional(env, "BEEMESH_DATA_ROOT");
  const reviveGraceMs = envOptionalInt(env, "BEEMESH_REVIVE_GRACE_MS", { min: 0, max: 3_600_000 });
  return {
    natsServers,
    svidDir,
    trustDomain: envString(env, "BEEMESH_TRUST_DOMAIN", DEFAULT_TRUST_DOMAIN),
    prefix: envString(env, "BEEMESH_PREFIX", "beemesh"),
    source,
    api: {
      port: envInt(env, "BEEMESH_API_PORT", 6443, { min: 0, max: 65535 }),
      host: apiHost,
      devInsecure,
      ...(tlsCertFile && tlsKeyFile ? { tlsCertFile, tlsKeyFile } : {}),
    },
    health: {
      port: envInt(env, "BEEMESH_HEALTH_PORT", 9100, { min: 0, max: 65535 }),
      host: envString(env, "BEEMESH_HEALTH_HOST", "127.0.0.1"),
    },
    shards: envInt(env, "BEEMESH_SHARDS", 16, { min: 1, max: 65536 }),
    logLevel: envLogLevel(env),
    ...(sidecarImage !== undefined ? { sidecarImage } : {}),
    ...(sidecarNatsUrl !== undefined ? { sidecarNatsUrl } : {}),
    ...(sidecarCpu !== undefined && sidecarMemory !== undefined
      ? { sidecarResources: { cpu: sidecarCpu, memory: sidecarMemory } }
      : {}),
    ...(dataRoot !== undefined ? { dataRoot } : {}),
    replicas: envInt(env, "BEEMESH_NATS_REPLICAS", 1, { min: 1, max: 5 }),
    ...(reviveGraceMs !== undefined ? { reviveGraceMs } : {}),
  };
}

/** Bounded: a stuck stop must not keep a terminating container alive forever. */
const STOP_TIMEOUT_MS = 20_000;

export async function main(env: Record<string, string | undefined>, argv: readonly string[]): Promise<void> {
  const cfg = parseDispatcherConfig(env, argv);
  const logger = createLogger({ component: "dispatcher", level: cfg.logLevel });
  const registry = newRegistry("dispatcher");
  const svids = await svidDirSource(cfg.svidDir, {
    onError: (err) => logger.warn("SVID reload failed; keeping the current one", { err }),
  });
  const svid = svids.current();
  let apiTls;
  if (cfg.source === "api" && !cfg.api.devInsecure) {
    // A server certificate with DNS/IP names for kubectl when given; otherwise the SVID itself.
    const [certPem, keyPem] =
      cfg.api.tlsCertFile && cfg.api.tlsKeyFile
        ? await Promise.all([readFile(cfg.api.tlsCertFile, "utf8"), readFile(cfg.api.tlsKeyFile, "utf8")])
        : [svid.chainPem, svid.keyPem];
    apiTls = { certPem, keyPem, bundlePem: svid.bundlePem, trustDomain: cfg.trustDomain };
  }
  let kubeConfig: KubeConfig | undefined;
  if (cfg.source === "kubernetes") {
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromDefault();
  }
  const dispatcher = await Dispatcher.start({
    natsServers: cfg.natsServers,
    svid: svids,
    trustDomain: cfg.trustDomain,
    prefix: cfg.prefix,
    source: cfg.source,
    ...(cfg.source === "api"
      ? {
          api: {
            port: cfg.api.port,
            host: cfg.api.host,
            devInsecure: cfg.api.devInsecure,
            ...(apiTls ? { tls: apiTls } : {}),
          },
        }
      : {}),
    ...(kubeConfig ? { kubeConfig } : {}),
    health: cfg.health,
    shards: cfg.shards,
    render: {
      ...(cfg.sidecarNatsUrl ? { natsUrl: cfg.sidecarNatsUrl } : {}),
      ...(cfg.sidecarImage ? { watchdogImage: cfg.sidecarImage, raftImage: cfg.sidecarImage } : {}),
      ...(cfg.dataRoot ? { dataRoot: cfg.dataRoot } : {}),
      ...(cfg.sidecarResources ? { sidecarResources: cfg.sidecarResources } : {}),
    },
    logger,
    registry,
    replicas: cfg.replicas,
    ...(cfg.reviveGraceMs !== undefined
      ? { revive: cfg.reviveGraceMs > 0 ? { graceMs: cfg.reviveGraceMs } : false }
      : {}),
    waitForNats: true,
  });
  // The SVID rotates under the bus (its SvidSource); the API follows when it serves the SVID.
  if (apiTls && !cfg.api.tlsCertFile) {
    svids.onUpdate?.((next) =>
      dispatcher.api?.updateTls({
        certPem: next.chainPem,
        keyPem: next.keyPem,
        bundlePem: next.bundlePem,
        trustDomain: cfg.trustDomain,
      }),
    );
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("stopping", { signal });
    const timer = setTimeout(() => {
      logger.error("stop timed out; exiting");
      process.exit(1);
    }, STOP_TIMEOUT_MS);
    timer.unref();
    void dispatcher
      .stop()
      .then(() => {
        svids.close();
        process.exit(0);
      })
      .catch((err: unknown) => {
        logger.error("stop failed", { err });
        process.exit(1);
      });
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  main(process.env, process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(
      `${JSON.stringify({ ts: new Date().toISOString(), level: "error", component: "dispatcher", msg: "dispatcher failed to start", err: err instanceof Error ? { name: err.name, message: err.message } : String(err) })}\n`,
    );
    process.exit(1);
  });
}
