// Heal time of watchdog-kept Deployments (DESIGN §4) with the default
// timings (1 s heartbeats, peers dead after 3 intervals, task lease TTL 3 s),
// through the real path: nats-server, node agents on fake runtimes, a
// lease-keeper, one in-process watchdog per pod (test/integration/watchdog-mesh.ts).
//   - app crash: the app container exits; heal = until the Deployment runs
//     `replicas` pods again without the crashed one, every watchdog running.
//   - node loss: a node agent and all its pods vanish; heal = the same, per
//     Deployment that had a pod there.
// Then the footprint: one real watchdog process (the bundle, started with
// the command the dispatcher renders) idles for ~30 s beside a nats-server:
// its VmRSS and CPU time from /proc, against the floors (60 MB, 1 %).
// Node-loss rounds are spaced by the clone-slot TTL, so a lost pod's slot has
// expired before the next loss and each heal is measured alone.
// Run: npx tsx bench/heal.ts [--runs 100] [--deployments 30] [--out bench/results/heal.json]
//      npx tsx bench/heal.ts --footprint-only   (the idle process alone; other results kept)
import { spawn, execFile } from "node:child_process";
import { mkdtemp, mkdir, readFile, writeFile, rm } from "node:fs/promises";
import { tmpdir, cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { WatchdogMesh, sampleDeployment } from "../test/integration/watchdog-mesh.js";
import { startNats } from "../test/helpers/nats-server.js";
import { busAs } from "../test/helpers/bus.js";
import { issueSvid } from "../identity/ca.js";
import { spiffeId } from "../identity/spiffe-id.js";
import { WorkloadApiServer } from "../identity/workload-api/index.js";
import { ensureSchedulingInfra } from "../controllers/common/nats-setup.js";
import { WATCHDOG_COMMAND, renderWorkload } from "../controllers/dispatcher/fanout/render.js";
import { bundleSidecars } from "../hack/bundle-sidecars.js";
import { BUCKETS, kvKeys, parseBeemeshDeployment, subjects } from "../protocol/index.js";
import { defaultWatchdogOptions } from "../controllers/watchdog/logic/index.js";
import { mulberry32 } from "../controllers/watchdog/logic/sim.js";

const execFileP = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "100" },
    deployments: { type: "string", default: "30" },
    replicas: { type: "string", default: "3" },
    nodes: { type: "string", default: "8" },
    "idle-seconds": { type: "string", default: "30" },
    "max-seconds": { type: "string", default: "900" },
    out: { type: "string", default: join(repo, "bench/results/heal.json") },
    /** Run one part only: crash, node-loss or idle (the other parts keep their previous results). */
    only: { type: "string" },
    "footprint-only": { type: "boolean", default: false },
    /** Measure the sidecar with these node flags instead of the rendered ones (trying flags). */
    "node-flags": { type: "string" },
  },
});
const RUNS = Number(args.runs);
const DEPLOYMENTS = Number(args.deployments);
const REPLICAS = Number(args.replicas);
const NODES = Number(args.nodes);
const IDLE_S = Number(args["idle-seconds"]);
const DEADLINE = performance.now() + Number(args["max-seconds"]) * 1000;

const SLOT_TTL_MS = defaultWatchdogOptions().slotTtlMs;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function summary(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const round = (v: number) => Math.round(v);
  return {
    runs: s.length,
    p50_ms: round(percentile(s, 50)),
    p90_ms: round(percentile(s, 90)),
    p99_ms: round(percentile(s, 99)),
    min_ms: round(s[0] ?? NaN),
    max_ms: round(s[s.length - 1] ?? NaN),
    mean_ms: round(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)),
  };
}

const names = Array.from({ length: DEPLOYMENTS }, (_, i) => `b${i}`);

function healthy(mesh: WatchdogMesh, parent: string, without: ReadonlySet<string>): boolean {
  const live = mesh.live(parent);
  return live.length === REPLICAS && live.every((p) => !without.has(p)) && mesh.watchdogsSettled(parent);
}

