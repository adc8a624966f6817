// nats-server configuration for the mesh (DESIGN §2, §5): TLS with
// verify_and_map, one user per role keyed by the SVID's Subject DN
// (nats-server 2.9 falls back to it when no user is named by the URI SAN), and
// per-role publish/subscribe permissions. Pure: returns text, writes nothing.
import { BUCKETS, DEFAULT_PREFIX, prefixProblem } from "../protocol/subjects.js";

export class NatsConfigError extends Error {
  override name = "NatsConfigError";
  constructor(message: string) {
    super(`nats-config: ${message}`);
  }
}

export const NATS_ROLES = [
  "dispatcher",
  "lease-keeper",
  "scheduler-bidder",
  "watchdog",
  "raft-member",
  "user",
  "admin",
] as const;
export type NatsRole = (typeof NATS_ROLES)[number];

export function isNatsRole(value: string): value is NatsRole {
  return (NATS_ROLES as readonly string[]).includes(value);
}

/** The Subject DN nats-server maps an SVID of this role to (issueSvid writes OU=<role>, O=beemesh). */
export function roleUser(role: NatsRole): string {
  return `OU=${role},O=beemesh`;
}

export const DEFAULT_SUBJECT_PREFIX = DEFAULT_PREFIX;

/** Subject patterns under one prefix, and the KV bucket names (DESIGN §2; names from protocol/subjects.ts). */
export interface MeshSubjects {
  tasks: string;
  proposals: string;
  leases: string;
  events: string;
  watchdog: string;
  raft: string;
  node: string;
  buckets: { objects: string; manifests: string; leases: string; nodes: string; providers: string };
}

export function meshSubjects(prefix = DEFAULT_SUBJECT_PREFIX): MeshSubjects {
  const problem = prefixProblem(prefix);
  if (problem !== undefined)
    throw new NatsConfigError(`invalid subject prefix ${JSON.stringify(prefix)}: ${problem}`);
  return {
    tasks: `${prefix}.scheduler.tasks.>`,
    proposals: `${prefix}.scheduler.proposals.>`,
    leases: `${prefix}.scheduler.leases.>`,
    events: `${prefix}.scheduler.events.>`,
    watchdog: `${prefix}.watchdog.>`,
    raft: `${prefix}.raft.>`,
    node: `${prefix}.node.>`,
    buckets: { ...BUCKETS },
  };
}

export interface NatsPermissions {
  publish: { allow: string[]; deny: string[] };
  subscribe: { allow: string[]; deny: string[] };
  /** Lets a responder answer the reply subject of a request it received (raft RPCs, node verbs). */
  allowResponses: boolean;
}

const kvWrite = (bucket: string): string => `$KV.${bucket}.>`;

/**
 * What every client needs of JetStream to read streams and KV buckets: consumers
 * (create, fetch, ack, flow control), stream info, message and direct gets.
 * Stream create/update/delete/purge is kept for dispatchers and admins, so no
 * other role can purge or delete a bucket it may not write.
 */
export const JETSTREAM_READ_API: readonly string[] = [
  "$JS.API.INFO",
  "$JS.API.STREAM.INFO.*",
  "$JS.API.STREAM.NAMES",
  "$JS.API.STREAM.LIST",
  "$JS.API.STREAM.MSG.GET.*",
  "$JS.API.DIRECT.GET.>",
  "$JS.API.CONSUMER.CREATE.>",
  "$JS.API.CONSUMER.DURABLE.CREATE.>",
  "$JS.API.CONSUMER.INFO.>",
  "$JS.API.CONSUMER.DELETE.>",
  "$JS.API.CONSUMER.NAMES.*",
  "$JS.API.CONSUMER.LIST.*",
  "$JS.API.CONSUMER.MSG.NEXT.>",
  "$JS.ACK.>",
  "$JS.FC.>",
];

export const INBOX = "_INBOX.>";

