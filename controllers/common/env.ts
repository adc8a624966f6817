// Reading controller settings from the environment, in main only (STYLE §8):
// small parsers that name the variable in every error, so a bad deployment
// fails at start with a line that says what to fix.
import type { LogLevel } from "./log.js";
import { quantityToBytes, quantityToMillis } from "../../protocol/index.js";
import type { Taint } from "../../protocol/index.js";

export class EnvError extends Error {
  override name = "EnvError";
  constructor(variable: string, problem: string) {
    super(`env: ${variable} ${problem}`);
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export function envString(env: Env, name: string, fallback?: string): string {
  const v = env[name]?.trim();
  if (v !== undefined && v !== "") return v;
  if (fallback !== undefined) return fallback;
  throw new EnvError(name, "is required");
}

export function envOptional(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === "" ? undefined : v;
}

export function envInt(
  env: Env,
  name: string,
  fallback: number,
  range: { min?: number; max?: number } = {},
): number {
  const raw = envOptional(env, name);
  if (raw === undefined) return fallback;
  if (!/^-?[0-9]+$/.test(raw)) throw new EnvError(name, `must be an integer, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (
    !Number.isSafeInteger(n) ||
    (range.min !== undefined && n < range.min) ||
    (range.max !== undefined && n > range.max)
  ) {
    throw new EnvError(
      name,
      `must be an integer in [${range.min ?? "-inf"}, ${range.max ?? "inf"}], got ${raw}`,
    );
  }
  return n;
}

/** An integer that may be left unset (undefined: the component's own default applies). */
export function envOptionalInt(
  env: Env,
  name: string,
  range: { min?: number; max?: number } = {},
): number | undefined {
  return envOptional(env, name) === undefined ? undefined : envInt(env, name, 0, range);
}

export function envBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = envOptional(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new EnvError(name, `must be true or false, got ${JSON.stringify(raw)}`);
}

const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export function envLogLevel(env: Env, name = "BEEMESH_LOG_LEVEL"): LogLevel {
  const raw = envString(env, name, "info").toLowerCase();
  if (!(LEVELS as readonly string[]).includes(raw))
    throw new EnvError(name, `must be one of ${LEVELS.join(", ")}, got ${raw}`);
  return raw as LogLevel;
}

/** "tls://a:4222,tls://b:4222" */
export function envList(env: Env, name: string, fallback: string[]): string[] {
  const raw = envOptional(env, name);
  if (raw === undefined) return fallback;
  const items = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (items.length === 0) throw new EnvError(name, "is empty");
  return items;
}

/** "zone=a,disk=ssd" */
export function envLabels(env: Env, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of envList(env, name, [])) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new EnvError(name, `entry ${JSON.stringify(item)} is not key=value`);
    out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return out;
}

const EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"] as const;

/** "dedicated=gpu:NoSchedule,maintenance:NoExecute" (kubectl taint syntax). */
export function envTaints(env: Env, name: string): Taint[] {
  return envList(env, name, []).map((item) => {
    const colon = item.lastIndexOf(":");
    const effect = colon > 0 ? item.slice(colon + 1) : "";
    if (!(EFFECTS as readonly string[]).includes(effect)) {
      throw new EnvError(
        name,
        `entry ${JSON.stringify(item)} needs an effect (${EFFECTS.join(", ")}) after ':'`,
      );
    }
    const kv = item.slice(0, colon);
    const eq = kv.indexOf("=");
    const key = (eq >= 0 ? kv.slice(0, eq) : kv).trim();
    if (key === "") throw new EnvError(name, `entry ${JSON.stringify(item)} has no key`);
    const taint: Taint = { key, effect: effect as Taint["effect"] };
    if (eq >= 0) taint.value = kv.slice(eq + 1).trim();
    return taint;
  });
}

/** A CPU quantity ("2", "1500m") in millicores. */
export function envCpuMillis(env: Env, name: string): number | undefined {
  const raw = envOptional(env, name);
  if (raw === undefined) return undefined;
  const v = quantityToMillis(raw);
  if (v === undefined)
    throw new EnvError(name, `must be a CPU quantity like 2 or 1500m, got ${JSON.stringify(raw)}`);
  return v;
}

/** A memory quantity ("8Gi", "512M") in bytes. */
export function envBytes(env: Env, name: string): number | undefined {
  const raw = envOptional(env, name);
  if (raw === undefined) return undefined;
  const v = quantityToBytes(raw);
  if (v === undefined)
    throw new EnvError(name, `must be a memory quantity like 8Gi, got ${JSON.stringify(raw)}`);
  return v;
}
