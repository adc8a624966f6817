// The lease-keeper's settings from its environment (read in main only;
// every variable, default and meaning: docs/configuration.md).
import { envBool, envInt, type Env } from "../common/env.js";
import { parseProcessSettings, type ProcessSettings } from "../common/process-settings.js";
import type { LeaseKeeperOptions as LogicOptions } from "./logic/index.js";

export interface KeeperConfig extends ProcessSettings {
  logic: LogicOptions;
  earlyClose: boolean;
  /** Create streams and buckets when missing (needs the right; otherwise waits for them). */
  createInfra: boolean;
}

export function parseKeeperEnv(env: Env): KeeperConfig {
  return {
    ...parseProcessSettings(env, 9102),
    logic: {
      windowMs: envInt(env, "BEEMESH_WINDOW_MS", 250, { min: 1, max: 60_000 }),
      windowJitterMs: envInt(env, "BEEMESH_WINDOW_JITTER_MS", 100, { min: 0, max: 60_000 }),
      leaseTtlMs: envInt(env, "BEEMESH_LEASE_TTL_MS", 3000, { min: 100, max: 3_600_000 }),
    },
    earlyClose: envBool(env, "BEEMESH_EARLY_CLOSE", true),
    createInfra: envBool(env, "BEEMESH_CREATE_INFRA", true),
  };
}
