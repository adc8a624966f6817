// Writes the certificates and NATS configuration that deploy/kind and
// deploy/podman expect, one folder per mounted Secret/ConfigMap or bind mount.
//
// --target kind (hack/kind-e2e.sh loads each folder with kubectl):
//   <out>/ca/                                   the trust domain's CA (kept across runs)
//   <out>/secret/beemesh-nats-tls/              server.crt (chain), server.key, bundle.crt
//   <out>/configmap/beemesh-nats-config/        nats.conf
//   <out>/secret/beemesh-dispatcher-svid/       svid.crt, svid.key, bundle.crt
//   <out>/secret/beemesh-lease-keeper-svid/     svid.crt, svid.key, bundle.crt
//   <out>/secret/beemesh-node-svids/            <node>.crt, <node>.key per node, bundle.crt
// --target podman (deploy/podman/compose.yaml bind-mounts the folders):
//   <out>/ca/                                   the CA; join tokens are made against it
//   <out>/nats/                                 nats.conf, tls/{server.crt,server.key,bundle.crt}, jetstream/
//   <out>/dispatcher/                           svid.*, bundle.crt, api.crt, api.key (API on 127.0.0.1)
//   <out>/lease-keeper/, <out>/node-agent/      svid.crt, svid.key, bundle.crt
//   <out>/admin/                                admin.crt, admin.key, bundle.crt for beemeshctl/kubectl
// Usage: tsx hack/deploy-certs.ts --target kind|podman --out DIR --nodes n1,n2
//        [--namespace beemesh-system] [--trust-domain beemesh.local] [--prefix beemesh]
//        [--nats-replicas 3] [--ttl-hours 24] [--nats-tls-dir /etc/nats/tls] [--nats-store-dir /data/jetstream]
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { issueSvid, loadOrCreateCa, writeFileAtomic } from "../identity/ca.js";
import type { CertificateAuthority, Svid } from "../identity/ca.js";
import { NODE_ID_PATTERN, NODE_ROLE } from "../identity/join.js";
import { natsServerConfig } from "../identity/nats-config.js";
import { spiffeId } from "../identity/spiffe-id.js";

export class DeployCertsError extends Error {
  override name = "DeployCertsError";
  constructor(message: string) {
    super(`deploy-certs: ${message}`);
  }
}

/** Names deploy/kind/*.yaml refer to; the test checks both sides against this list. */
export const KIND_SECRETS = {
  natsTls: "beemesh-nats-tls",
  dispatcher: "beemesh-dispatcher-svid",
  leaseKeeper: "beemesh-lease-keeper-svid",
  nodes: "beemesh-node-svids",
} as const;
export const KIND_CONFIGMAPS = { natsConfig: "beemesh-nats-config" } as const;

export const NATS_SERVICE = "nats";
export const NATS_CLIENT_PORT = 4222;
export const NATS_CLUSTER_PORT = 6222;
export const NATS_MONITOR_PORT = 8222;

export interface KindNatsConfigOptions {
  namespace: string;
  replicas: number;
  prefix: string;
  tlsDir: string;
  storeDir: string;
}

/** DNS names of the NATS StatefulSet: the headless Service and each pod behind it. */
export function natsDnsNames(namespace: string): string[] {
  const svc = `${NATS_SERVICE}.${namespace}`;
  return [
    NATS_SERVICE,
    svc,
    `${svc}.svc`,
    `${svc}.svc.cluster.local`,
    `*.${svc}.svc`,
    `*.${svc}.svc.cluster.local`,
  ];
}

function replaceOnce(text: string, from: string, to: string): string {
  if (!text.includes(from))
    throw new DeployCertsError(`expected ${JSON.stringify(from)} in the generated nats.conf`);
  return text.replace(from, to);
}

/**
 * nats.conf for the StatefulSet: the project's generated config (users and
 * permissions per role, verify_and_map) moved off 127.0.0.1 onto the pod's
 * address, named after the pod ($POD_NAME from the downward API), with routes
 * to every peer over mutual TLS. Pure: returns text.
 */