async function waitAll(mesh: WatchdogMesh, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!names.every((n) => healthy(mesh, n, new Set()))) {
    if (performance.now() > end) throw new Error(`bench: deployments not settled after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Waits until each parent is healthy again, recording the time from t0 for each. */
async function healTimes(
  mesh: WatchdogMesh,
  t0: number,
  parents: Map<string, Set<string>>,
  timeoutMs: number,
): Promise<number[]> {
  const out: number[] = [];
  const open = new Map(parents);
  const end = t0 + timeoutMs;
  while (open.size > 0) {
    for (const [parent, gone] of open) {
      if (healthy(mesh, parent, gone)) {
        out.push(performance.now() - t0);
        open.delete(parent);
      }
    }
    if (performance.now() > end)
      throw new Error(`bench: ${[...open.keys()].join(",")} not healed after ${timeoutMs} ms`);
    await sleep(5);
  }
  return out;
}

async function deployAll(mesh: WatchdogMesh): Promise<void> {
  for (const n of names)
    await mesh.deploy(sampleDeployment(n, REPLICAS, `uid-${n}`, "localhost/app:v1", { spread: true }));
  await waitAll(mesh, 60_000);
  await sleep(3000); // every replica has heard the others and holds a slot
}

async function crashBench(): Promise<{ samples: number[] }> {
  const mesh = await WatchdogMesh.start({
    nodes: NODES,
    defaults: true,
    probePeriodMs: 1000,
    readyDelayMs: 0,
  });
  const rnd = mulberry32(7);
  const samples: number[] = [];
  try {
    await deployAll(mesh);
    const perRound = Math.min(10, DEPLOYMENTS);
    while (samples.length < RUNS && performance.now() < DEADLINE) {
      const picked = [...names].sort(() => rnd() - 0.5).slice(0, Math.min(perRound, RUNS - samples.length));
      const gone = new Map<string, Set<string>>();
      const t0 = performance.now();
      for (const parent of picked) {
        const pods = mesh.live(parent);
        const victim = pods[Math.floor(rnd() * pods.length)]!;
        gone.set(parent, new Set([victim]));
        mesh.crash(victim);
      }
      samples.push(...(await healTimes(mesh, t0, gone, 30_000)));
      await waitAll(mesh, 30_000);
      await sleep(1000);
      process.stderr.write(`crash: ${samples.length}/${RUNS}\n`);
    }
  } finally {
    await mesh.stop();
  }
  return { samples };
}

async function nodeLossBench(): Promise<{ samples: number[]; nodesLost: number }> {
  const mesh = await WatchdogMesh.start({
    nodes: NODES,
    defaults: true,
    probePeriodMs: 1000,
    readyDelayMs: 0,
  });
  const rnd = mulberry32(11);
  const samples: number[] = [];
  let nodesLost = 0;
  let nextNode = NODES + 1;
  try {
    await deployAll(mesh);
    while (samples.length < RUNS && performance.now() < DEADLINE) {
      const nodeIds = mesh.nodeIds();
      const victim = nodeIds[Math.floor(rnd() * nodeIds.length)]!;
      const t0 = performance.now();
      const lost = await mesh.loseNode(victim);
      nodesLost++;
      const gone = new Map<string, Set<string>>();
      for (const pod of lost) {
        const rec = mesh.livePods().get(pod);
        if (rec === undefined) continue;
        const set = gone.get(rec.parent) ?? new Set<string>();
        set.add(pod);
        gone.set(rec.parent, set);
      }
      // A machine comes back in its place, so capacity (and spreading) stays the same.
      await mesh.addNode(`node-${nextNode++}`);
      samples.push(...(await healTimes(mesh, t0, gone, 60_000)));
      await waitAll(mesh, 30_000);
      // The lost pods' slots are only freed by expiry (a dead holder cannot release).
      await sleep(Math.max(0, SLOT_TTL_MS + 1000 - (performance.now() - t0)));
      process.stderr.write(`node loss: ${samples.length}/${RUNS} (${nodesLost} nodes lost)\n`);
    }
  } finally {
    await mesh.stop();
  }
  return { samples: samples.slice(0, RUNS), nodesLost };
}

// ------------------------------------------------------------ idle process ---

/** The sidecar as the image carries it: the bundle npm run build makes (hack/bundle-sidecars.ts). */
async function buildWatchdog(): Promise<string> {
  const out = join(repo, "node_modules/.cache/beemesh-bench/dist");
  await rm(out, { recursive: true, force: true });
  const [watchdog] = await bundleSidecars(out);
  if (watchdog === undefined) throw new Error("bench: no watchdog bundle");
  return watchdog;
}

function procStat(pid: number): Promise<{ cpuTicks: number }> {
  return readFile(`/proc/${pid}/stat`, "utf8").then((text) => {
    // Fields after the command name (which may hold spaces) start at ") ".
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { cpuTicks: Number(rest[11]) + Number(rest[12]) };
  });
}

async function vmRssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN);
}

/** The watchdog's footprint floors (issue: idle RSS and CPU of one real sidecar process). */
const FLOORS = { vm_rss_mb: 60, cpu_percent: 1 };

interface IdleSample {
  command: string;
  idle_seconds: number;
  /** VmRSS at the end of the idle window, and the largest seen during it. */
  vm_rss_mb: number;
  vm_rss_max_mb: number;
  cpu_seconds: number;
  cpu_percent: number;
}

/**
 * Runs `argv` with `env`, waits until `started` resolves (plus a settling
 * second), then samples its CPU time and VmRSS over the idle window.
 */
async function idleProcess(
  argv: readonly string[],
  env: Record<string, string>,
  started: (child: ReturnType<typeof spawn>) => Promise<void>,
): Promise<IdleSample> {
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  try {
    const exited = new Promise<never>((_, reject) =>
      child.once("exit", (code) => reject(new Error(`${argv.join(" ")} exited (${code}): ${stderr}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([started(child), exited]);
    await Promise.race([sleep(1000), exited]); // start-up garbage and timers settle
    const pid = child.pid!;
    const clkTck = Number((await execFileP("getconf", ["CLK_TCK"])).stdout.trim()) || 100;
    const t1 = performance.now();
    const s1 = await procStat(pid);
    let maxKb = 0;
    for (let i = 0; i < IDLE_S; i++) {
      await Promise.race([sleep(1000), exited]);
      maxKb = Math.max(maxKb, await vmRssKb(pid));
    }
    const s2 = await procStat(pid);
    const t2 = performance.now();
    const rssKb = await vmRssKb(pid);
    const cpuSeconds = (s2.cpuTicks - s1.cpuTicks) / clkTck;
    const wall = (t2 - t1) / 1000;
    const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;
    return {
      command: argv.map((a) => (a.startsWith(repo) ? a.slice(repo.length + 1) : a)).join(" "),
      idle_seconds: Math.round(wall * 10) / 10,
      vm_rss_mb: mb(rssKb),
      vm_rss_max_mb: mb(Math.max(maxKb, rssKb)),
      cpu_seconds: Math.round(cpuSeconds * 1000) / 1000,
      cpu_percent: Math.round((cpuSeconds / wall) * 100 * 100) / 100,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(t);
    }
  }
}

