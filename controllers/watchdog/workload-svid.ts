// The watchdog's SVID from the SPIFFE Workload API its node agent mounted
// (DESIGN §5): the first X509SVIDResponse starts the bus, later ones rotate it
// (Bus SvidSource.onUpdate). The stream is followed until the signal aborts,
// reconnecting with backoff when it breaks.
import type { Svid } from "../../identity/ca.js";
import { uriSanOf } from "../../identity/ca.js";
import { importPkcs8Pem } from "../../identity/crypto.js";
import { derToPem } from "../../identity/der.js";
import { WorkloadApiClient, type X509Context } from "../../identity/workload-api/index.js";
import type { SvidSource } from "../../protocol/bus/index.js";

export class WorkloadSvidError extends Error {
  override name = "WorkloadSvidError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`watchdog: workload api: ${message}`, options);
  }
}

/** An SVID as the bus uses it, from the first entry of a Workload API response. */
export async function svidFromContext(ctx: X509Context): Promise<Svid> {
  const entry = ctx.svids[0];
  if (entry === undefined) throw new WorkloadSvidError("the response holds no SVID");
  const leaf = entry.chain[0];
  if (leaf === undefined) throw new WorkloadSvidError("the SVID has no certificate");
  const keyPem = derToPem(entry.privateKeyDer, "PRIVATE KEY");
  const chainPem = entry.chain.map((c) => c.toString("pem")).join("\n") + "\n";
  return {
    spiffeId: uriSanOf(leaf),
    role: /(?:^|,\s*)OU=([^,]+)/.exec(leaf.subject)?.[1]?.trim() ?? "",
    cert: leaf,
    certPem: leaf.toString("pem"),
    certDer: new Uint8Array(leaf.rawData),
    keyPem,
    privateKey: await importPkcs8Pem(keyPem),
    chainPem,
    bundlePem: entry.bundle.map((c) => c.toString("pem")).join("\n") + "\n",
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
  };
}

export interface WorkloadSvidSource extends SvidSource {
  readonly spiffeId: string;
}

/** Resolves with a source once the first SVID arrived; follows rotations until `signal` aborts. */
export async function workloadSvidSource(
  socketPath: string,
  signal: AbortSignal,
  opts: { firstTimeoutMs?: number; onError?: (err: unknown) => void } = {},
): Promise<WorkloadSvidSource> {
  const once = new WorkloadApiClient({ socketPath });
  let current: Svid;
  try {
    current = await svidFromContext(
      await once.fetchX509Context({ timeoutMs: opts.firstTimeoutMs ?? 30_000 }),
    );
  } finally {
    once.close();
  }
  const listeners = new Set<(svid: Svid) => void>();
  void (async () => {
    let backoffMs = 500;
    while (!signal.aborted) {
      const client = new WorkloadApiClient({ socketPath });
      try {
        for await (const ctx of client.watchX509Context(signal)) {
          backoffMs = 500;
          const next = await svidFromContext(ctx);
          if (next.certPem === current.certPem) continue;
          current = next;
          for (const l of listeners) l(next);
        }
      } catch (err) {
        opts.onError?.(err);
      } finally {
        client.close();
      }
      if (signal.aborted) break;
      await new Promise((r) => setTimeout(r, backoffMs).unref());
      backoffMs = Math.min(backoffMs * 2, 30_000);
    }
  })();
  return {
    get spiffeId() {
      return current.spiffeId;
    },
    current: () => current,
    onUpdate(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
