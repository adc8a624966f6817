// What every beemeshctl command shares: the command shape, argument parsing
// with node:util parseArgs (plus generated --help), typed errors with their
// exit codes, and small pure parsers (durations, namespaces).
import { parseArgs } from "node:util";

/** Exit codes, as `beemeshctl --help` documents them. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Bad command line: exit 2, with a pointer to the command's --help. */
export class UsageError extends Error {
  override name = "UsageError";
  constructor(message: string) {
    super(message);
  }
}

/** A command that ran and failed (server refused, timeout, bad file): exit 1. */
export class CliError extends Error {
  override name = "CliError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** All of stdin (for `-f -`). */
  readStdin(): Promise<string>;
}

/** Everything a command may read from its surroundings; main fills it, tests fake it. */
export interface CliContext {
  readonly io: Io;
  /** The environment, read once in main. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Aborted on SIGINT/SIGTERM: watches stop and the command returns. */
  readonly signal: AbortSignal;
  readonly cwd: string;
  readonly homeDir: string;
}

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean;
  /** Shown in --help; the value's name after the flag, e.g. DIR. */
  placeholder?: string;
  description: string;
}

export type OptionSpecs = Record<string, OptionSpec>;

export type ParsedValues = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface ParsedArgs {
  values: ParsedValues;
  positionals: string[];
}

export interface Command {
  /** Words that select it, e.g. ["ca", "init"]. */
  readonly path: readonly string[];
  readonly summary: string;
  /** Synopsis after `beemeshctl`, e.g. "ca init --dir DIR [--trust-domain TD]". */
  readonly usage: string;
  /** Extra paragraphs for --help. */
  readonly details?: string;
  readonly options: OptionSpecs;
  /** Names of positional arguments for --help; absent means none are accepted. */
  readonly positionals?: string;
  run(args: ParsedArgs, ctx: CliContext): Promise<number>;
}

export const HELP_OPTION: OptionSpec = { type: "boolean", short: "h", description: "show this help" };

export function commandName(cmd: Pick<Command, "path">): string {
  return cmd.path.join(" ");
}

/** parseArgs with the command's options; its TypeErrors become UsageErrors. */
export function parseCommandArgs(cmd: Command, argv: readonly string[]): ParsedArgs & { help: boolean } {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean; default?: string | boolean }
  > = { help: { type: "boolean", short: "h" } };
  for (const [name, spec] of Object.entries(cmd.options)) {
    options[name] = {
      type: spec.type,
      ...(spec.short !== undefined ? { short: spec.short } : {}),
      ...(spec.multiple ? { multiple: true } : {}),
      ...(spec.default !== undefined ? { default: spec.default } : {}),
    };
  }
  try {
    const parsed = parseArgs({
      args: [...argv],
      options,
      strict: true,
      allowPositionals: cmd.positionals !== undefined,
    });
    const values = { ...parsed.values } as ParsedValues;
    const help = values["help"] === true;
    delete values["help"];
    return { values, positionals: parsed.positionals, help };
  } catch (err) {
    // Duck-typed: under Jest's VM modules Node's own errors come from another realm.
    const e = asErrorLike(err);
    if (e && String(e.code ?? "").startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(e.message.replace(/\. To specify a positional argument.*$/s, ""));
    }
    throw err;
  }
}

/** The --help text of a command. */
export function commandHelp(cmd: Command): string {
  const lines = [`${cmd.summary}`, "", "Usage:", `  beemeshctl ${cmd.usage}`, ""];
  if (cmd.details) lines.push(cmd.details.trimEnd(), "");
  const rows: [string, string][] = [];
  for (const [name, spec] of [...Object.entries(cmd.options), ["help", HELP_OPTION] as const]) {
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${spec.type === "string" ? ` ${spec.placeholder ?? "VALUE"}` : ""}`;
    let text = spec.description;
    if (spec.default !== undefined && spec.default !== false) text += ` (default ${String(spec.default)})`;
    if (spec.multiple) text += " (repeatable)";
    rows.push([flag, text]);
  }
  const width = Math.max(...rows.map(([f]) => f.length));
  lines.push("Options:");
  for (const [flag, text] of rows) lines.push(`  ${flag.padEnd(width)}  ${text}`);
  return lines.join("\n") + "\n";
}

// ------------------------------------------------------------ readers ---

export function stringOpt(values: ParsedValues, name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new UsageError(`--${name} takes a value`);
  return v;
}

export function requiredOpt(values: ParsedValues, name: string): string {
  const v = stringOpt(values, name);
  if (v === undefined || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

export function stringsOpt(values: ParsedValues, name: string): string[] {
  const v = values[name];
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string"))
    throw new UsageError(`--${name} takes values`);
  return v as string[];
}

export function boolOpt(values: ParsedValues, name: string): boolean {
  return values[name] === true;
}

/** `-o` value, one of `allowed` (undefined when absent). */
export function outputOpt<T extends string>(values: ParsedValues, allowed: readonly T[]): T | undefined {
  const v = stringOpt(values, "output");
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`--output must be one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A Go-style duration ("90s", "5m", "1h30m", "1.5h", "7d") in milliseconds; UsageError naming `what`. */
export function parseDuration(text: string, what = "duration"): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while (pos < text.length && (m = re.exec(text)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (text.length === 0 || pos !== text.length) {
    throw new UsageError(`${what} must look like 90s, 5m, 1h30m or 7d, got ${JSON.stringify(text)}`);
  }
  return Math.round(total);
}

/** A positive duration option, or its default. */
export function durationOpt(values: ParsedValues, name: string, fallback: string): number {
  const ms = parseDuration(stringOpt(values, name) ?? fallback, `--${name}`);
  if (!(ms > 0)) throw new UsageError(`--${name} must be longer than zero`);
  return ms;
}

/** Go's time.Duration.String() for whole seconds and above: 5m0s, 1h30m0s, 45s. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function checkNamespace(ns: string): string {
  if (!DNS1123_LABEL.test(ns))
    throw new UsageError(`namespace ${JSON.stringify(ns)} is not a DNS-1123 label`);
  return ns;
}

/**
 * One line for a failure: the message and its causes (when they add
 * something), newlines folded, so a script's log stays one line per error.
 */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    const e = asErrorLike(current);
    const text = e
      ? e.message || e.name || "error"
      : typeof current === "string"
        ? current
        : JSON.stringify(current);
    const clean = text.replace(/\s*\n\s*/g, "; ").trim();
    if (clean && !parts.some((p) => p.includes(clean))) parts.push(clean);
    const code = e?.code;
    if (typeof code === "string" && parts.length > 0 && !parts.some((p) => p.includes(code))) {
      parts[parts.length - 1] += ` (${code})`;
    }
    current = e?.cause;
  }
  return parts.join(": ") || "unknown error";
}

interface ErrorLike {
  message: string;
  name?: string;
  code?: unknown;
  cause?: unknown;
  stack?: string;
}

/** An Error from any realm (instanceof fails across Jest's VM contexts), or undefined. */
export function asErrorLike(value: unknown): ErrorLike | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  return typeof v["message"] === "string" ? (v as unknown as ErrorLike) : undefined;
}
