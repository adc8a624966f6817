// Scheduling throughput and cost per placement at 100, 1,000 and 10,000
// simulated nodes (DESIGN §9): real NodeAgents (fake runtime, each signing
// with its own node SVID, sharing a few NATS connections, see
// scheduling-mux.ts), real lease-keeper(s), one nats-server with TLS and the
// per-role permissions. Tasks are spread over S = nodes / k shards and every
// node listens to one, so a task reaches about k nodes whatever the mesh size.
// Each Task is a batch of --batch replicas (DESIGN §3.6); a placement is one
// replica running.
//
// Per size: a warm-up task for every shard (so every node has bid once and
// every signer's certificate is verified and cached, as in steady state); a
// peak phase (closed loop, as fast as placements complete); then an open loop
// at half that rate, where the latencies are measured: p50/p99 of
// submit→leased and submit→deployed per replica. NATS messages per placement
// come from the server's /varz (in = published to the server, out = delivered
// by it; renewals, KV and JetStream acks included).
//
// Run: npx tsx bench/scheduling.ts [--nodes 100,1000,10000] [--batch 100] [--k 8]
//      [--peak-seconds 12] [--half-seconds 12] [--inflight-batches 40]
//      [--connections 4] [--keepers 1] [--budget-seconds 570] [--out PATH]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PerformanceObserver, monitorEventLoopDelay } from "node:perf_hooks";
import { createHash } from "node:crypto";
import { Registry } from "prom-client";
import { ulid } from "ulid";
import { createCa, issueSvid, writeSvidFiles, type CertificateAuthority, type Svid } from "../identity/ca.js";
import { spiffeId } from "../identity/spiffe-id.js";
import { natsServerConfig } from "../identity/nats-config.js";
import { Bus, newNonce } from "../protocol/bus/index.js";
import { kvKeys, parseEvent, shardOf, subjects, type Event, type Task } from "../protocol/index.js";
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

interface Options {
  batch: number;
  k: number;
  connections: number;
  keepers: number;
  peakSeconds: number;
  halfSeconds: number;
  inflightBatches: number;
  capacityPods: number;
}

/** Replicas an Event speaks for: a share's events say "replicas a..b"; a single replica's say nothing. */
function replicasOf(e: Event): number {
  const m = /^replicas (\d+)\.\.(\d+)/.exec(e.details ?? "");
  return m ? Number(m[2]) - Number(m[1]) + 1 : 1;
}

/** Weighted percentiles: every replica of a share counts, with its share's time. */
function weighted(samples: Array<{ ms: number; n: number }>): Percentiles {
  const total = samples.reduce((a, s) => a + s.n, 0);
  if (total === 0) return { p50: NaN, p99: NaN, max: NaN };
  const sorted = [...samples].sort((a, b) => a.ms - b.ms);
  const at = (q: number) => {
    const rank = Math.min(total - 1, Math.floor(q * total));
    let seen = 0;
    for (const s of sorted) {
      seen += s.n;
      if (seen > rank) return s.ms;
    }
    return sorted[sorted.length - 1]!.ms;
  };
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1]!.ms) };
}

/** What the dispatcher sees of each task it submitted. */
interface Tracked {
  submittedMs: number;
  replicas: number;
  leased: Array<{ ms: number; n: number }>;
  deployed: Array<{ ms: number; n: number }>;
  leasedN: number;
  deployedN: number;
}

interface Phase {
  replicasSubmitted: number;
  replicasPlaced: number;
  tasks: number;
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
  failedEvents: number;
  /** How late this process's event loop ran during the phase (every component shares it). */
  eventLoopDelayMs: Percentiles;
  gcPausesMs: { count: number; total: number; max: number };
}

interface SizeResult {
  nodes: number;
  shards: number;
  nodesPerShard: number;
  batch: number;
  /** placementsPerSecond here is steadyPlaced / steadySeconds (the last three quarters of the phase). */
  peak: Phase & { steadySeconds: number; steadyPlaced: number };
  /** Open loop at half the peak rate: the latencies the floors speak of. */
  halfPeak: Phase & { targetPerSecond: number };
  podsRunning: number;
  podsExpected: number;
  /** A few `unschedulable` events' details and first reasons, for diagnosis. */
  unschedulableSample: string[];
  setupSeconds: number;
  warmupSeconds: number;
  rssMiB: number;
}

