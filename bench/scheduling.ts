// Scheduling throughput and cost per placement at 100, 1,000 and 10,000
// simulated nodes (DESIGN §9): real NodeAgents (fake runtime, each signing
// with its own node SVID, sharing a few NATS connections, see
// scheduling-mux.ts), real lease-keeper(s), one nats-server with TLS and the
// per-role permissions. Tasks are spread over S = nodes / k shards and every
// node listens to one, so a task reaches about k nodes whatever the mesh size.
//
// Per size: a warm-up task for every shard (so every node has bid once and
// every signer's certificate is verified and cached, as in steady state),
// then --tasks tasks with at most --inflight outstanding. Reports placements
// per second, p50/p99 of submit→leased and submit→deployed, and the NATS
// messages per placement from the server's /varz (in = published to the
// server, out = delivered by it; renewals, KV and JetStream acks included).
//
// Run: npx tsx bench/scheduling.ts [--nodes 100,1000,10000] [--tasks 1000]
//      [--k 8] [--inflight 200] [--connections 4] [--keepers 1] [--out PATH]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { Registry } from "prom-client";
import { ulid } from "ulid";
import { createCa, issueSvid, writeSvidFiles, type CertificateAuthority, type Svid } from "../identity/ca.js";
import { spiffeId } from "../identity/spiffe-id.js";
import { natsServerConfig } from "../identity/nats-config.js";
import { Bus, newNonce } from "../protocol/bus/index.js";
import { kvKeys, parseEvent, shardOf, subjects, type Task } from "../protocol/index.js";
import { ensureSchedulingInfra } from "../controllers/common/nats-setup.js";
import { NodeAgent } from "../controllers/scheduler-bidder/agent.js";
import { ManifestCache } from "../controllers/scheduler-bidder/manifests.js";
import { FakeRuntime } from "../controllers/scheduler-bidder/runtime/index.js";
import { LeaseKeeper } from "../controllers/lease-keeper/keeper.js";
import { MuxBus } from "./scheduling-mux.js";

const TD = "bench.local";
const NATS_SERVER_BIN = process.env["NATS_SERVER_BIN"] ?? "/usr/sbin/nats-server";

interface Percentiles {
  p50: number;
  p99: number;
  max: number;
}

interface SizeResult {
  nodes: number;
  shards: number;
  nodesPerShard: number;
  tasks: number;
  placed: number;
  seconds: number;
  placementsPerSecond: number;
  submitToLeasedMs: Percentiles;
  submitToDeployedMs: Percentiles;
  natsInMsgsPerPlacement: number;
  natsOutMsgsPerPlacement: number;
  agentPublishesPerPlacement: number;
  agentDeliveriesPerPlacement: number;
  unschedulableEvents: number;
  expiredEvents: number;
  setupSeconds: number;
  warmupSeconds: number;
  rssMiB: number;
}

function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { p50: NaN, p99: NaN, max: NaN };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(s[s.length - 1]!) };
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      const port = typeof a === "object" && a ? a.port : 0;
      srv.close(() => res(port));
    });
  });
}

/** Bounded-concurrency map. */
async function pool<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

interface Server {
  url: string;
  varz(): Promise<{ in_msgs: number; out_msgs: number }>;
  stop(): Promise<void>;
}

