// What the end-to-end steps use to drive and observe a mesh that hack/up.sh
// started: kubectl with the mesh's kubeconfig, each node's own podman (the
// ground truth of which pods run where), the controllers' pid files and start
// scripts, and a bounded poll for conditions nothing announces.
import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { meshPaths, readMeshEnv } from "./mesh.js";

export class E2eError extends Error {
  override name = "E2eError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`e2e: ${message}`, options);
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** One command, argv only, bounded in time; rejects with its stderr on failure. */
export function run(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      {
        timeout: opts.timeoutMs ?? 30_000,
        killSignal: "SIGKILL",
        maxBuffer: 32 * 2 ** 20,
        env: opts.env ?? process.env,
        cwd: opts.cwd,
      },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new E2eError(`${file} ${args.join(" ")}: ${(stderr || err.message).trim().slice(0, 2000)}`, {
              cause: err,
            }),
          );
        else resolve({ stdout, stderr });
      },
    );
  });
}

/** A mesh hack/up.sh started, as its mesh.env describes it. */
export class Mesh {
  /** Nodes whose agent the steps killed and did not restart. */
  readonly dead = new Set<string>();

  private constructor(
    readonly repo: string,
    readonly state: string,
    readonly env: Readonly<Record<string, string>>,
  ) {}

  static async open(repo: string, state: string): Promise<Mesh> {
    return new Mesh(repo, state, await readMeshEnv(state));
  }

  get paths() {
    return meshPaths(this.state);
  }

  get nodes(): string[] {
    return (this.env["NODES"] ?? "").split(" ").filter((n) => n.length > 0);
  }

  get aliveNodes(): string[] {
    return this.nodes.filter((n) => !this.dead.has(n));
  }

  kubectl(args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
    return run("kubectl", ["--kubeconfig", this.paths.kubeconfig, "--request-timeout=20s", ...args], {
      timeoutMs,
    });
  }

  podman(node: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
    return run(this.paths.nodePodman(node), args, { timeoutMs });
  }

  async pid(name: string): Promise<number> {
    const text = await readFile(`${this.paths.pids}/${name}.pid`, "utf8");
    const pid = Number(text.trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) throw new E2eError(`${name}.pid holds no pid`);
    return pid;
  }

  /** Starts a controller again with the script hack/up.sh wrote for it; resolves with its new pid. */
  async restart(name: string, timeoutMs = 10_000): Promise<number> {
    const before = await this.pid(name).catch(() => 0);
    const child = spawn("bash", [`${this.state}/bin/start-${name}.sh`], { detached: true, stdio: "ignore" });
    child.unref();
    return poll(`${name} to write a new pid file`, timeoutMs, async () => {
      const pid = await this.pid(name).catch(() => 0);
      return pid !== 0 && pid !== before && isAlive(pid) ? pid : undefined;
    });
  }

  healthPort(name: string): number {
    const key =
      name === "dispatcher"
        ? "DISPATCHER_HEALTH"
        : name === "lease-keeper"
          ? "KEEPER_HEALTH"
          : `NODE_HEALTH_${name.replace(/-/g, "_")}`;
    const port = Number(this.env[key]);
    if (!Number.isInteger(port) || port <= 0) throw new E2eError(`no health port for ${name} in mesh.env`);
    return port;
  }

  /** Waits for the controller's /readyz; fails at once, with its last log lines, if it exits. */
  async waitReady(name: string, timeoutMs: number): Promise<void> {
    await poll(`${name} /readyz`, timeoutMs, async () => {
      if (await this.ready(name)) return true;
      if (!isAlive(await this.pid(name))) {
        const log = await readFile(`${this.paths.logs}/${name}.log`, "utf8").catch(() => "");
        throw new PollAbort(
          `${name} exited; its log ends with: ${log.trim().split("\n").slice(-3).join(" | ")}`,
        );
      }
      return undefined;
    });
  }