/** The publish/subscribe rights of each role (DESIGN §1 "publishes"/"consumes", §2). */
export function rolePermissions(role: NatsRole, prefix = DEFAULT_SUBJECT_PREFIX): NatsPermissions {
  const s = meshSubjects(prefix);
  const b = s.buckets;
  const client = (pub: string[], sub: string[], allowResponses = false): NatsPermissions => ({
    publish: { allow: [...pub, ...JETSTREAM_READ_API], deny: [] },
    subscribe: { allow: [...sub, INBOX], deny: [] },
    allowResponses,
  });
  switch (role) {
    case "dispatcher":
      // Creates the streams and buckets; the only writer of manifests (DESIGN §2).
      return {
        publish: {
          allow: [
            s.tasks,
            s.events,
            s.node,
            kvWrite(b.objects),
            kvWrite(b.manifests),
            "$JS.API.>",
            "$JS.ACK.>",
            "$JS.FC.>",
          ],
          deny: [],
        },
        subscribe: { allow: [s.events, s.watchdog, INBOX], deny: [] },
        allowResponses: false,
      };
    case "lease-keeper":
      // Tasks too: a task no node bid on, or whose bidders all failed, is republished.
      return client([s.leases, s.events, s.tasks, kvWrite(b.leases)], [s.proposals, s.tasks, s.events]);
    case "scheduler-bidder":
      return client(
        [s.proposals, s.events, kvWrite(b.leases), kvWrite(b.nodes), kvWrite(b.providers)],
        [s.tasks, s.leases, s.node],
        true,
      );
    case "watchdog":
      // Clone tasks, heartbeats, retire requests to its node, clone-slot leases.
      return client([s.watchdog, s.tasks, s.events, s.node, kvWrite(b.leases)], [s.watchdog, s.events]);
    case "raft-member":
      // Raft RPCs, clone tasks for a missing ordinal, identity leases.
      return client([s.raft, s.tasks, s.events, s.node, kvWrite(b.leases)], [s.raft, s.events], true);
    case "user":
      return client([s.tasks, s.node], [s.events, s.watchdog]);
    case "admin":
      return {
        publish: { allow: [">"], deny: [kvWrite(b.manifests)] },
        subscribe: { allow: [">"], deny: [] },
        allowResponses: true,
      };
  }
}

export interface NatsTlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** TLS handshake timeout in seconds. */
  timeoutSec?: number;
}

export interface NatsClusterOptions {
  name?: string;
  port: number;
  /** Route ports of the other servers, on 127.0.0.1. */
  routePorts: number[];
}

export interface NatsServerConfigOptions {
  port: number;
  serverName?: string;
  tls: NatsTlsFiles;
  jetstream: { storeDir: string; maxMemory?: string; maxFile?: string };
  prefix?: string;
  roles?: readonly NatsRole[];
  cluster?: NatsClusterOptions;
  /** Monitoring endpoint (/healthz, /varz) on 127.0.0.1. */
  httpPort?: number;
  pidFile?: string;
  debug?: boolean;
}

const HOST = "127.0.0.1";
const DEFAULT_TLS_TIMEOUT_SEC = 5;

function validPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new NatsConfigError(`${what} ${port} is not a port`);
}

/** Quotes a value for nats-server's config language; quoted strings are literal ($ is not a variable). */
const q = (value: string): string => JSON.stringify(value);
const list = (values: readonly string[]): string => `[${values.map(q).join(", ")}]`;

function tlsBlock(tls: NatsTlsFiles, indent: string, extra: string[]): string[] {
  const timeout = tls.timeoutSec ?? DEFAULT_TLS_TIMEOUT_SEC;
  if (!(timeout > 0)) throw new NatsConfigError(`tls timeout ${timeout} must be positive`);
  return [
    `${indent}tls {`,
    `${indent}  cert_file: ${q(tls.certFile)}`,
    `${indent}  key_file: ${q(tls.keyFile)}`,
    `${indent}  ca_file: ${q(tls.caFile)}`,
    ...extra.map((l) => `${indent}  ${l}`),
    `${indent}  timeout: ${timeout}`,
    `${indent}}`,
  ];
}

