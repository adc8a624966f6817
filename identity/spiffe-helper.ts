// A spiffe-helper for workloads that read certificates from files: it follows
// the Workload API stream, writes the SVID chain, key (0600) and bundle
// atomically on every update, then tells the workload (a signal to a pid, or
// a callback). Apps that cannot speak the Workload API get rotation for free.
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { writeFileAtomic } from "./ca.js";
import { derToPem } from "./der.js";
import type { IdentityLog } from "./log.js";
import { silentLog } from "./log.js";
import type { X509Context } from "./workload-api/client.js";
import { WorkloadApiClient } from "./workload-api/client.js";

export class SpiffeHelperError extends Error {
  override name = "SpiffeHelperError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`identity: spiffe-helper: ${message}`, options);
  }
}

export interface SpiffeHelperFileNames {
  cert: string;
  key: string;
  bundle: string;
}

/** The names the SPIFFE project's spiffe-helper uses by default. */
export const DEFAULT_FILE_NAMES: SpiffeHelperFileNames = {
  cert: "svid.pem",
  key: "svid_key.pem",
  bundle: "svid_bundle.pem",
};

export interface SpiffeHelperUpdate {
  readonly spiffeId: string;
  readonly notAfter: Date;
  readonly paths: SpiffeHelperFileNames;
  /** 1 for the first SVID written, then one more per rotation. */
  readonly sequence: number;
}

export type NotifyTarget = { pid: number } | { pidFile: string };

export interface SpiffeHelperOptions {
  socketPath: string;
  /** Directory the files go to (created 0700 when missing). */
  dir: string;
  fileNames?: Partial<SpiffeHelperFileNames>;
  /** Process to signal after each write. */
  notify?: NotifyTarget;
  /** Default SIGHUP. */
  renewSignal?: NodeJS.Signals;
  onUpdate?: (update: SpiffeHelperUpdate) => void | Promise<void>;
  /** Stops the helper; runSpiffeHelper resolves once it has. */
  signal: AbortSignal;
  /** Reconnect backoff after a broken stream: doubles from initialMs to maxMs. */
  reconnect?: { initialMs?: number; maxMs?: number };
  /** Return after the first write instead of following rotations. */
  once?: boolean;
  log?: IdentityLog;
}

/** Writes the first SVID of ctx: key first, so a reader never pairs a new cert with an old key's absence. */
export async function writeX509ContextFiles(
  dir: string,
  names: SpiffeHelperFileNames,
  ctx: X509Context,
): Promise<SpiffeHelperFileNames> {
  const svid = ctx.svids[0];
  if (!svid) throw new SpiffeHelperError("no SVID to write");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const paths = { cert: join(dir, names.cert), key: join(dir, names.key), bundle: join(dir, names.bundle) };
  const certPem = svid.chain.map((c) => c.toString("pem")).join("\n") + "\n";
  const bundlePem = svid.bundle.map((c) => c.toString("pem")).join("\n") + "\n";
  await writeFileAtomic(paths.key, derToPem(svid.privateKeyDer, "PRIVATE KEY") + "\n", 0o600);
  await writeFileAtomic(paths.cert, certPem, 0o644);
  await writeFileAtomic(paths.bundle, bundlePem, 0o644);
  return paths;
}

async function targetPid(target: NotifyTarget): Promise<number> {
  if ("pid" in target) return target.pid;
  const text = (await readFile(target.pidFile, "utf8")).trim();
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) throw new SpiffeHelperError(`${target.pidFile} holds no pid`);
  return pid;
}

/** Follows the Workload API until `signal` aborts, writing files and notifying on every update. */
export async function runSpiffeHelper(opts: SpiffeHelperOptions): Promise<void> {
  const names = { ...DEFAULT_FILE_NAMES, ...opts.fileNames };
  const log = opts.log ?? silentLog;
  const initialMs = opts.reconnect?.initialMs ?? 500;
  const maxMs = opts.reconnect?.maxMs ?? 30_000;
  const renewSignal = opts.renewSignal ?? "SIGHUP";
  let sequence = 0;
  let backoffMs = initialMs;

  const notify = async (ctx: X509Context, paths: SpiffeHelperFileNames) => {
    const svid = ctx.svids[0]!;
    const update: SpiffeHelperUpdate = {
      spiffeId: svid.spiffeId.toString(),
      notAfter: svid.notAfter,
      paths,
      sequence,
    };
    log.info("spiffe-helper: wrote svid", {
      spiffe_id: update.spiffeId,
      not_after: update.notAfter.toISOString(),
      sequence,
    });
    if (opts.notify) {
      try {
        const pid = await targetPid(opts.notify);
        process.kill(pid, renewSignal);
      } catch (err) {
        log.warn("spiffe-helper: could not signal the workload", {
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    await opts.onUpdate?.(update);
  };

  while (!opts.signal.aborted) {
    const client = new WorkloadApiClient({ socketPath: opts.socketPath });
    try {
      for await (const ctx of client.watchX509Context(opts.signal)) {
        const paths = await writeX509ContextFiles(opts.dir, names, ctx);
        sequence++;
        backoffMs = initialMs;
        await notify(ctx, paths);
        if (opts.once) return;
      }
    } catch (err) {
      log.warn("spiffe-helper: workload api stream broke", {
        error: err instanceof Error ? err.message : String(err),
        retry_in_ms: backoffMs,
      });
    } finally {
      client.close();
    }
    if (opts.signal.aborted) break;
    await delay(backoffMs, undefined, { signal: opts.signal }).catch(() => undefined);
    backoffMs = Math.min(maxMs, backoffMs * 2);
  }
}