  async ready(name: string): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.healthPort(name)}/readyz`, {
        signal: AbortSignal.timeout(2000),
      });
      return res.ok;
    } catch {
      return false;
    }
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Thrown by a poll's check to stop waiting at once (the condition can no longer come true). */
export class PollAbort extends Error {
  override name = "PollAbort";
}

/**
 * Polls check until it returns a value; fails after timeoutMs naming what it
 * waited for and what it saw last (describe). Used where no event announces
 * the condition (pods in podman, status in the API).
 */
export async function poll<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
  describe?: () => string,
  intervalMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (let attempt = 0; attempt < 10_000; attempt++) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      if (err instanceof PollAbort) throw new E2eError(`gave up waiting for ${what}: ${err.message}`);
      lastError = err;
    }
    if (Date.now() + intervalMs > deadline) break;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  const seen = describe?.() ?? "";
  const error = lastError instanceof Error ? `; last error: ${lastError.message}` : "";
  throw new E2eError(
    `timed out after ${timeoutMs} ms waiting for ${what}${seen ? `; last seen: ${seen}` : ""}${error}`,
    { cause: lastError },
  );
}

// ------------------------------------------------------------ observations ---

export interface PodView {
  node: string;
  name: string;
  /** podman's pod status: Running, Degraded, Exited, ... */
  status: string;
  labels: Record<string, string>;
  containers: Array<{ name: string; state: string; image: string }>;
}

interface PodmanPod {
  Name: string;
  Status: string;
  Labels?: Record<string, string> | null;
}

interface PodmanContainer {
  Names?: string[] | string;
  PodName?: string;
  State?: string;
  Image?: string;
}

function parseJsonArray<T>(text: string, what: string): T[] {
  const value: unknown = JSON.parse(text.trim() === "" ? "[]" : text);
  if (!Array.isArray(value)) throw new E2eError(`${what} is not a JSON array`);
  return value as T[];
}

/** The pods of one workload on every node's store, with their containers. */
export async function listPods(mesh: Mesh, parent: string): Promise<PodView[]> {
  const perNode = await Promise.all(
    mesh.nodes.map(async (node) => {
      const filter = `label=beemesh.io/parent=${parent}`;
      const [pods, ctrs] = await Promise.all([
        mesh.podman(node, ["pod", "ps", "--filter", filter, "--format", "json"]),
        mesh.podman(node, ["ps", "--all", "--pod", "--format", "json"]),
      ]);
      const containers = parseJsonArray<PodmanContainer>(ctrs.stdout, "podman ps");
      return parseJsonArray<PodmanPod>(pods.stdout, "podman pod ps").map((p) => ({
        node,
        name: p.Name,
        status: p.Status,
        labels: p.Labels ?? {},
        containers: containers
          .filter((c) => c.PodName === p.Name)
          .map((c) => {
            const full = Array.isArray(c.Names) ? (c.Names[0] ?? "") : (c.Names ?? "");
            return {
              name: full.startsWith(`${p.Name}-`) ? full.slice(p.Name.length + 1) : full,
              state: c.State ?? "",
              image: c.Image ?? "",
            };
          })
          .filter((c) => !c.name.endsWith("-infra") && c.name !== "infra"),
      }));
    }),
  );
  return perNode.flat().sort((a, b) => a.name.localeCompare(b.name));
}

export const podRunning = (p: PodView): boolean =>
  p.status === "Running" && p.containers.length > 0 && p.containers.every((c) => c.state === "running");

export function describePods(pods: readonly PodView[]): string {
  if (pods.length === 0) return "no pods";
  return pods
    .map(
      (p) => `${p.name}@${p.node}:${p.status}[${p.containers.map((c) => `${c.name}=${c.state}`).join(",")}]`,
    )
    .join(" ");
}

export interface WorkloadView {
  exists: boolean;
  generation: number;
  desired: number;
  observedGeneration: number;
  replicas: number;
  ready: number;
  updated: number;
}

const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);

/** The object's spec and status as `kubectl get bmd <name> -o json` shows them. */
export async function workloadView(
  mesh: Mesh,
  resource: string,
  name: string,
  ns = "default",
): Promise<WorkloadView> {
  let text: string;
  try {
    text = (await mesh.kubectl(["-n", ns, "get", resource, name, "-o", "json"])).stdout;
  } catch (err) {
    if (/NotFound|not found/.test(String(err)))
      return {
        exists: false,
        generation: 0,
        desired: 0,
        observedGeneration: 0,
        replicas: 0,
        ready: 0,
        updated: 0,
      };
    throw err;
  }
  const o = JSON.parse(text) as {
    metadata?: { generation?: unknown };
    spec?: { replicas?: unknown };
    status?: Record<string, unknown>;
  };
  const s = o.status ?? {};
  return {
    exists: true,
    generation: num(o.metadata?.generation),
    desired: num(o.spec?.replicas),
    observedGeneration: num(s["observedGeneration"]),
    replicas: num(s["replicas"]),
    ready: num(s["readyReplicas"]),
    updated: num(s["updatedReplicas"]),
  };
}

export const describeWorkload = (w: WorkloadView): string =>
  w.exists
    ? `status ${w.ready}/${w.desired} ready, ${w.replicas} running, ${w.updated} updated, generation ${w.observedGeneration}/${w.generation}`
    : "object gone";

/** Some free consecutive ports on 127.0.0.1 (checked by binding each one). */
// Below the ephemeral range (32768+ on Linux), so no outgoing connection can hold a mesh port.
export async function freePortBlock(count: number, from = 20_000, to = 32_000): Promise<number> {
  const bindable = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = from + Math.floor(Math.random() * (to - from - count));
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await bindable(p);
    if (ok) return base;
  }
  throw new E2eError(`no ${count} free consecutive ports in ${from}..${to}`);
}
