// Identity commands (DESIGN §5): the CA, SVIDs for servers and people, join
// tokens and the node side of the join. Thin wrappers over identity/.
import { access, readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import {
  CA_CERT_FILE,
  CA_KEY_FILE,
  issueSvid,
  loadCa,
  loadOrCreateCa,
  writeSvidFiles,
} from "../../identity/ca.js";
import { DEFAULT_TRUST_DOMAIN, parseSpiffeId, validateTrustDomain } from "../../identity/spiffe-id.js";
import { JoinAuthority, JoinTokenStore, caCertHash } from "../../identity/join.js";
import { joinMesh } from "../../identity/join-http.js";
import {
  CliError,
  EXIT,
  UsageError,
  durationOpt,
  requiredOpt,
  stringOpt,
  stringsOpt,
  type CliContext,
  type Command,
} from "./common.js";

/** SVID files in an --out directory (what controllers/common/svid-dir.ts reads). */
export const SVID_NAME = "svid";

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export const caInit: Command = {
  path: ["ca", "init"],
  summary: "Create the trust domain's CA in a directory, or show the one already there",
  usage: "ca init --dir DIR [--trust-domain beemesh.local]",
  details:
    "Idempotent: an existing CA is loaded, never replaced. Prints the CA certificate hash\n" +
    "(sha256:<hex>) that nodes need with their join token.",
  options: {
    dir: { type: "string", placeholder: "DIR", description: "CA directory (ca.crt, ca.key with mode 0600)" },
    "trust-domain": {
      type: "string",
      placeholder: "TD",
      description: `trust domain (default ${DEFAULT_TRUST_DOMAIN})`,
    },
  },
  async run({ values }, ctx) {
    const dir = resolve(ctx.cwd, requiredOpt(values, "dir"));
    const wanted = stringOpt(values, "trust-domain");
    if (wanted !== undefined) {
      try {
        validateTrustDomain(wanted);
      } catch (err) {
        throw new UsageError(`--trust-domain: ${(err as Error).message}`);
      }
    }
    const [hasCert, hasKey] = await Promise.all([
      exists(join(dir, CA_CERT_FILE)),
      exists(join(dir, CA_KEY_FILE)),
    ]);
    // Half a CA must not be "repaired" by a new key: every SVID it issued would stop verifying.
    if (hasCert !== hasKey) {
      throw new CliError(
        `${dir} holds ${hasCert ? CA_CERT_FILE : CA_KEY_FILE} without ${hasCert ? CA_KEY_FILE : CA_CERT_FILE}; refusing to create a new CA over it`,
      );
    }
    const ca = await loadOrCreateCa(dir, { trustDomain: wanted ?? DEFAULT_TRUST_DOMAIN });
    if (wanted !== undefined && ca.trustDomain !== wanted) {
      throw new CliError(`the CA in ${dir} is for trust domain ${ca.trustDomain}, not ${wanted}`);
    }
    ctx.io.out(
      `CA for spiffe://${ca.trustDomain} ${hasCert ? "already in" : "created in"} ${dir}\n` +
        `ca-cert-hash: ${caCertHash(ca.cert)}\n`,
    );
    return EXIT.ok;
  },
};

export const svidIssue: Command = {
  path: ["svid", "issue"],
  summary: "Issue an X.509-SVID (chain, key, bundle) from the CA",
  usage:
    "svid issue --ca-dir DIR --id spiffe://TD/PATH --role ROLE --out DIR [--ttl 1h] [--dns NAME]... [--ip ADDR]...",
  details:
    "Writes svid.crt (leaf then CA), svid.key (PKCS#8, mode 0600) and bundle.crt into --out.\n" +
    "The role goes into the Subject DN (OU=<role>,O=beemesh), which nats-server maps to a user:\n" +
    "dispatcher, lease-keeper, scheduler-bidder, watchdog, raft-member, user, admin.",
  options: {
    "ca-dir": { type: "string", placeholder: "DIR", description: "CA directory made by `ca init`" },
    id: { type: "string", placeholder: "SPIFFE_ID", description: "the SVID's SPIFFE ID" },
    role: { type: "string", placeholder: "ROLE", description: "role in the Subject DN" },
    out: { type: "string", placeholder: "DIR", description: "where to write svid.crt, svid.key, bundle.crt" },
    ttl: { type: "string", placeholder: "DURATION", default: "1h", description: "validity" },
    dns: { type: "string", placeholder: "NAME", multiple: true, description: "DNS SAN, for servers" },
    ip: { type: "string", placeholder: "ADDR", multiple: true, description: "IP SAN, for servers" },
  },
  async run({ values }, ctx) {
    const caDir = resolve(ctx.cwd, requiredOpt(values, "ca-dir"));
    const out = resolve(ctx.cwd, requiredOpt(values, "out"));
    const role = requiredOpt(values, "role");
    let id;
    try {
      id = parseSpiffeId(requiredOpt(values, "id"));
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw new UsageError(`--id: ${(err as Error).message}`);
    }
    const ttlMs = durationOpt(values, "ttl", "1h");
    const ips = stringsOpt(values, "ip");
    for (const ip of ips)
      if (isIP(ip) === 0) throw new UsageError(`--ip ${JSON.stringify(ip)} is not an IP address`);
    const ca = await loadCa(caDir);
    const svid = await issueSvid(ca, {
      id,
      role,
      ttlMs,
      now: new Date(ctx.now()),
      dnsNames: stringsOpt(values, "dns"),
      ipAddresses: ips,
    });
    const files = await writeSvidFiles(out, SVID_NAME, svid);
    ctx.io.out(
      `issued ${svid.spiffeId} (role ${svid.role}) valid until ${svid.notAfter.toISOString()}\n` +
        `wrote ${files.cert}, ${files.key}, ${files.bundle}\n`,
    );
    return EXIT.ok;
  },
};

export const joinTokenCreate: Command = {
  path: ["join-token", "create"],
  summary: "Create a single-use join token for a new node",
  usage: "join-token create --ca-dir DIR --store FILE [--node-id ID] [--ttl 1h]",
  details:
    "Prints the token and the CA hash, on stdout only: hand both to the node's operator.\n" +
    "Only the token's sha256 is kept in the store file (mode 0600).",
  options: {
    "ca-dir": { type: "string", placeholder: "DIR", description: "CA directory made by `ca init`" },
    store: {
      type: "string",
      placeholder: "FILE",
      description: "join token store (JSON) the join server reads",
    },
    "node-id": { type: "string", placeholder: "ID", description: "bind the token to this node id" },
    ttl: {
      type: "string",
      placeholder: "DURATION",
      default: "1h",
      description: "how long the token stays usable",
    },
  },
  async run({ values }, ctx) {
    const caDir = resolve(ctx.cwd, requiredOpt(values, "ca-dir"));
    const storePath = resolve(ctx.cwd, requiredOpt(values, "store"));
    const ttlMs = durationOpt(values, "ttl", "1h");
    const nodeId = stringOpt(values, "node-id");
    const authority = new JoinAuthority({
      ca: await loadCa(caDir),
      store: new JoinTokenStore(storePath),
      now: ctx.now,
    });
    const created = await authority.createJoinToken({ ttlMs, ...(nodeId !== undefined ? { nodeId } : {}) });
    ctx.io.out(
      `token: ${created.token}\n` +
        `ca-cert-hash: ${created.caCertHash}\n` +
        `expires: ${created.expiresAt.toISOString()}\n` +
        (created.nodeId !== undefined ? `node-id: ${created.nodeId}\n` : ""),
    );
    return EXIT.ok;
  },
};

export const joinNode: Command = {
  path: ["join"],
  summary: "Join the mesh: trade a join token for this node's SVID",
  usage:
    "join --url https://HOST:PORT (--token TOKEN | --token-file FILE) --ca-hash sha256:HEX --node-id ID --out DIR",
  details:
    "Trusts the join server only through the CA hash, sends the token only over TLS that chains\n" +
    "to that CA, and keeps the private key on this machine. The token may also come from\n" +
    "BEEMESH_JOIN_TOKEN, which keeps it out of the process list.",
  options: {
    url: { type: "string", placeholder: "URL", description: "join server, https://host:port" },
    token: { type: "string", placeholder: "TOKEN", description: "the join token" },
    "token-file": { type: "string", placeholder: "FILE", description: "read the join token from a file" },
    "ca-hash": {
      type: "string",
      placeholder: "sha256:HEX",
      description: "CA certificate hash given with the token",
    },
    "node-id": { type: "string", placeholder: "ID", description: "this node's id" },
    out: { type: "string", placeholder: "DIR", description: "where to write svid.crt, svid.key, bundle.crt" },
    timeout: { type: "string", placeholder: "DURATION", default: "10s", description: "per request" },
  },
  async run({ values }, ctx) {
    const server = requiredOpt(values, "url");
    const caHash = requiredOpt(values, "ca-hash");
    const nodeId = requiredOpt(values, "node-id");
    const out = resolve(ctx.cwd, requiredOpt(values, "out"));
    const timeoutMs = durationOpt(values, "timeout", "10s");
    const token = await tokenFrom(values["token"], stringOpt(values, "token-file"), ctx);
    const result = await joinMesh({ server, token, caCertHash: caHash, nodeId, timeoutMs, now: ctx.now });
    const files = await writeSvidFiles(out, SVID_NAME, result.svid);
    ctx.io.out(
      `joined as ${result.svid.spiffeId} (valid until ${result.svid.notAfter.toISOString()})\n` +
        `wrote ${files.cert}, ${files.key}, ${files.bundle}\n`,
    );
    return EXIT.ok;
  },
};

async function tokenFrom(flag: unknown, file: string | undefined, ctx: CliContext): Promise<string> {
  const fromEnv = ctx.env["BEEMESH_JOIN_TOKEN"];
  const given = [typeof flag === "string", file !== undefined].filter(Boolean).length;
  if (given > 1) throw new UsageError("give --token or --token-file, not both");
  if (typeof flag === "string") return flag.trim();
  if (file !== undefined) {
    const text = file === "-" ? await ctx.io.readStdin() : await readFile(resolve(ctx.cwd, file), "utf8");
    return text.trim();
  }
  if (fromEnv) return fromEnv.trim();
  throw new UsageError("--token (or --token-file, or BEEMESH_JOIN_TOKEN) is required");
}
