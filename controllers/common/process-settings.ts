// The settings every controller process shares, read from its environment in
// its config parse (main only). Light on imports: config tests load it.
import { envInt, envList, envLogLevel, envString, type Env } from "./env.js";
import type { LogLevel } from "./log.js";

/** The settings every controller process reads from its environment. */
export interface ProcessSettings {
  natsUrls: string[];
  svidDir: string;
  trustDomain: string;
  prefix: string;
  healthPort: number;
  healthHost: string;
  logLevel: LogLevel;
}

/** ProcessSettings from the environment (docs/configuration.md); only the health port's default differs. */
export function parseProcessSettings(env: Env, defaultHealthPort: number): ProcessSettings {
  return {
    natsUrls: envList(env, "BEEMESH_NATS_URL", ["tls://127.0.0.1:4222"]),
    svidDir: envString(env, "BEEMESH_SVID_DIR"),
    trustDomain: envString(env, "BEEMESH_TRUST_DOMAIN", "beemesh.local"),
    prefix: envString(env, "BEEMESH_PREFIX", "beemesh"),
    healthPort: envInt(env, "BEEMESH_HEALTH_PORT", defaultHealthPort, { min: 0, max: 65535 }),
    healthHost: envString(env, "BEEMESH_HEALTH_HOST", "127.0.0.1"),
    logLevel: envLogLevel(env),
  };
}