/** A nats-server with mutual TLS, per-role users and /varz on 127.0.0.1. */
async function startServer(ca: CertificateAuthority, dir: string): Promise<Server> {
  const serverSvid = await issueSvid(ca, {
    id: spiffeId(TD, "controller", "nats-server", "bench"),
    role: "nats-server",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const files = await writeSvidFiles(join(dir, "tls"), "server", serverSvid);
  const port = await freePort();
  const httpPort = await freePort();
  const storeDir = join(dir, "js");
  await mkdir(storeDir, { recursive: true });
  const configPath = join(dir, "nats.conf");
  await writeFile(
    configPath,
    natsServerConfig({
      port,
      httpPort,
      serverName: "bench",
      tls: { certFile: files.cert, keyFile: files.key, caFile: files.bundle },
      jetstream: { storeDir, maxMemory: "1GB", maxFile: "2GB" },
    }),
  );
  const child: ChildProcess = spawn(NATS_SERVER_BIN, ["-c", configPath], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`nats-server not ready:\n${log}`)), 20_000);
    child.stderr?.on("data", (d: Buffer) => {
      log += d.toString("utf8");
      if (log.includes("Server is ready")) {
        clearTimeout(timer);
        res();
      }
    });
    child.once("exit", (code) => rej(new Error(`nats-server exited (${code}):\n${log}`)));
  });
  child.stderr?.removeAllListeners("data");
  child.stderr?.resume();
  return {
    url: `127.0.0.1:${port}`,
    async varz() {
      const r = await fetch(`http://127.0.0.1:${httpPort}/varz`);
      const v = (await r.json()) as { in_msgs: number; out_msgs: number };
      return { in_msgs: v.in_msgs, out_msgs: v.out_msgs };
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

const MANIFEST = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { labels: { app: "bench", "beemesh.io/parent": "bench" } },
  spec: {
    restartPolicy: "Never",
    containers: [{ name: "app", image: "localhost/beemesh/busybox:latest", command: ["/bin/sleep", "3600"] }],
  },
};

async function runSize(
  n: number,
  opts: { tasks: number; k: number; inflight: number; connections: number; keepers: number },
  ca: CertificateAuthority,
  nodeSvids: Svid[],
  controllers: { dispatcher: Svid; keepers: Svid[] },
): Promise<SizeResult> {
  const t0 = performance.now();
  const dir = await mkdtemp(join(tmpdir(), "beemesh-bench-sched-"));
  const server = await startServer(ca, dir);
  const registry = new Registry();
  const shards = Math.max(1, Math.round(n / opts.k));
  const cleanup: Array<() => Promise<unknown>> = [];
  try {
    const dispatcher = await Bus.connect({
      servers: server.url,
      svid: controllers.dispatcher,
      registry: new Registry(),
    });
    cleanup.push(() => dispatcher.close());
    const infra = await ensureSchedulingInfra(dispatcher.nc, {
      create: true,
      storage: "memory",
      nodeTtlMs: 3_600_000,
    });
    const bytes = new TextEncoder().encode(JSON.stringify(MANIFEST));
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    await infra.buckets.manifests.put(kvKeys.manifest(sha256), bytes);
    const ref = { key: kvKeys.manifest(sha256), sha256 };

    // Observer: submit→leased and submit→deployed, as the dispatcher sees them.
    const submitted = new Map<string, number>();
    const leasedAt = new Map<string, number>();
    const deployedAt = new Map<string, number>();
    let unschedulable = 0;
    let expired = 0;
    let onDeployed: (() => void) | undefined;
    const events = dispatcher.subscribe(subjects().allEvents, { type: "Event", parse: parseEvent });
    void (async () => {
      for await (const m of events) {
        const e = m.payload;
        const now = performance.now();
        if (e.status === "leased" && !leasedAt.has(e.task_id)) leasedAt.set(e.task_id, now);
        else if (e.status === "deployed" && !deployedAt.has(e.task_id)) {
          deployedAt.set(e.task_id, now);
          onDeployed?.();
        } else if (e.status === "unschedulable") unschedulable++;
        else if (e.status === "expired") expired++;
      }
    })();

    for (let i = 0; i < opts.keepers; i++) {
      const kb = await Bus.connect({
        servers: server.url,
        svid: controllers.keepers[i]!,
        registry: new Registry(),
      });
      const kInfra = await ensureSchedulingInfra(kb.nc, { create: false });
      const keeper = new LeaseKeeper({ bus: kb, buckets: kInfra.buckets, registry });
      await keeper.start();
      cleanup.push(async () => {
        await keeper.stop();
        await kb.close();
      });
    }

    // Shared connections, each as the first node of its group (the role is what NATS checks).
    const conns = Math.min(opts.connections, n);
    const muxes: MuxBus[] = [];
    const p = "beemesh";
    for (let c = 0; c < conns; c++) {
      const bus = await Bus.connect({ servers: server.url, svid: nodeSvids[c]!, registry: new Registry() });
      muxes.push(new MuxBus(bus, [`${p}.scheduler.tasks.*`, `${p}.scheduler.leases.*`, `${p}.node.*.*`]));
    }
    cleanup.push(() => Promise.all(muxes.map((m) => m.close())));
    const buckets = (await ensureSchedulingInfra(muxes[0]!.bus.nc, { create: false })).buckets;
    const manifests = new ManifestCache(buckets.manifests);
    const agents = await pool(nodeSvids.slice(0, n), 100, async (svid, i) => {
      const agent = new NodeAgent({
        nodeId: `node-${i}`,
        bus: muxes[i % conns]!.view(svid),
        runtime: new FakeRuntime(),
        buckets,
        registry,
        shards,
        shardList: [i % shards],
        manifestCache: manifests,
        // Node status once at start is what the keepers need here; refreshing 10,000 of them is not the point.
        statusIntervalMs: 3_600_000,
      });
      await agent.start();
      return agent;
    });
    cleanup.push(() => pool(agents, 500, (a) => a.stop()));
    const setupSeconds = (performance.now() - t0) / 1000;

    const task = (id = ulid()): Task => ({
      task_id: id,
      kind: "Deployment",
      ns: "bench",
      parent: "bench",
      parent_uid: "uid-bench",
      generation: 1,
      manifest_ref: ref,
      reqs: { cpu_millis: 10, memory_bytes: 1 << 20, ports: [] },
      priority: 0,
      qos: "BestEffort",
      attempt: 0,
      origin: "dispatcher",
      nonce: newNonce(),
      ts: Date.now(),
    });

    /** Publishes ids with at most --inflight undeployed at a time; resolves when all are deployed or time is up. */
    async function submitAll(ids: string[], timeoutMs: number): Promise<void> {
      const start = performance.now();
      const acks = new Set<Promise<unknown>>();
      const timeLeft = () => performance.now() - start < timeoutMs;
      for (const id of ids) {
        while (submitted.size - deployedAt.size >= opts.inflight && timeLeft()) {
          await Promise.race([
            new Promise<void>((r) => (onDeployed = r)),
            new Promise((r) => setTimeout(r, 1000)),
          ]);
        }
        // Acks are awaited in bulk: one outstanding JetStream publish per task would cap the rate at 1/RTT.
        while (acks.size >= 64) await Promise.race(acks);
        submitted.set(id, performance.now());
        const ack = dispatcher
          .publishDurable(subjects().tasks(shardOf(id, shards)), "Task", task(id), { msgID: id })
          .catch((err: unknown) => console.error(`publish of ${id} failed: ${String(err)}`))
          .finally(() => acks.delete(ack));
        acks.add(ack);
      }
      await Promise.all(acks);
      while (ids.some((id) => !deployedAt.has(id)) && timeLeft()) await new Promise((r) => setTimeout(r, 20));
    }

    // Warm-up: one task per shard, so every node bids once and every certificate is cached.
    const w0 = performance.now();
    const warm = new Map<number, string>();
    for (let tries = 0; warm.size < shards && tries < shards * 50; tries++) {
      const id = ulid();
      const s = shardOf(id, shards);
      if (!warm.has(s)) warm.set(s, id);
    }
    await submitAll([...warm.values()], 300_000);
    const warmupSeconds = (performance.now() - w0) / 1000;

    // Measurement.
    const ids = Array.from({ length: opts.tasks }, () => ulid());
    const before = await server.varz();
    const pubBefore = muxes.reduce((a, m) => a + m.stats.published, 0);
    const delBefore = muxes.reduce((a, m) => a + m.stats.delivered, 0);
    const unschedBefore = unschedulable;
    const expiredBefore = expired;
    const m0 = performance.now();
    await submitAll(ids, 180_000);
    const seconds = (performance.now() - m0) / 1000;
    const after = await server.varz();
    const placed = ids.filter((id) => deployedAt.has(id)).length;
    const per = (x: number) => round(x / Math.max(1, placed), 2);
    const result: SizeResult = {
      nodes: n,
      shards,
      nodesPerShard: round(n / shards, 2),
      tasks: opts.tasks,
      placed,
      seconds: round(seconds, 2),
      placementsPerSecond: round(placed / seconds),
      submitToLeasedMs: percentiles(
        ids.filter((id) => leasedAt.has(id)).map((id) => leasedAt.get(id)! - submitted.get(id)!),
      ),
      submitToDeployedMs: percentiles(
        ids.filter((id) => deployedAt.has(id)).map((id) => deployedAt.get(id)! - submitted.get(id)!),
      ),
      natsInMsgsPerPlacement: per(after.in_msgs - before.in_msgs),
      natsOutMsgsPerPlacement: per(after.out_msgs - before.out_msgs),
      agentPublishesPerPlacement: per(muxes.reduce((a, m) => a + m.stats.published, 0) - pubBefore),
      agentDeliveriesPerPlacement: per(muxes.reduce((a, m) => a + m.stats.delivered, 0) - delBefore),
      unschedulableEvents: unschedulable - unschedBefore,
      expiredEvents: expired - expiredBefore,
      setupSeconds: round(setupSeconds, 1),
      warmupSeconds: round(warmupSeconds, 1),
      rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    };
    events.unsubscribe();
    return result;
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: "string", default: "100,1000,10000" },
      tasks: { type: "string", default: "1000" },
      k: { type: "string", default: "8" },
      inflight: { type: "string", default: "50" },
      connections: { type: "string", default: "4" },
      keepers: { type: "string", default: "1" },
      out: { type: "string", default: resolve(import.meta.dirname, "results/scheduling.json") },
    },
  });
  const sizes = values.nodes.split(",").map((s) => Number(s.trim()));
  const opts = {
    tasks: Number(values.tasks),
    k: Number(values.k),
    inflight: Number(values.inflight),
    connections: Number(values.connections),
    keepers: Number(values.keepers),
  };
  for (const [name, v] of Object.entries({ ...opts, nodes: Math.min(...sizes) })) {
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  }
  const maxNodes = Math.max(...sizes);
  const started = performance.now();
  const ca = await createCa({ trustDomain: TD });
  const i0 = performance.now();
  const nodeSvids = await pool(
    Array.from({ length: maxNodes }, (_, i) => i),
    16,
    (i) => issueSvid(ca, { id: spiffeId(TD, "node", `node-${i}`), role: "scheduler-bidder" }),
  );
  const issueSeconds = (performance.now() - i0) / 1000;
  console.log(`issued ${maxNodes} node SVIDs in ${round(issueSeconds)} s`);
  const controllers = {
    dispatcher: await issueSvid(ca, {
      id: spiffeId(TD, "controller", "dispatcher", "bench"),
      role: "dispatcher",
    }),
    keepers: await Promise.all(
      Array.from({ length: opts.keepers }, (_, i) =>
        issueSvid(ca, { id: spiffeId(TD, "controller", "lease-keeper", `lk-${i}`), role: "lease-keeper" }),
      ),
    ),
  };

  const results: SizeResult[] = [];
  for (const n of sizes) {
    const r = await runSize(n, opts, ca, nodeSvids, controllers);
    results.push(r);
    console.log(
      `nodes=${n} shards=${r.shards} placed=${r.placed}/${r.tasks} ${r.placementsPerSecond}/s ` +
        `leased p50/p99=${r.submitToLeasedMs.p50}/${r.submitToLeasedMs.p99} ms deployed p50/p99=${r.submitToDeployedMs.p50}/${r.submitToDeployedMs.p99} ms ` +
        `nats in/out per placement=${r.natsInMsgsPerPlacement}/${r.natsOutMsgsPerPlacement} ` +
        `(setup ${r.setupSeconds} s, warm-up ${r.warmupSeconds} s, rss ${r.rssMiB} MiB)`,
    );
  }
  const report = {
    bench: "scheduling",
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    params: { ...opts, nodes: sizes, connections: opts.connections },
    svidIssueSeconds: round(issueSeconds),
    totalSeconds: round((performance.now() - started) / 1000),
    notes: [
      "Every node listens to one of S = nodes/k shards, so each task reaches about k nodes.",
      "Agents share --connections NATS connections: a task is delivered once per connection and fanned out in process; a real mesh delivers it once per probed node (agentDeliveriesPerPlacement counts those logical deliveries).",
      "NATS in/out messages per placement come from the server's /varz over the measured phase and include bids, awards, events, lease renewals, KV reads/writes, JetStream acks and the keepers' consumers.",
      "Warm-up places one task per shard first so every node's certificate is verified and cached, as in steady state.",
    ],
    results,
  };
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, JSON.stringify(report, null, 2) + "\n");
  console.log(`wrote ${values.out}`);
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
