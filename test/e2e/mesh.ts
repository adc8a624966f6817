// The single-host mesh of `make up` and `make e2e`: paths under its state dir,
// and the certificates hack/up.sh asks for (tsx test/e2e/mesh.ts certs ...).
// The CA is the one hack/nats/up.sh serves with (<state>/nats/ca); every
// controller gets an SVID of its own, the API a serving certificate for
// 127.0.0.1, and kubectl a kubeconfig with a user SVID.
import "reflect-metadata";
import { mkdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import {
  issueSvid,
  loadOrCreateCa,
  writeFileAtomic,
  type CertificateAuthority,
  type Svid,
} from "../../identity/ca.js";
import { NODE_ROLE } from "../../identity/join.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { kubeconfigForSvid } from "../../cli/kubeconfig.js";

export class MeshError extends Error {
  override name = "MeshError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`mesh: ${message}`, options);
  }
}

/** Where everything of one mesh lives (hack/up.sh and hack/down.sh use the same layout). */
export function meshPaths(state: string) {
  const root = resolve(state);
  return {
    root,
    caDir: join(root, "nats", "ca"),
    dispatcher: join(root, "dispatcher"),
    leaseKeeper: join(root, "lease-keeper"),
    node: (id: string) => join(root, "nodes", id),
    nodeSvid: (id: string) => join(root, "nodes", id, "svid"),
    /** `podman` with the node's own store (hack/up.sh writes it): the node's machine, as far as pods go. */
    nodePodman: (id: string) => join(root, "nodes", id, "bin", "podman"),
    kubeconfig: join(root, "kubeconfig"),
    logs: join(root, "logs"),
    pids: join(root, "pids"),
    env: join(root, "mesh.env"),
  };
}

export interface MeshCertOptions {
  state: string;
  nodes: readonly string[];
  trustDomain: string;
  ttlMs: number;
  /** The user SVID's name in the kubeconfig (spiffe://<td>/user/<name>). */
  user: string;
  apiUrl: string;
}

const pub = 0o644;
const secret = 0o600;

async function writeSvidDir(dir: string, svid: Svid): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, "svid.key"), svid.keyPem, secret);
  await writeFileAtomic(join(dir, "svid.crt"), svid.chainPem, pub);
  await writeFileAtomic(join(dir, "bundle.crt"), svid.bundlePem, pub);
}

/** Issues every certificate of the mesh (fresh each `make up`; the CA is kept). */
export async function writeMeshCerts(opts: MeshCertOptions): Promise<CertificateAuthority> {
  const p = meshPaths(opts.state);
  const ca = await loadOrCreateCa(p.caDir, { trustDomain: opts.trustDomain });
  if (ca.trustDomain !== opts.trustDomain) {
    throw new MeshError(`the CA in ${p.caDir} is for ${ca.trustDomain}, not ${opts.trustDomain}`);
  }
  const td = ca.trustDomain;
  const ttlMs = opts.ttlMs;
  await writeSvidDir(
    p.dispatcher,
    await issueSvid(ca, { id: spiffeId(td, "controller", "dispatcher", "mesh"), role: "dispatcher", ttlMs }),
  );
  // kubectl checks 127.0.0.1 against the serving certificate's IP SANs.
  const api = await issueSvid(ca, {
    id: spiffeId(td, "controller", "dispatcher", "mesh-api"),
    role: "dispatcher",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    ttlMs,
  });
  await writeFileAtomic(join(p.dispatcher, "api.key"), api.keyPem, secret);
  await writeFileAtomic(join(p.dispatcher, "api.crt"), api.chainPem, pub);
  await writeSvidDir(
    p.leaseKeeper,
    await issueSvid(ca, {
      id: spiffeId(td, "controller", "lease-keeper", "mesh"),
      role: "lease-keeper",
      ttlMs,
    }),
  );
  for (const node of opts.nodes) {
    await writeSvidDir(
      p.nodeSvid(node),
      await issueSvid(ca, { id: spiffeId(td, "node", node), role: NODE_ROLE, ttlMs }),
    );
  }
  const user = await issueSvid(ca, { id: spiffeId(td, "user", opts.user), role: "user", ttlMs });
  await writeFileAtomic(p.kubeconfig, kubeconfigForSvid(user, opts.apiUrl), secret);
  return ca;
}

/** hack/up.sh's mesh.env: KEY=VALUE lines (ports, node ids, paths) for down.sh and the e2e. */
export async function readMeshEnv(state: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(meshPaths(state).env, "utf8");
  } catch (err) {
    throw new MeshError(`no mesh under ${state} (hack/up.sh writes ${meshPaths(state).env})`, { cause: err });
  }
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2].replace(/^'(.*)'$/, "$1");
  }
  return out;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command !== "certs")
    throw new MeshError(
      `usage: mesh.ts certs --state DIR --nodes a,b --api-url URL [--trust-domain TD] [--ttl-hours N] [--user NAME]`,
    );
  const { values } = parseArgs({
    args: rest,
    options: {
      state: { type: "string" },
      nodes: { type: "string" },
      "api-url": { type: "string" },
      "trust-domain": { type: "string", default: "beemesh.local" },
      "ttl-hours": { type: "string", default: "24" },
      user: { type: "string", default: "admin" },
    },
    strict: true,
  });
  if (!values.state || !values.nodes || !values["api-url"])
    throw new MeshError("--state, --nodes and --api-url are required");
  const hours = Number(values["ttl-hours"]);
  if (!(Number.isInteger(hours) && hours > 0)) throw new MeshError(`--ttl-hours must be a positive integer`);
  const nodes = values.nodes
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n.length > 0);
  const ca = await writeMeshCerts({
    state: values.state,
    nodes,
    trustDomain: values["trust-domain"],
    ttlMs: hours * 3600_000,
    user: values.user,
    apiUrl: values["api-url"],
  });
  process.stdout.write(
    `mesh: certificates for ${nodes.length} nodes from the CA of ${ca.trustDomain} in ${meshPaths(values.state).caDir}\n`,
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
