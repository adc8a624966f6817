// The watchdog's SVID from the SPIFFE Workload API its node agent mounted
// (DESIGN §5): the first X509SVIDResponse starts the bus, later ones rotate it
// (Bus SvidSource.onUpdate). The stream is followed until the signal aborts,
// reconnecting with backoff when it breaks. DER and Node crypto only: no
// certificate library or protobufjs in the sidecar (its memory floor).
import { OID_OU, nameAttribute } from "../../identity/certificate.js";
import { derToPem } from "../../identity/der.js";
import type { SvidCredentials } from "../../identity/svid.js";
import { importPkcs8Pem } from "../../identity/webcrypto.js";
import { WorkloadApiDerClient, type X509DerContext } from "../../identity/workload-api/der-client.js";
import type { SvidSource } from "../../protocol/bus/index.js";

export class WorkloadSvidError extends Error {
  override name = "WorkloadSvidError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`watchdog: workload api: ${message}`, options);
  }
}

/** An SVID as the bus uses it, from the first entry of a Workload API response. */
export async function svidFromContext(ctx: X509DerContext): Promise<SvidCredentials> {
  const entry = ctx.svids[0];
  if (entry === undefined) throw new WorkloadSvidError("the response holds no SVID");
  const leafDer = entry.chain[0];
  if (leafDer === undefined) throw new WorkloadSvidError("the SVID has no certificate");
  const keyPem = derToPem(entry.privateKeyDer, "PRIVATE KEY");
  const certPem = derToPem(leafDer, "CERTIFICATE");
  return {
    // der-client checked it is the leaf's only URI SAN.
    spiffeId: entry.spiffeId.toString(),
    role: nameAttribute(entry.leaf.subject, OID_OU)?.trim() ?? "",
    certPem,
    certDer: leafDer,
    keyPem,
    privateKey: await importPkcs8Pem(keyPem),
    chainPem: entry.chain.map((c) => derToPem(c, "CERTIFICATE")).join("\n") + "\n",
    bundlePem: entry.bundle.map((c) => derToPem(c, "CERTIFICATE")).join("\n") + "\n",
    notBefore: entry.leaf.notBefore,
    notAfter: entry.leaf.notAfter,
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
  const once = new WorkloadApiDerClient({ socketPath });
  let current: SvidCredentials;
  try {
    current = await svidFromContext(
      await once.fetchX509Context({ timeoutMs: opts.firstTimeoutMs ?? 30_000 }),
    );
  } finally {
    once.close();
  }
  const listeners = new Set<(svid: SvidCredentials) => void>();
  void (async () => {
    let backoffMs = 500;
    while (!signal.aborted) {
      const client = new WorkloadApiDerClient({ socketPath });
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
