// beemesh kubeconfig: a kubeconfig for the dispatcher's API with a user SVID
// (client certificate and key embedded as data, the trust bundle as the CA).
// Usage:
//   kubeconfig --ca-dir DIR --user NAME --server https://127.0.0.1:6443 [--out FILE]
//              [--namespace default] [--ttl 1h] [--trust-domain beemesh.local]
//   kubeconfig --cert FILE --key FILE --ca FILE --server URL [--user NAME] [--out FILE]
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { dump as dumpYaml } from "js-yaml";
import { issueSvid, loadCa, writeFileAtomic, type Svid } from "../identity/ca.js";
import { spiffeId } from "../identity/spiffe-id.js";

export class KubeconfigError extends Error {
  override name = "KubeconfigError";
  constructor(message: string) {
    super(`kubeconfig: ${message}`);
  }
}

export interface KubeconfigOptions {
  /** https://host:port of the dispatcher API (http:// for --dev-insecure). */
  server: string;
  /** PEM of the CA(s) the server certificate chains to; absent for plain HTTP. */
  caPem?: string;
  /** Client certificate (PEM) and its key; absent for plain HTTP. */
  certPem?: string;
  keyPem?: string;
  user?: string;
  cluster?: string;
  context?: string;
  namespace?: string;
}

const b64 = (pem: string) => Buffer.from(pem, "utf8").toString("base64");

/** The kubeconfig text (YAML). */
export function buildKubeconfig(opts: KubeconfigOptions): string {
  const url = new URL(opts.server);
  if (url.protocol === "https:" && (!opts.caPem || !opts.certPem || !opts.keyPem)) {
    throw new KubeconfigError("an https server needs the CA, a client certificate and its key");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new KubeconfigError(`unsupported server URL ${opts.server}`);
  const cluster = opts.cluster ?? "beemesh";
  const user = opts.user ?? "beemesh-user";
  const context = opts.context ?? cluster;
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: cluster,
        cluster: {
          server: opts.server,
          ...(url.protocol === "https:" ? { "certificate-authority-data": b64(opts.caPem!) } : {}),
        },
      },
    ],
    users: [
      {
        name: user,
        user:
          url.protocol === "https:"
            ? { "client-certificate-data": b64(opts.certPem!), "client-key-data": b64(opts.keyPem!) }
            : {},
      },
    ],
    contexts: [{ name: context, context: { cluster, user, namespace: opts.namespace ?? "default" } }],
    "current-context": context,
    preferences: {},
  };
  return dumpYaml(config);
}

/** A kubeconfig for a user SVID (the user name is the last segment of its /user/<name> ID). */
export function kubeconfigForSvid(svid: Svid, server: string, opts: { namespace?: string } = {}): string {
  const user = svid.spiffeId.split("/").pop() ?? "user";
  return buildKubeconfig({
    server,
    caPem: svid.bundlePem,
    certPem: svid.certPem,
    keyPem: svid.keyPem,
    user,
    ...(opts.namespace ? { namespace: opts.namespace } : {}),
  });
}

/** Writes the kubeconfig with mode 0600: it holds a private key. */
export async function writeKubeconfig(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text, 0o600);
}

function parseTtl(text: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text);
  if (!m) throw new KubeconfigError(`--ttl must look like 30m, 1h or 7d, got ${JSON.stringify(text)}`);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      server: { type: "string" },
      "ca-dir": { type: "string" },
      user: { type: "string" },
      ttl: { type: "string", default: "1h" },
      cert: { type: "string" },
      key: { type: "string" },
      ca: { type: "string" },
      namespace: { type: "string", default: "default" },
      out: { type: "string" },
    },
    strict: true,
  });
  if (!values.server) throw new KubeconfigError("--server is required");
  let text: string;
  if (values["ca-dir"]) {
    if (!values.user) throw new KubeconfigError("--user is required with --ca-dir");
    const ca = await loadCa(values["ca-dir"]);
    const svid = await issueSvid(ca, {
      id: spiffeId(ca.trustDomain, "user", values.user),
      role: "user",
      ttlMs: parseTtl(values.ttl),
    });
    text = kubeconfigForSvid(svid, values.server, { namespace: values.namespace });
  } else if (values.cert && values.key && values.ca) {
    text = buildKubeconfig({
      server: values.server,
      caPem: await readFile(values.ca, "utf8"),
      certPem: await readFile(values.cert, "utf8"),
      keyPem: await readFile(values.key, "utf8"),
      ...(values.user ? { user: values.user } : {}),
      namespace: values.namespace,
    });
  } else if (values.server.startsWith("http://")) {
    text = buildKubeconfig({ server: values.server, namespace: values.namespace });
  } else {
    throw new KubeconfigError("give --ca-dir and --user, or --cert, --key and --ca");
  }
  if (values.out) await writeKubeconfig(values.out, text);
  else process.stdout.write(text);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
}
