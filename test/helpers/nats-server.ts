// The shared integration fixture: a real nats-server (DESIGN §8: 2.9.10) with
// mutual TLS, verify_and_map, per-role users and JetStream, on 127.0.0.1 and
// free ports, with a fresh CA in a temp dir. One server, or a cluster of three.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import {
  createCa,
  issueSvid,
  writeSvidFiles,
  type CertificateAuthority,
  type Svid,
} from "../../identity/ca.js";
import { spiffeId, DEFAULT_TRUST_DOMAIN } from "../../identity/spiffe-id.js";
import { natsServerConfig, type NatsRole } from "../../identity/nats-config.js";

export const NATS_SERVER_BIN = process.env["NATS_SERVER_BIN"] ?? "/usr/sbin/nats-server";

export class NatsFixtureError extends Error {
  override name = "NatsFixtureError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`nats-fixture: ${message}`, options);
  }
}

export interface StartNatsOptions {
  trustDomain?: string;
  /** Number of servers: 1 (default) or 3 (a JetStream cluster). */
  servers?: 1 | 3;
  prefix?: string;
  /** Reuse a CA (e.g. to restart a mesh with the same identities). */
  ca?: CertificateAuthority;
  readyTimeoutMs?: number;
  debug?: boolean;
}

export interface IssueExtra {
  now?: Date;
  ttlMs?: number;
}

export interface NatsServerProcess {
  readonly name: string;
  readonly port: number;
  readonly clusterPort: number | undefined;
  readonly url: string;
  /** Everything the server wrote so far (its log goes to stderr). */
  log(): string;
  running(): boolean;
  /** SIGTERM, then SIGKILL after a bound; resolves when the process has exited. */
  stop(): Promise<void>;
  /** Starts it again with the same config and store dir. */
  restart(): Promise<void>;
}

export interface NatsFixture {
  /** Client URL of the first server. */
  readonly url: string;
  readonly urls: string[];
  readonly port: number;
  readonly ca: CertificateAuthority;
  readonly trustDomain: string;
  readonly dir: string;
  readonly servers: NatsServerProcess[];
  /**
   * Issues an SVID for role; idSegments name the SPIFFE ID path (a per-role default
   * when omitted, e.g. /node/node-1), and a trailing object sets issue time and TTL.
   */
  issue(role: NatsRole, ...rest: string[] | [...string[], IssueExtra]): Promise<Svid>;
  /** A raw mTLS connection (no Beemesh envelope) as the SVID's role. */
  connectAs(svid: Svid, opts?: Partial<ConnectionOptions>): Promise<NatsConnection>;
  /** Closes this (a Bus, a connection) before the servers stop, so a failed test cannot leave a client reconnecting forever. */
  track<T extends { close(): Promise<unknown> }>(closeable: T): T;
  stop(): Promise<void>;
}

/** A port the kernel says is free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new NatsFixtureError("no free port"))));
    });
  });
}

const READY_LINE = "Server is ready";
// In a cluster the meta leader must exist before JetStream answers; every
// server logs one of these once it knows the leader.
const JS_LEADER_LINES = [
  "JetStream cluster new metadata leader",
  "Self is new JetStream cluster metadata leader",
];

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

function launch(
  name: string,
  configPath: string,
  isReady: (log: string) => boolean,
  timeoutMs: number,
): { child: ChildProcess; output: { text: string }; ready: Promise<void> } {
  const child = spawn(NATS_SERVER_BIN, ["-c", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  const output = { text: "" };
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new NatsFixtureError(`${name} not ready after ${timeoutMs} ms:\n${output.text.slice(-4000)}`));
    }, timeoutMs);
    const check = () => {
      if (isReady(output.text)) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      cleanup();
      reject(
        new NatsFixtureError(
          `${name} exited (code ${code}, signal ${signal}) before ready:\n${output.text.slice(-4000)}`,
        ),
      );
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.off("exit", onExit);
      child.stdout?.off("data", check);
      child.stderr?.off("data", check);
    };
    child.stdout?.on("data", check);
    child.stderr?.on("data", check);
    child.once("exit", onExit);
  });
  const append = (chunk: Buffer) => {
    output.text += chunk.toString("utf8");
    // Keep memory bounded on long runs: the tail is what diagnoses a failure.
    if (output.text.length > 1_000_000) output.text = output.text.slice(-500_000);
  };
  child.stdout?.prependListener("data", append);
  child.stderr?.prependListener("data", append);
  child.once("exit", () => live.delete(child));
  return { child, output, ready };
}

const serverReady = (log: string): boolean => log.includes(READY_LINE);
const clusterMemberReady = (log: string): boolean =>
  log.includes(READY_LINE) && JS_LEADER_LINES.some((l) => log.includes(l));

async function stopChild(child: ChildProcess, killAfterMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  await exited;
  clearTimeout(timer);
}

const DEFAULT_SEGMENTS: Record<NatsRole, (n: number) => string[]> = {
  dispatcher: (n) => ["controller", "dispatcher", `dispatcher-${n}`],
  "lease-keeper": (n) => ["controller", "lease-keeper", `lease-keeper-${n}`],
  "scheduler-bidder": (n) => ["node", `node-${n}`],
  watchdog: (n) => ["ns", "default", "deployment", "web", `web-${n}`],
  "raft-member": (n) => ["ns", "default", "statefulset", "db", `db-${n}`],
  user: (n) => ["user", `user-${n}`],
  admin: (n) => ["user", `admin-${n}`],
};

/** Client options for an SVID: mutual TLS, the bundle as the only trust anchor. */
export function tlsOptionsFor(svid: Svid): { cert: string; key: string; ca: string } {
  return { cert: svid.certPem, key: svid.keyPem, ca: svid.bundlePem };
}