async function runSize(
  n: number,
  opts: Options,
  ca: CertificateAuthority,
  nodeSvids: Svid[],
  controllers: { dispatcher: Svid; keepers: Svid[] },
  deadlineMs: number,
): Promise<SizeResult> {
  const t0 = performance.now();
  const dir = await mkdtemp(join(tmpdir(), "beemesh-bench-sched-"));
  const server = await startServer(ca, dir);
  const registry = new Registry();
  const shards = Math.max(1, Math.round(n / opts.k));
  const cleanup: Array<() => Promise<unknown>> = [];
  const timeLeft = () => deadlineMs - performance.now();
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

    // Observer: submit→leased and submit→deployed per replica, as the dispatcher sees the events.
    const tracked = new Map<string, Tracked>();
    const counts = { unschedulable: 0, expired: 0, failed: 0 };
    const unschedulableSample: string[] = [];
    let onDeployed: (() => void) | undefined;
    const events = dispatcher.subscribe(subjects().allEvents, { type: "Event", parse: parseEvent });
    void (async () => {
      for await (const m of events) {
        const e = m.payload;
        const now = performance.now();
        const t = tracked.get(e.task_id);
        if (e.status === "unschedulable") {
          counts.unschedulable++;
          if (unschedulableSample.length < 3)
            unschedulableSample.push(`${e.details ?? ""}: ${(e.reasons ?? []).slice(0, 3).join("; ")}`);
        } else if (e.status === "expired") counts.expired++;
        else if (e.status === "failed") counts.failed++;
        if (t === undefined) continue;
        if (e.status === "leased") {
          const r = replicasOf(e);
          t.leased.push({ ms: now - t.submittedMs, n: r });
          t.leasedN += r;
        } else if (e.status === "deployed") {
          const r = replicasOf(e);
          t.deployed.push({ ms: now - t.submittedMs, n: r });
          t.deployedN += r;
          onDeployed?.();
        }
      }
    })();

    for (let i = 0; i < opts.keepers; i++) {
      const kb = await Bus.connect({
        servers: server.url,
        svid: controllers.keepers[i]!,
        registry: new Registry(),
      });
      const kInfra = await ensureSchedulingInfra(kb.nc, { create: false });
      // Node statuses are written once (see the agents below): they must not go stale during the run.
      const keeper = new LeaseKeeper({ bus: kb, buckets: kInfra.buckets, registry, nodeStaleMs: 3_600_000 });
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
    const runtimes: FakeRuntime[] = [];
    const agents = await pool(nodeSvids.slice(0, n), 100, async (svid, i) => {
      const runtime = new FakeRuntime({
        capacity: { pods: opts.capacityPods, cpuMillis: 64_000, memoryBytes: 256 * 2 ** 30 },
      });
      runtimes.push(runtime);
      const agent = new NodeAgent({
        nodeId: `node-${i}`,
        bus: muxes[i % conns]!.view(svid),
        runtime,
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

    const task = (replicas: number, id = ulid()): Task => ({
      task_id: id,
      kind: "Deployment",
      ns: "bench",
      parent: "bench",
      parent_uid: "uid-bench",
      generation: 1,
      ...(replicas > 1 ? { count: replicas } : {}),
      manifest_ref: ref,
      reqs: { cpu_millis: 10, memory_bytes: 1 << 20, ports: [] },
      priority: 0,
      qos: "BestEffort",
      attempt: 0,
      origin: "dispatcher",
      nonce: newNonce(),
      ts: Date.now(),
    });

    // Acks are awaited in bulk: one outstanding JetStream publish per task would cap the rate at 1/RTT.
    const acks = new Set<Promise<unknown>>();
    let podsExpected = 0;
    async function submit(id: string, replicas: number): Promise<void> {
      while (acks.size >= 64) await Promise.race(acks);
      tracked.set(id, {
        submittedMs: performance.now(),
        replicas,
        leased: [],
        deployed: [],
        leasedN: 0,
        deployedN: 0,
      });
      podsExpected += replicas;
      const ack = dispatcher
        .publishDurable(subjects().tasks(shardOf(id, shards)), "Task", task(replicas, id), { msgID: id })
        .catch((err: unknown) => console.error(`publish of ${id} failed: ${String(err)}`))
        .finally(() => acks.delete(ack));
      acks.add(ack);
    }
    const outstanding = (ids: readonly string[]) =>
      ids.reduce((a, id) => {
        const t = tracked.get(id)!;
        return a + t.replicas - t.deployedN;
      }, 0);
    const nextDeployed = () =>
      Promise.race([new Promise<void>((r) => (onDeployed = r)), new Promise((r) => setTimeout(r, 200))]);
    async function drain(ids: readonly string[], timeoutMs: number): Promise<void> {
      await Promise.all(acks);
      const until = performance.now() + Math.min(timeoutMs, timeLeft());
      while (outstanding(ids) > 0 && performance.now() < until) await nextDeployed();
    }

    // Warm-up: one single-replica task per shard, so every node bids once and every certificate is cached.
    const w0 = performance.now();
    const warm = new Map<number, string>();
    for (let tries = 0; warm.size < shards && tries < shards * 50; tries++) {
      const id = ulid();
      const s = shardOf(id, shards);
      if (!warm.has(s)) warm.set(s, id);
    }
    for (const id of warm.values()) {
      while (outstanding([...warm.values()].filter((w) => tracked.has(w))) >= 200) await nextDeployed();
      await submit(id, 1);
    }
    await drain([...warm.values()], 300_000);
    const warmupSeconds = (performance.now() - w0) / 1000;

    async function measure(submitPhase: () => Promise<string[]>, phaseSeconds: () => number): Promise<Phase> {
      const before = await server.varz();
      const pubBefore = muxes.reduce((a, m) => a + m.stats.published, 0);
      const delBefore = muxes.reduce((a, m) => a + m.stats.delivered, 0);
      const c0 = { ...counts };
      // Stalls of this one process (all agents, keepers, observer): event-loop delay and GC pauses.
      const loop = monitorEventLoopDelay({ resolution: 10 });
      const gc = { count: 0, totalMs: 0, maxMs: 0 };
      const gcObserver = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          gc.count++;
          gc.totalMs += e.duration;
          gc.maxMs = Math.max(gc.maxMs, e.duration);
        }
      });
      gcObserver.observe({ entryTypes: ["gc"] });
      loop.enable();
      const ids = await submitPhase();
      loop.disable();
      gcObserver.disconnect();
      const seconds = phaseSeconds();
      const after = await server.varz();
      const ts = ids.map((id) => tracked.get(id)!);
      const placed = ts.reduce((a, t) => a + Math.min(t.replicas, t.deployedN), 0);
      const per = (x: number) => round(x / Math.max(1, placed), 3);
      return {
        replicasSubmitted: ts.reduce((a, t) => a + t.replicas, 0),
        replicasPlaced: placed,
        tasks: ids.length,
        seconds: round(seconds, 2),
        placementsPerSecond: round(placed / seconds),
        submitToLeasedMs: weighted(ts.flatMap((t) => t.leased)),
        submitToDeployedMs: weighted(ts.flatMap((t) => t.deployed)),
        natsInMsgsPerPlacement: per(after.in_msgs - before.in_msgs),
        natsOutMsgsPerPlacement: per(after.out_msgs - before.out_msgs),
        agentPublishesPerPlacement: per(muxes.reduce((a, m) => a + m.stats.published, 0) - pubBefore),
        agentDeliveriesPerPlacement: per(muxes.reduce((a, m) => a + m.stats.delivered, 0) - delBefore),
        unschedulableEvents: counts.unschedulable - c0.unschedulable,
        expiredEvents: counts.expired - c0.expired,
        failedEvents: counts.failed - c0.failed,
        eventLoopDelayMs: {
          p50: round(loop.percentile(50) / 1e6),
          p99: round(loop.percentile(99) / 1e6),
          max: round(loop.max / 1e6),
        },
        gcPausesMs: { count: gc.count, total: round(gc.totalMs), max: round(gc.maxMs) },
      };
    }

    // Peak: a closed loop keeping --inflight-batches batches undeployed, for --peak-seconds. The rate
    // is taken in steady state: replicas placed after the first quarter (the opening burst) until
    // submitting stops.
    let peakStart = 0;
    let steadyFrom = 0;
    let peakStop = 0;
    const peakIds: string[] = [];
    const peakPhase = await measure(
      async () => {
        const ids = peakIds;
        peakStart = performance.now();
        const stopAt = peakStart + Math.min(opts.peakSeconds * 1000, Math.max(2000, timeLeft() / 4));
        steadyFrom = peakStart + (stopAt - peakStart) / 4;
        peakStop = stopAt;
        while (performance.now() < stopAt) {
          if (outstanding(ids) >= opts.inflightBatches * opts.batch) {
            await nextDeployed();
            continue;
          }
          const id = ulid();
          ids.push(id);
          await submit(id, opts.batch);
        }
        await drain(ids, 60_000);
        return ids;
      },
      () => (peakStop - peakStart) / 1000,
    );
    let steadyPlaced = 0;
    for (const id of peakIds) {
      const t = tracked.get(id)!;
      for (const d of t.deployed) {
        const at = t.submittedMs + d.ms;
        if (at >= steadyFrom && at < peakStop) steadyPlaced += d.n;
      }
    }
    const steadySeconds = (peakStop - steadyFrom) / 1000;
    const peak: Phase & { steadySeconds: number; steadyPlaced: number } = {
      ...peakPhase,
      placementsPerSecond: round(steadyPlaced / steadySeconds),
      steadySeconds: round(steadySeconds, 2),
      steadyPlaced,
    };

    // Half the peak rate, open loop: a batch every batch / (peak / 2) seconds, whatever happens.
    const target = peak.placementsPerSecond / 2;
    const gapMs = (opts.batch / Math.max(1, target)) * 1000;
    let halfStart = 0;
    let halfEnd = 0;
    const half = await measure(
      async () => {
        const ids: string[] = [];
        halfStart = performance.now();
        const count = Math.max(5, Math.floor((opts.halfSeconds * 1000) / gapMs));
        for (let i = 0; i < count && timeLeft() > 30_000; i++) {
          const due = halfStart + i * gapMs;
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const id = ulid();
          ids.push(id);
          await submit(id, opts.batch);
        }
        halfEnd = performance.now();
        await drain(ids, 60_000);
        return ids;
      },
      () => (halfEnd - halfStart) / 1000 + gapMs / 1000,
    );
    const podsRunning = runtimes.reduce((a, r) => a + r.podCount, 0);
    events.unsubscribe();
    return {
      nodes: n,
      shards,
      nodesPerShard: round(n / shards, 2),
      batch: opts.batch,
      peak,
      halfPeak: { ...half, targetPerSecond: round(target) },
      podsRunning,
      podsExpected,
      unschedulableSample,
      setupSeconds: round(setupSeconds, 1),
      warmupSeconds: round(warmupSeconds, 1),
      rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    };
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function table(results: SizeResult[]): string {
  const head = [
    "nodes",
    "batch",
    "peak/s",
    "half: rate/s",
    "leased p50/p99 ms",
    "deployed p50/p99 ms",
    "nats in/out per placement",
    "running/expected",
  ];
  const rows = results.map((r) => [
    String(r.nodes),
    String(r.batch),
    String(r.peak.placementsPerSecond),
    String(r.halfPeak.placementsPerSecond),
    `${r.halfPeak.submitToLeasedMs.p50} / ${r.halfPeak.submitToLeasedMs.p99}`,
    `${r.halfPeak.submitToDeployedMs.p50} / ${r.halfPeak.submitToDeployedMs.p99}`,
    `${r.halfPeak.natsInMsgsPerPlacement} / ${r.halfPeak.natsOutMsgsPerPlacement}`,
    `${r.podsRunning}/${r.podsExpected}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: "string", default: "100,1000,10000" },
      batch: { type: "string", default: "100" },
      k: { type: "string", default: "8" },
      connections: { type: "string", default: "4" },
      keepers: { type: "string", default: "1" },
      "peak-seconds": { type: "string", default: "12" },
      "half-seconds": { type: "string", default: "12" },
      "inflight-batches": { type: "string", default: "40" },
      "capacity-pods": { type: "string", default: "4000" },
      "single-at": { type: "string", default: "1000" },
      "single-inflight": { type: "string", default: "20" },
      "budget-seconds": { type: "string", default: "570" },
      out: { type: "string", default: resolve(import.meta.dirname, "results/scheduling.json") },
    },
  });
  const sizes = values.nodes.split(",").map((s) => Number(s.trim()));
  const opts: Options = {
    batch: Number(values.batch),
    k: Number(values.k),
    connections: Number(values.connections),
    keepers: Number(values.keepers),
    peakSeconds: Number(values["peak-seconds"]),
    halfSeconds: Number(values["half-seconds"]),
    inflightBatches: Number(values["inflight-batches"]),
    capacityPods: Number(values["capacity-pods"]),
  };
  const budgetSeconds = Number(values["budget-seconds"]);
  for (const [name, v] of Object.entries({ ...opts, nodes: Math.min(...sizes), budgetSeconds })) {
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  }
  const maxNodes = Math.max(...sizes);
  const started = performance.now();
  // The whole run stays inside the budget: later phases shorten themselves as it runs out.
  const deadlineMs = started + budgetSeconds * 1000;
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

  const print = (r: SizeResult) =>
    console.log(
      `nodes=${r.nodes} shards=${r.shards} batch=${r.batch} peak=${r.peak.placementsPerSecond}/s ` +
        `(${r.peak.replicasPlaced}/${r.peak.replicasSubmitted} in ${r.peak.seconds} s) ` +
        `half=${r.halfPeak.placementsPerSecond}/s leased p50/p99=${r.halfPeak.submitToLeasedMs.p50}/${r.halfPeak.submitToLeasedMs.p99} ms ` +
        `deployed p50/p99=${r.halfPeak.submitToDeployedMs.p50}/${r.halfPeak.submitToDeployedMs.p99} ms ` +
        `nats in/out per placement=${r.halfPeak.natsInMsgsPerPlacement}/${r.halfPeak.natsOutMsgsPerPlacement} ` +
        `running ${r.podsRunning}/${r.podsExpected} (setup ${r.setupSeconds} s, warm-up ${r.warmupSeconds} s, rss ${r.rssMiB} MiB)`,
    );
  const results: SizeResult[] = [];
  for (const n of sizes) {
    const r = await runSize(n, opts, ca, nodeSvids, controllers, deadlineMs);
    results.push(r);
    print(r);
  }
  // The same mesh with single-replica Tasks (one Task per replica, as before batches), for comparison.
  const singleAt = Number(values["single-at"]);
  let singleReplica: SizeResult | undefined;
  if (singleAt > 0 && singleAt <= maxNodes && deadlineMs - performance.now() > 90_000) {
    singleReplica = await runSize(
      singleAt,
      { ...opts, batch: 1, inflightBatches: Number(values["single-inflight"]) },
      ca,
      nodeSvids,
      controllers,
      deadlineMs,
    );
    print(singleReplica);
  }
  const report = {
    bench: "scheduling",
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    params: { ...opts, nodes: sizes, budgetSeconds },
    svidIssueSeconds: round(issueSeconds),
    totalSeconds: round((performance.now() - started) / 1000),
    notes: [
      "A placement is one replica running (its share's `deployed` event); a Task carries --batch replicas (DESIGN §3.6) and the lease-keeper splits it into shares across the best bids.",
      "Every node listens to one of S = nodes/k shards, so each task reaches about k nodes.",
      "peak: a closed loop keeping --inflight-batches batches undeployed for --peak-seconds; rate = replicas placed in the last three quarters of the phase / that time (the first quarter is the opening burst).",
      "halfPeak: an open loop submitting a batch every batch / (peak / 2) seconds; its latencies are per replica (each replica counts with its share's time), measured by the dispatcher from its submit to the share's `leased` and `deployed` events.",
      "Agents share --connections NATS connections: a task is delivered once per connection and fanned out in process; a real mesh delivers it once per probed node (agentDeliveriesPerPlacement counts those logical deliveries).",
      "NATS in/out messages per placement come from the server's /varz over the phase and include bids, awards, events, lease renewals, provider records, KV reads/writes, JetStream acks and the keepers' consumers.",
      "Warm-up places one single-replica task per shard first so every node's certificate is verified and cached, as in steady state.",
      "Everything (agents, keepers, dispatcher, observer) runs in this one Node process; nats-server is the other process on the machine.",
      "Fake nodes have --capacity-pods pod slots so that a run's hundred thousand replicas fit even at 100 nodes; node statuses are written once (keepers told not to age them out), so status refreshes are not in the message counts.",
      "singleReplica: the same run at --single-at nodes with one replica per Task (--single-inflight Tasks outstanding at the peak), for comparison with batches.",
    ],
    results,
    ...(singleReplica !== undefined ? { singleReplica } : {}),
  };
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, JSON.stringify(report, null, 2) + "\n");
  console.log("\n" + table([...results, ...(singleReplica !== undefined ? [singleReplica] : [])]));
  console.log(`\nwrote ${values.out} in ${report.totalSeconds} s`);
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
