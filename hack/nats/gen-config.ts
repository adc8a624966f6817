// Writes what hack/nats/up.sh starts: a CA (kept across runs), a server SVID,
// one client SVID per role for development, and a nats.conf per server.
// Prints one line per server: name, config, pid file, log file, client URL.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadOrCreateCa, issueSvid, writeSvidFiles } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { natsServerConfig, NATS_ROLES, type NatsRole } from "../../identity/nats-config.js";

const DEV_SVID_TTL_MS = 24 * 60 * 60 * 1000;

const DEV_IDS: Record<NatsRole, string[]> = {
  dispatcher: ["controller", "dispatcher", "dev"],
  "lease-keeper": ["controller", "lease-keeper", "dev"],
  "scheduler-bidder": ["node", "dev"],
  watchdog: ["ns", "default", "deployment", "dev", "dev-0"],
  "raft-member": ["ns", "default", "statefulset", "dev", "dev-0"],
  user: ["user", "dev"],
  admin: ["user", "admin"],
};

function port(value: string | undefined, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new Error(`gen-config: --${name} must be a port, got ${value}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      state: { type: "string" },
      port: { type: "string", default: "4222" },
      servers: { type: "string", default: "1" },
      "cluster-port": { type: "string", default: "6222" },
      "http-port": { type: "string", default: "8222" },
      "trust-domain": { type: "string", default: "beemesh.local" },
      prefix: { type: "string", default: "beemesh" },
    },
  });
  if (!values.state) throw new Error("gen-config: --state is required");
  const count = Number(values.servers);
  if (count !== 1 && count !== 3) throw new Error("gen-config: --servers must be 1 or 3");
  const state = values.state;
  const basePort = port(values.port, "port");
  const clusterBase = port(values["cluster-port"], "cluster-port");
  const httpBase = port(values["http-port"], "http-port");
  const td = values["trust-domain"];

  const ca = await loadOrCreateCa(join(state, "ca"), { trustDomain: td });
  const tlsDir = join(state, "tls");
  const server = await issueSvid(ca, {
    id: spiffeId(td, "controller", "nats-server", "dev"),
    role: "nats-server",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    ttlMs: DEV_SVID_TTL_MS,
  });
  const files = await writeSvidFiles(tlsDir, "server", server);
  for (const role of NATS_ROLES) {
    await writeSvidFiles(
      tlsDir,
      role,
      await issueSvid(ca, { id: spiffeId(td, ...DEV_IDS[role]), role, ttlMs: DEV_SVID_TTL_MS }),
    );
  }

  const clusterPorts = count === 3 ? [0, 1, 2].map((i) => clusterBase + i) : [];
  for (let i = 0; i < count; i++) {
    const name = `nats-${i}`;
    const dir = join(state, name);
    await mkdir(join(dir, "jetstream"), { recursive: true });
    const conf = join(dir, "nats.conf");
    const clientPort = basePort + i;
    await writeFile(
      conf,
      natsServerConfig({
        port: clientPort,
        serverName: name,
        httpPort: httpBase + i,
        tls: { certFile: files.cert, keyFile: files.key, caFile: files.bundle },
        jetstream: { storeDir: join(dir, "jetstream") },
        prefix: values.prefix,
        cluster:
          count === 3
            ? { port: clusterPorts[i]!, routePorts: clusterPorts.filter((_, j) => j !== i) }
            : undefined,
      }),
    );
    process.stdout.write(
      `${name} ${conf} ${join(dir, "nats.pid")} ${join(dir, "nats.log")} tls://127.0.0.1:${clientPort}\n`,
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