export async function startNats(opts: StartNatsOptions = {}): Promise<NatsFixture> {
  const count = opts.servers ?? 1;
  const trustDomain = opts.ca?.trustDomain ?? opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  const dir = await mkdtemp(join(tmpdir(), "beemesh-nats-"));
  const ca = opts.ca ?? (await createCa({ trustDomain }));
  const serverSvid = await issueSvid(ca, {
    id: spiffeId(trustDomain, "controller", "nats-server", "fixture"),
    role: "nats-server",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const files = await writeSvidFiles(join(dir, "tls"), "server", serverSvid);
  const ports = await distinctFreePorts(count === 3 ? 6 : 1);
  const clientPorts = ports.slice(0, count);
  const clusterPorts = count === 3 ? ports.slice(3) : [];

  const servers: NatsServerProcess[] = [];
  for (let i = 0; i < count; i++) {
    const name = `nats-${i}`;
    const port = clientPorts[i]!;
    const clusterPort = clusterPorts[i];
    const storeDir = join(dir, name, "jetstream");
    await mkdir(storeDir, { recursive: true });
    const configPath = join(dir, name, "nats.conf");
    await writeFile(
      configPath,
      natsServerConfig({
        port,
        serverName: name,
        tls: { certFile: files.cert, keyFile: files.key, caFile: files.bundle },
        jetstream: { storeDir, maxMemory: "64MB", maxFile: "256MB" },
        prefix: opts.prefix,
        debug: opts.debug,
        cluster:
          clusterPort === undefined
            ? undefined
            : { port: clusterPort, routePorts: clusterPorts.filter((p) => p !== clusterPort) },
      }),
    );
    servers.push(makeServer(name, port, clusterPort, configPath, readyTimeoutMs));
  }
  try {
    // Cluster members wait for each other, so they must all start before any is awaited.
    await Promise.all(servers.map((s) => s.restart()));
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let issued = 0;
  const connections = new Set<NatsConnection>();
  const tracked = new Set<{ close(): Promise<unknown> }>();
  const urls = servers.map((s) => s.url);
  const fixture: NatsFixture = {
    url: urls[0]!,
    urls,
    port: clientPorts[0]!,
    ca,
    trustDomain,
    dir,
    servers,
    async issue(role, ...rest) {
      const last = rest[rest.length - 1];
      const extra: IssueExtra = typeof last === "object" ? last : {};
      const segments = (rest as Array<string | IssueExtra>).filter((r): r is string => typeof r === "string");
      issued++;
      return issueSvid(ca, {
        id: spiffeId(trustDomain, ...(segments.length ? segments : DEFAULT_SEGMENTS[role](issued))),
        role,
        now: extra.now,
        ttlMs: extra.ttlMs,
      });
    },
    async connectAs(svid, connectOpts = {}) {
      const nc = await connect({
        servers: urls,
        tls: tlsOptionsFor(svid),
        name: svid.spiffeId,
        maxReconnectAttempts: 0,
        ...connectOpts,
      });
      connections.add(nc);
      void nc.closed().then(() => connections.delete(nc));
      return nc;
    },
    track(closeable) {
      tracked.add(closeable);
      return closeable;
    },
    async stop() {
      await Promise.all([...tracked].map((c) => c.close().catch(() => undefined)));
      await Promise.all([...connections].map((nc) => nc.close().catch(() => undefined)));
      await Promise.all(servers.map((s) => s.stop()));
      await rm(dir, { recursive: true, force: true });
    },
  };
  return fixture;
}

function makeServer(
  name: string,
  port: number,
  clusterPort: number | undefined,
  configPath: string,
  readyTimeoutMs: number,
): NatsServerProcess {
  let child: ChildProcess | undefined;
  let output = { text: "" };
  const isReady = clusterPort === undefined ? serverReady : clusterMemberReady;
  return {
    name,
    port,
    clusterPort,
    url: `127.0.0.1:${port}`,
    log: () => output.text,
    running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
    async stop() {
      if (child) await stopChild(child);
    },
    async restart() {
      if (child) await stopChild(child);
      const launched = launch(name, configPath, isReady, readyTimeoutMs);
      child = launched.child;
      output = launched.output;
      try {
        await launched.ready;
      } catch (err) {
        await stopChild(launched.child);
        throw err;
      }
    },
  };
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let tries = 0; ports.size < n && tries < n * 20; tries++) ports.add(await freePort());
  if (ports.size < n) throw new NatsFixtureError(`could not find ${n} free ports`);
  return [...ports];
}
