// A controller's X.509-SVID from a directory (svid.crt: leaf first, then any
// chain; svid.key: PKCS#8; bundle.crt: the trust bundle), as hack/deploy-certs.ts
// and the spiffe-helper write it. Polled for changes so a rotated SVID reaches
// the bus without a restart (the Bus's SvidSource.onUpdate).
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Svid } from "../../identity/ca.js";
import { uriSanOf } from "../../identity/ca.js";
import { importPkcs8Pem, x509 } from "../../identity/crypto.js";
import type { SvidSource } from "../../protocol/bus/index.js";

export const SVID_FILES = { cert: "svid.crt", key: "svid.key", bundle: "bundle.crt" } as const;

export class SvidDirError extends Error {
  override name = "SvidDirError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`svid-dir: ${message}`, options);
  }
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export async function loadSvidDir(dir: string): Promise<Svid> {
  let certText: string;
  let keyText: string;
  let bundleText: string;
  try {
    [certText, keyText, bundleText] = (await Promise.all(
      [SVID_FILES.cert, SVID_FILES.key, SVID_FILES.bundle].map((f) => readFile(join(dir, f), "utf8")),
    )) as [string, string, string];
  } catch (err) {
    throw new SvidDirError(
      `cannot read ${SVID_FILES.cert}, ${SVID_FILES.key} and ${SVID_FILES.bundle} in ${dir}`,
      { cause: err },
    );
  }
  const blocks = certText.match(PEM_BLOCK) ?? [];
  const leafPem = blocks[0];
  if (leafPem === undefined) throw new SvidDirError(`${SVID_FILES.cert} holds no certificate`);
  const cert = new x509.X509Certificate(leafPem);
  const privateKey = await importPkcs8Pem(keyText);
  const role = /(?:^|,\s*)OU=([^,]+)/.exec(cert.subject)?.[1]?.trim() ?? "";
  return {
    spiffeId: uriSanOf(cert),
    role,
    cert,
    certPem: cert.toString("pem"),
    certDer: new Uint8Array(cert.rawData),
    keyPem: keyText,
    privateKey,
    chainPem: certText,
    bundlePem: bundleText,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

export interface SvidDirSource extends SvidSource {
  close(): void;
}

/** The SVID in `dir`, reloaded when its files change (checked every pollMs, default 10 s). */
export async function svidDirSource(
  dir: string,
  opts: { pollMs?: number; onError?: (err: unknown) => void } = {},
): Promise<SvidDirSource> {
  let current = await loadSvidDir(dir);
  const listeners = new Set<(svid: Svid) => void>();
  const stamp = async () => {
    const stats = await Promise.all(Object.values(SVID_FILES).map((f) => stat(join(dir, f))));
    return stats.map((s) => `${s.mtimeMs}:${s.size}`).join("|");
  };
  let last = await stamp();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void (async () => {
      try {
        const now = await stamp();
        if (now === last) return;
        const next = await loadSvidDir(dir);
        last = now;
        if (next.certPem === current.certPem) return;
        current = next;
        for (const l of listeners) l(next);
      } catch (err) {
        // A half-written rotation: try again at the next poll.
        opts.onError?.(err);
      } finally {
        busy = false;
      }
    })();
  }, opts.pollMs ?? 10_000);
  timer.unref();
  return {
    current: () => current,
    onUpdate(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: () => clearInterval(timer),
  };
}