export function kindNatsConfig(opts: KindNatsConfigOptions): string {
  if (!Number.isInteger(opts.replicas) || opts.replicas < 1)
    throw new DeployCertsError("nats replicas must be >= 1");
  const tls = {
    certFile: `${opts.tlsDir}/server.crt`,
    keyFile: `${opts.tlsDir}/server.key`,
    caFile: `${opts.tlsDir}/bundle.crt`,
  };
  let conf = natsServerConfig({
    port: NATS_CLIENT_PORT,
    serverName: "POD_NAME",
    httpPort: NATS_MONITOR_PORT,
    tls,
    jetstream: { storeDir: opts.storeDir },
    prefix: opts.prefix,
  });
  // Unquoted $POD_NAME is an environment reference in nats-server's config language.
  conf = replaceOnce(conf, 'server_name: "POD_NAME"', "server_name: $POD_NAME");
  conf = replaceOnce(
    conf,
    `listen: "127.0.0.1:${NATS_CLIENT_PORT}"`,
    `listen: "0.0.0.0:${NATS_CLIENT_PORT}"`,
  );
  conf = replaceOnce(conf, `http: "127.0.0.1:${NATS_MONITOR_PORT}"`, `http: "0.0.0.0:${NATS_MONITOR_PORT}"`);
  if (opts.replicas === 1) return conf;
  const peers = Array.from(
    { length: opts.replicas },
    (_, i) =>
      `nats-route://${NATS_SERVICE}-${i}.${NATS_SERVICE}.${opts.namespace}.svc.cluster.local:${NATS_CLUSTER_PORT}`,
  );
  return (
    conf +
    [
      "cluster {",
      '  name: "beemesh"',
      `  listen: "0.0.0.0:${NATS_CLUSTER_PORT}"`,
      // Routes authenticate each other with the same CA (mutual TLS), as on bare hosts.
      "  tls {",
      `    cert_file: ${JSON.stringify(tls.certFile)}`,
      `    key_file: ${JSON.stringify(tls.keyFile)}`,
      `    ca_file: ${JSON.stringify(tls.caFile)}`,
      "    verify: true",
      "    timeout: 5",
      "  }",
      `  routes: [${peers.map((p) => JSON.stringify(p)).join(", ")}]`,
      "}",
      "",
    ].join("\n")
  );
}

export function parseNodeList(value: string): string[] {
  const nodes = value
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n.length > 0);
  if (nodes.length === 0) throw new DeployCertsError("--nodes needs at least one node name");
  for (const n of nodes) {
    if (!NODE_ID_PATTERN.test(n))
      throw new DeployCertsError(`node name ${JSON.stringify(n)} is not a valid node id`);
  }
  return [...new Set(nodes)];
}

async function writeDir(dir: string, files: Record<string, { text: string; mode: number }>): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [name, f] of Object.entries(files)) await writeFileAtomic(join(dir, name), f.text, f.mode);
}

const pub = (text: string) => ({ text, mode: 0o644 });
const secret = (text: string) => ({ text, mode: 0o600 });

async function writeSvidSecret(dir: string, svid: Svid): Promise<void> {
  await writeDir(dir, {
    "svid.crt": pub(svid.chainPem),
    "svid.key": secret(svid.keyPem),
    "bundle.crt": pub(svid.bundlePem),
  });
}

export interface DeployCertsOptions {
  out: string;
  nodes: string[];
  namespace: string;
  trustDomain: string;
  prefix: string;
  natsReplicas: number;
  ttlMs: number;
  natsTlsDir: string;
  natsStoreDir: string;
}

async function issueServer(
  ca: CertificateAuthority,
  name: string,
  dnsNames: string[],
  ttlMs: number,
): Promise<Svid> {
  return issueSvid(ca, {
    id: spiffeId(ca.trustDomain, "controller", name, "0"),
    role: name,
    dnsNames: [...dnsNames, "localhost"],
    ipAddresses: ["127.0.0.1"],
    ttlMs,
  });
}

const controllerSvid = (
  ca: CertificateAuthority,
  name: string,
  instance: string,
  ttlMs: number,
): Promise<Svid> =>
  issueSvid(ca, { id: spiffeId(ca.trustDomain, "controller", name, instance), role: name, ttlMs });

/** --target kind: every folder under secret/ and configmap/ listed at the top of this file; returns the CA. */
export async function writeKindCerts(opts: DeployCertsOptions): Promise<CertificateAuthority> {
  const ca = await loadOrCreateCa(join(opts.out, "ca"), { trustDomain: opts.trustDomain });
  const ttlMs = opts.ttlMs;
  const secretDir = (name: string) => join(opts.out, "secret", name);

  const server = await issueServer(ca, "nats-server", natsDnsNames(opts.namespace), ttlMs);
  await writeDir(secretDir(KIND_SECRETS.natsTls), {
    "server.crt": pub(server.chainPem),
    "server.key": secret(server.keyPem),
    "bundle.crt": pub(server.bundlePem),
  });
  await writeDir(join(opts.out, "configmap", KIND_CONFIGMAPS.natsConfig), {
    "nats.conf": pub(
      kindNatsConfig({
        namespace: opts.namespace,
        replicas: opts.natsReplicas,
        prefix: opts.prefix,
        tlsDir: opts.natsTlsDir,
        storeDir: opts.natsStoreDir,
      }),
    ),
  });
  await writeSvidSecret(
    secretDir(KIND_SECRETS.dispatcher),
    await controllerSvid(ca, "dispatcher", "kind", ttlMs),
  );
  await writeSvidSecret(
    secretDir(KIND_SECRETS.leaseKeeper),
    await controllerSvid(ca, "lease-keeper", "kind", ttlMs),
  );

  // One SVID per node: the DaemonSet's init container picks its own by spec.nodeName.
  const nodeFiles: Record<string, { text: string; mode: number }> = { "bundle.crt": pub(ca.certPem) };
  for (const node of opts.nodes) {
    const svid = await issueSvid(ca, { id: spiffeId(ca.trustDomain, "node", node), role: NODE_ROLE, ttlMs });
    nodeFiles[`${node}.crt`] = pub(svid.chainPem);
    nodeFiles[`${node}.key`] = secret(svid.keyPem);
  }
  await writeDir(secretDir(KIND_SECRETS.nodes), nodeFiles);
  return ca;
}