function userBlock(role: NatsRole, prefix: string): string[] {
  const p = rolePermissions(role, prefix);
  const pub = [`allow: ${list(p.publish.allow)}`];
  if (p.publish.deny.length) pub.push(`deny: ${list(p.publish.deny)}`);
  const sub = [`allow: ${list(p.subscribe.allow)}`];
  if (p.subscribe.deny.length) sub.push(`deny: ${list(p.subscribe.deny)}`);
  return [
    `    {`,
    `      user: ${q(roleUser(role))}`,
    `      permissions: {`,
    `        publish: { ${pub.join(", ")} }`,
    `        subscribe: { ${sub.join(", ")} }`,
    ...(p.allowResponses ? [`        allow_responses: true`] : []),
    `      }`,
    `    }`,
  ];
}

/** The whole nats-server configuration file as text. */
export function natsServerConfig(opts: NatsServerConfigOptions): string {
  validPort(opts.port, "client port");
  const prefix = opts.prefix ?? DEFAULT_SUBJECT_PREFIX;
  meshSubjects(prefix);
  const roles = opts.roles ?? NATS_ROLES;
  if (roles.length === 0) throw new NatsConfigError("at least one role is needed");
  if (!opts.jetstream.storeDir) throw new NatsConfigError("jetstream store dir is required");
  const serverName = opts.serverName ?? `beemesh-${opts.port}`;
  const lines: string[] = [
    "# Generated by identity/nats-config.ts; do not edit.",
    `server_name: ${q(serverName)}`,
    `listen: ${q(`${HOST}:${opts.port}`)}`,
  ];
  if (opts.httpPort !== undefined) {
    validPort(opts.httpPort, "http port");
    lines.push(`http: ${q(`${HOST}:${opts.httpPort}`)}`);
  }
  if (opts.pidFile) lines.push(`pid_file: ${q(opts.pidFile)}`);
  if (opts.debug) lines.push("debug: true", "trace: false");
  lines.push(...tlsBlock(opts.tls, "", ["verify_and_map: true"]));
  lines.push(
    "jetstream {",
    `  store_dir: ${q(opts.jetstream.storeDir)}`,
    `  max_memory_store: ${opts.jetstream.maxMemory ?? "256MB"}`,
    `  max_file_store: ${opts.jetstream.maxFile ?? "1GB"}`,
    "}",
  );
  lines.push("authorization {", "  users: [");
  for (const role of roles) lines.push(...userBlock(role, prefix));
  lines.push("  ]", "}");
  if (opts.cluster) {
    const c = opts.cluster;
    validPort(c.port, "cluster port");
    for (const r of c.routePorts) validPort(r, "route port");
    if (c.routePorts.includes(c.port)) throw new NatsConfigError("a server must not route to itself");
    lines.push(
      "cluster {",
      `  name: ${q(c.name ?? "beemesh")}`,
      `  listen: ${q(`${HOST}:${c.port}`)}`,
      // Routes authenticate each other with the same CA (mutual TLS).
      ...tlsBlock(opts.tls, "  ", ["verify: true"]),
      `  routes: ${list(c.routePorts.map((p) => `nats-route://${HOST}:${p}`))}`,
      "}",
    );
  }
  return lines.join("\n") + "\n";
}

/** NATS subject matching: `*` is one token, a trailing `>` one or more. */
export function natsSubjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    const token = p[i];
    if (token === ">") return i === p.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (token !== "*" && token !== s[i]) return false;
  }
  return p.length === s.length;
}

/** Whether an allow/deny pair admits a subject the way nats-server decides it (deny wins). */
export function permits(
  rule: { allow: readonly string[]; deny: readonly string[] },
  subject: string,
): boolean {
  return (
    rule.allow.some((a) => natsSubjectMatches(a, subject)) &&
    !rule.deny.some((d) => natsSubjectMatches(d, subject))
  );
}