/** The sidecar's command as the dispatcher renders it, pointed at the local build. */
function sidecarArgv(mainJs: string, withFlags: boolean): string[] {
  const [node, ...rest] = WATCHDOG_COMMAND;
  if (node !== "node" || rest.length === 0)
    throw new Error(`bench: unexpected sidecar command ${WATCHDOG_COMMAND.join(" ")}`);
  const override = args["node-flags"]?.split(/\s+/).filter((f) => f !== "");
  const flags = withFlags ? (override ?? rest.slice(0, -1)) : [];
  return [process.execPath, ...flags, mainJs];
}

/**
 * One real watchdog process (tsc build), idle beside a nats-server: its own
 * Deployment of one replica, its SVID from a Workload API socket as in a pod
 * (so the Workload API client is loaded, as in production). Measured with the rendered
 * command (node flags included), without the flags, and bare node for scale.
 */
async function footprintBench(): Promise<Record<string, unknown>> {
  const mainJs = await buildWatchdog();
  const nats = await startNats();
  const dir = await mkdtemp(join(tmpdir(), "beemesh-heal-bench-"));
  const workloadApi = new WorkloadApiServer({
    issue: (id, publicKey) =>
      issueSvid(nats.ca, { id, role: "watchdog", ...(publicKey !== undefined ? { publicKey } : {}) }),
  });
  try {
    const dispatcher = await busAs(nats, "dispatcher");
    await ensureSchedulingInfra(dispatcher.bus.nc, { storage: "memory" });
    const parsed = parseBeemeshDeployment(sampleDeployment("idle", 1, "uid-idle"));
    if (!parsed.ok) throw parsed.error;
    const obj = parsed.value;
    const r = renderWorkload(obj, { natsUrl: nats.url });
    const objects = await dispatcher.bus.kvm.open(BUCKETS.objects);
    const manifests = await dispatcher.bus.kvm.open(BUCKETS.manifests);
    for (const m of r.manifests) await manifests.put(m.key, m.bytes);
    await objects.put(
      kvKeys.object("beemeshdeployments", "default", "idle"),
      new TextEncoder().encode(JSON.stringify(obj)),
    );
    await dispatcher.bus.close();

    const socketPath = join(dir, "workload", "agent.sock");
    await workloadApi.addPod(
      "idle-0",
      spiffeId(nats.trustDomain, "ns", "default", "deployment", "idle", "idle-0"),
      socketPath,
    );
    const env = {
      PATH: process.env["PATH"] ?? "",
      BEEMESH_NATS_URL: nats.url,
      BEEMESH_NAMESPACE: "default",
      BEEMESH_PARENT: "idle",
      BEEMESH_PARENT_UID: "uid-idle",
      BEEMESH_GENERATION: "1",
      BEEMESH_TEMPLATE_HASH: r.templateHash,
      BEEMESH_WATCHDOG_INTERVAL_MS: "1000",
      BEEMESH_POD_NAME: "idle-0",
      BEEMESH_NODE_ID: "node-1",
      BEEMESH_WORKLOAD_API_SOCKET: socketPath,
      BEEMESH_LOG_LEVEL: "warn",
    };
    // Idle means running: the watchdog has sent its first heartbeat.
    const admin = await busAs(nats, "admin");
    const heartbeat = () =>
      new Promise<void>((resolveBeat, reject) => {
        const sub = admin.bus.nc.subscribe(subjects().watchdog("default", "idle"), { max: 1 });
        const t = setTimeout(() => {
          sub.unsubscribe();
          reject(new Error("bench: no heartbeat within 30 s"));
        }, 30_000);
        void (async () => {
          for await (const _ of sub) break;
          clearTimeout(t);
          resolveBeat();
        })();
      });
    try {
      const sidecar = await idleProcess(sidecarArgv(mainJs, true), env, heartbeat);
      const withoutFlags = await idleProcess(sidecarArgv(mainJs, false), env, heartbeat);
      const bare = await idleProcess(
        [process.execPath, "-e", "setInterval(() => {}, 1 << 30)"],
        { PATH: env.PATH },
        async () => {
          await sleep(500);
        },
      );
      return {
        node: process.version,
        build: "bundle (hack/bundle-sidecars.ts)",
        identity: "SPIFFE Workload API socket (gRPC), as the node agent mounts it",
        heartbeat_interval_ms: 1000,
        floors: FLOORS,
        within_floors: sidecar.vm_rss_max_mb <= FLOORS.vm_rss_mb && sidecar.cpu_percent < FLOORS.cpu_percent,
        sidecar,
        without_node_flags: withoutFlags,
        bare_node: bare,
      };
    } finally {
      await admin.bus.close();
    }
  } finally {
    await workloadApi.close().catch(() => undefined);
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The previous results, so a partial run replaces only the parts it measured. */
async function previousResult(path: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  } catch {
    return {};
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const only = args["footprint-only"] ? "idle" : args.only;
  if (only !== undefined && !["crash", "node-loss", "idle"].includes(only))
    throw new Error(`bench: --only ${only}: expected crash, node-loss or idle`);
  const runs = (part: string) => only === undefined || only === part;
  const previous = await previousResult(args.out);
  const crash = runs("crash") ? await crashBench() : { samples: [] };
  const nodeLoss = runs("node-loss") ? await nodeLossBench() : { samples: [], nodesLost: 0 };
  const idle = runs("idle") ? await footprintBench() : previous["idle_watchdog"];
  const result = {
    bench: "heal",
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "", node: process.version },
    setup: {
      deployments: DEPLOYMENTS,
      replicas: REPLICAS,
      nodes: NODES,
      runtime: "fake",
      watchdog: (({ intervalMs, ttlIntervals, slotRenewMs, slotTtlMs }) => ({
        interval_ms: intervalMs,
        ttl_intervals: ttlIntervals,
        slot_renew_ms: slotRenewMs,
        slot_ttl_ms: slotTtlMs,
      }))(defaultWatchdogOptions()),
      task_lease_ttl_ms: 3000,
      selection_window_ms: "250 ± 100",
      spread: "required pod anti-affinity: one replica per node",
    },
    app_crash: runs("crash")
      ? {
          ...summary(crash.samples),
          how: "app container exits; its watchdog hands its slot to a clone at once",
        }
      : previous["app_crash"],
    node_loss: runs("node-loss")
      ? {
          ...summary(nodeLoss.samples),
          nodes_lost: nodeLoss.nodesLost,
          how: "agent and its pods vanish; peers notice after the heartbeat TTL, the leader clones",
        }
      : previous["node_loss"],
    idle_watchdog: idle,
    total_seconds: Math.round((performance.now() - started) / 1000),
  };
  await mkdir(dirname(args.out), { recursive: true });
  await writeFile(args.out, JSON.stringify(result, null, 2) + "\n");
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `bench/heal failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
