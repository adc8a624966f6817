// Runs beemeshctl as a child process (node --import tsx cli/beemeshctl.ts),
// as an operator would, and collects its output. Every child is killed when
// the test file ends, so a hung command cannot outlive its test.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { withTimeout } from "../helpers/wait.js";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const ENTRY = join(REPO, "cli", "beemeshctl.ts");

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface LiveCli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout matches (rejects after timeoutMs or if the process exits first). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  done: Promise<CliRun>;
}

const live = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const c of live) c.kill("SIGKILL");
  live.clear();
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Jest's flag is for Jest, and the operator's own settings must not leak into a test.
  for (const k of [
    "NODE_OPTIONS",
    "KUBECONFIG",
    "BEEMESH_NATS_URL",
    "BEEMESH_SVID_DIR",
    "BEEMESH_JOIN_TOKEN",
  ])
    delete env[k];
  return { ...env, ...extra };
}

export function startCli(
  args: string[],
  opts: { env?: Record<string, string>; input?: string } = {},
): LiveCli {
  const child = spawn(process.execPath, ["--import", "tsx", ENTRY, ...args], {
    cwd: REPO,
    env: childEnv(opts.env ?? {}),
    stdio: ["pipe", "pipe", "pipe"],
  });
  live.add(child);
  let stdout = "";
  let stderr = "";
  const listeners = new Set<() => void>();
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString("utf8");
    for (const l of [...listeners]) l();
  });
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  const done = new Promise<CliRun>((resolve) => {
    child.once("close", (code, signal) => {
      live.delete(child);
      for (const l of [...listeners]) l();
      resolve({ code, signal, stdout, stderr });
    });
  });
  child.stdin!.end(opts.input ?? "");
  let exited = false;
  void done.then(() => (exited = true));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    done,
    waitForOutput(pattern, timeoutMs = 20_000) {
      return withTimeout(
        new Promise<string>((resolve, reject) => {
          const check = () => {
            const m = pattern.exec(stdout);
            if (m) {
              listeners.delete(check);
              resolve(m[0]);
            } else if (exited) {
              listeners.delete(check);
              reject(
                new Error(`beemeshctl exited before printing ${pattern}: stdout=${stdout} stderr=${stderr}`),
              );
            }
          };
          listeners.add(check);
          check();
        }),
        timeoutMs,
        `beemeshctl output ${pattern} (stdout so far: ${JSON.stringify(stdout)}, stderr: ${JSON.stringify(stderr)})`,
      );
    },
  };
}

/** Runs to completion (bounded by timeoutMs, then killed). */
export async function runCliChild(
  args: string[],
  opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<CliRun> {
  const cli = startCli(args, opts);
  try {
    return await withTimeout(cli.done, opts.timeoutMs ?? 30_000, `beemeshctl ${args.join(" ")}`);
  } catch (err) {
    cli.child.kill("SIGKILL");
    throw err;
  }
}
