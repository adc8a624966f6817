// The lease-keeper's settings from its environment (read in main only;
// every variable, default and meaning: docs/configuration.md).
import { envBool, envInt, envList, envLogLevel, envString, type Env } from "../common/env.js";
import type { LogLevel } from "../common/log.js";
import type { LeaseKeeperOptions as LogicOptions } from "./logic/index.js";

export interface KeeperConfig {
  natsUrls: string[];
  svidDir: string;
  trustDomain: string;
  prefix: string;
  healthPort: number;
  healthHost: string;
  logLevel: LogLevel;
  logic: LogicOptions;
  earlyClose: boolean;
  /** Create streams and buckets when missing (needs the right; otherwise waits for them). */
  createInfra: boolean;
}

export function parseKeeperEnv(env: Env): KeeperConfig {
  return {
    natsUrls: envList(env, "BEEMESH_NATS_URL", ["tls://127.0.0.1:4222"]),
    svidDir: envString(env, "BEEMESH_SVID_DIR"),
    trustDomain: envString(env, "BEEMESH_TRUST_DOMAIN", "beemesh.local"),
    prefix: envString(env, "BEEMESH_PREFIX", "beemesh"),
    healthPort: envInt(env, "BEEMESH_HEALTH_PORT", 9102, { min: 0, max: 65535 }),
    healthHost: envString(env, "BEEMESH_HEALTH_HOST", "127.0.0.1"),
    logLevel: envLogLevel(env),
    logic: {
      windowMs: envInt(env, "BEEMESH_WINDOW_MS", 250, { min: 1, max: 60_000 }),
      windowJitterMs: envInt(env, "BEEMESH_WINDOW_JITTER_MS", 100, { min: 0, max: 60_000 }),
      leaseTtlMs: envInt(env, "BEEMESH_LEASE_TTL_MS", 3000, { min: 100, max: 3_600_000 }),
    },
    earlyClose: envBool(env, "BEEMESH_EARLY_CLOSE", true),
    createInfra: envBool(env, "BEEMESH_CREATE_INFRA", true),
  };
}