/** Folders deploy/podman/compose.yaml mounts, each at the path its service reads. */
export const PODMAN_DIRS = ["nats", "dispatcher", "lease-keeper", "node-agent", "admin"] as const;
/** Where compose.yaml mounts <out>/nats inside the nats container. */
export const PODMAN_NATS_MOUNT = "/nats";

/** --target podman: one host, every server on 127.0.0.1 (the project's generated nats.conf as is). */
export async function writePodmanCerts(opts: DeployCertsOptions): Promise<CertificateAuthority> {
  const [node, ...rest] = opts.nodes;
  if (node === undefined || rest.length > 0)
    throw new DeployCertsError("--target podman takes exactly one node id");
  const ca = await loadOrCreateCa(join(opts.out, "ca"), { trustDomain: opts.trustDomain });
  const ttlMs = opts.ttlMs;
  const dir = (name: (typeof PODMAN_DIRS)[number]) => join(opts.out, name);

  const server = await issueServer(ca, "nats-server", [], ttlMs);
  await writeDir(join(dir("nats"), "tls"), {
    "server.crt": pub(server.chainPem),
    "server.key": secret(server.keyPem),
    "bundle.crt": pub(server.bundlePem),
  });
  await mkdir(join(dir("nats"), "jetstream"), { recursive: true });
  await writeDir(dir("nats"), {
    "nats.conf": pub(
      natsServerConfig({
        port: NATS_CLIENT_PORT,
        serverName: "beemesh-0",
        httpPort: NATS_MONITOR_PORT,
        tls: {
          certFile: `${PODMAN_NATS_MOUNT}/tls/server.crt`,
          keyFile: `${PODMAN_NATS_MOUNT}/tls/server.key`,
          caFile: `${PODMAN_NATS_MOUNT}/tls/bundle.crt`,
        },
        jetstream: { storeDir: `${PODMAN_NATS_MOUNT}/jetstream` },
        prefix: opts.prefix,
      }),
    ),
  });

  const dispatcher = await controllerSvid(ca, "dispatcher", node, ttlMs);
  await writeSvidSecret(dir("dispatcher"), dispatcher);
  // The API's serving certificate: kubectl checks 127.0.0.1 against its IP SANs.
  const api = await issueSvid(ca, {
    id: spiffeId(ca.trustDomain, "controller", "dispatcher", `${node}-api`),
    role: "dispatcher",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    ttlMs,
  });
  await writeDir(dir("dispatcher"), { "api.crt": pub(api.chainPem), "api.key": secret(api.keyPem) });
  await writeSvidSecret(dir("lease-keeper"), await controllerSvid(ca, "lease-keeper", node, ttlMs));
  await writeSvidSecret(
    dir("node-agent"),
    await issueSvid(ca, { id: spiffeId(ca.trustDomain, "node", node), role: NODE_ROLE, ttlMs }),
  );
  const admin = await issueSvid(ca, { id: spiffeId(ca.trustDomain, "user", "admin"), role: "admin", ttlMs });
  await writeDir(dir("admin"), {
    "admin.crt": pub(admin.chainPem),
    "admin.key": secret(admin.keyPem),
    "bundle.crt": pub(admin.bundlePem),
  });
  return ca;
}

function positiveInt(value: string | undefined, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new DeployCertsError(`--${name} must be a positive integer, got ${value}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: "string" },
      out: { type: "string" },
      nodes: { type: "string" },
      namespace: { type: "string", default: "beemesh-system" },
      "trust-domain": { type: "string", default: "beemesh.local" },
      prefix: { type: "string", default: "beemesh" },
      "nats-replicas": { type: "string", default: "3" },
      "ttl-hours": { type: "string", default: "24" },
      "nats-tls-dir": { type: "string", default: "/etc/nats/tls" },
      "nats-store-dir": { type: "string", default: "/data/jetstream" },
    },
  });
  if (!values.out) throw new DeployCertsError("--out is required");
  if (!values.nodes) throw new DeployCertsError("--nodes is required");
  const target = values.target;
  if (target !== "kind" && target !== "podman") throw new DeployCertsError("--target must be kind or podman");
  const out = resolve(values.out);
  const write = target === "kind" ? writeKindCerts : writePodmanCerts;
  await write({
    out,
    nodes: parseNodeList(values.nodes),
    namespace: values.namespace,
    trustDomain: values["trust-domain"],
    prefix: values.prefix,
    natsReplicas: positiveInt(values["nats-replicas"], "nats-replicas"),
    ttlMs: positiveInt(values["ttl-hours"], "ttl-hours") * 60 * 60 * 1000,
    natsTlsDir: values["nats-tls-dir"],
    natsStoreDir: values["nats-store-dir"],
  });
  process.stdout.write(`deploy-certs: wrote the ${target} certificates and configuration under ${out}\n`);
}

// Runs only as a script, so tests can import the pure helpers above.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
