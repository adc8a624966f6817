// Runs pods with the real podman CLI (`podman kube play`), always under the
// project's containers.conf (DESIGN §8: runc, cgroupfs, no default ulimits).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isDnsLabel, LABEL } from "./labels.js";
import { assertValidDeploySpec, prepareManifest, usedByListing } from "./manifest.js";
import {
  appContainersOf,
  listingFromPodman,
  mergeTimestampedLogs,
  parsePodmanContainers,
  parsePodmanPods,
  podmanContainerName,
  podStatusFromPodman,
  type PodmanContainer,
} from "./podman-parse.js";
import {
  DeployFailedError,
  PodExistsError,
  PodNotFoundError,
  RuntimeCommandError,
  RuntimeError,
  RuntimeUnavailableError,
  type DeploySpec,
  type LogOptions,
  type NodeCapacity,
  type PodListing,
  type PodLogs,
  type PodStatus,
  type ResourceAmounts,
  type Runtime,
} from "./types.js";

export interface PodmanRuntimeOptions {
  /** Default "podman" (found on PATH). */
  podmanPath?: string;
  /** Default: hack/podman/containers.conf of this checkout. */
  containersConf?: string;
  /** Global flags before every subcommand, e.g. --root/--runroot/--tmpdir to isolate tests. */
  globalArgs?: readonly string[];
  /** Kill a podman call after this long. Default 60 s. */
  commandTimeoutMs?: number;
  /** Grace before SIGKILL when removing a pod. Default 5 s. */
  stopTimeoutSeconds?: number;
  /** What this node offers; default all CPUs, all memory, 110 pods. */
  capacity?: Partial<ResourceAmounts>;
  /** Environment for podman; CONTAINERS_CONF is always set on top. Default: the agent's. */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface PodmanSettings {
  podmanPath: string;
  containersConf: string;
  globalArgs: readonly string[];
  commandTimeoutMs: number;
  stopTimeoutSeconds: number;
  capacity: ResourceAmounts;
  env: Readonly<Record<string, string | undefined>>;
}

const DEFAULT_TAIL = 100;
const MAX_OUTPUT_BYTES = 16 * 2 ** 20;
const KUBE_PLAY_EXISTS = /already exists|is in use/;

/** Walks up from this module to the checkout's hack/podman/containers.conf. */
export function findContainersConf(from = path.dirname(fileURLToPath(import.meta.url))): string | undefined {
  let dir = from;
  for (let i = 0; i < 8; i++) {
    const candidate = path.join(dir, "hack", "podman", "containers.conf");
    if (existsSync(candidate)) return candidate;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

export function podmanSettings(options: PodmanRuntimeOptions = {}): PodmanSettings {
  const containersConf = options.containersConf ?? findContainersConf();
  if (containersConf === undefined) {
    throw new RuntimeError("podman: no containers.conf given and none found under hack/podman");
  }
  const settings: PodmanSettings = {
    podmanPath: options.podmanPath ?? "podman",
    containersConf,
    globalArgs: [...(options.globalArgs ?? [])],
    commandTimeoutMs: options.commandTimeoutMs ?? 60_000,
    stopTimeoutSeconds: options.stopTimeoutSeconds ?? 5,
    capacity: {
      cpuMillis: options.capacity?.cpuMillis ?? os.availableParallelism() * 1000,
      memoryBytes: options.capacity?.memoryBytes ?? os.totalmem(),
      pods: options.capacity?.pods ?? 110,
    },
    env: options.env ?? process.env,
  };
  if (!(settings.commandTimeoutMs > 0)) throw new RuntimeError("podman: commandTimeoutMs must be > 0");
  if (!Number.isInteger(settings.stopTimeoutSeconds) || settings.stopTimeoutSeconds < 0) {
    throw new RuntimeError("podman: stopTimeoutSeconds must be an integer >= 0");
  }
  return settings;
}

interface CommandOutput {
  stdout: string;
  stderr: string;
}

export class PodmanRuntime implements Runtime {
  readonly kind = "podman";
  readonly settings: PodmanSettings;

  constructor(options: PodmanRuntimeOptions = {}) {
    this.settings = podmanSettings(options);
  }

  async deploy(spec: DeploySpec): Promise<void> {
    assertValidDeploySpec(spec);
    // JSON is YAML to kube play, and needs no YAML emitter's idea of which objects are plain.
    const manifest = prepareManifest(spec);
    // podman 4.3's kube play refuses port mappings on the host network, where every port is the host's anyway.
    if (manifest.spec.hostNetwork === true) for (const c of manifest.spec.containers) delete c.ports;
    const yaml = JSON.stringify(manifest);
    try {
      await this.podman(["kube", "play", "--quiet", "-"], yaml);
    } catch (err) {
      if (!(err instanceof RuntimeCommandError)) throw err;
      if (KUBE_PLAY_EXISTS.test(err.stderr)) throw new PodExistsError(spec.podName, { cause: err });
      // kube play can leave a half-made pod behind (e.g. when an image is missing).
      await this.podman(["pod", "rm", "-f", "--ignore", spec.podName]).catch(() => undefined);
      throw new DeployFailedError(spec.podName, err.stderr.trim() || err.message, { cause: err });
    }
  }

  async status(podName: string): Promise<PodStatus> {
    const status = podStatusFromPodman(podName, await this.containersOf(podName));
    if (!status) throw new PodNotFoundError(podName);
    return status;
  }

  async logs(podName: string, options: LogOptions = {}): Promise<PodLogs> {
    const tail = options.tail ?? DEFAULT_TAIL;
    if (!Number.isInteger(tail) || tail < 0) throw new RuntimeError("podman: tail must be an integer >= 0");
    const entries = await this.containersOf(podName);
    if (entries.length === 0) throw new PodNotFoundError(podName);
    const containers = await Promise.all(
      appContainersOf(podName, entries).map(async (c) => {
        const out = await this.podman(["logs", "--timestamps", "--tail", String(tail), c.Id]);
        const lines = mergeTimestampedLogs(out.stdout, out.stderr);
        return {
          name: podmanContainerName(c, podName),
          lines: lines.slice(Math.max(0, lines.length - tail)),
        };
      }),
    );
    containers.sort((a, b) => a.name.localeCompare(b.name));
    return { podName, containers };
  }

  async remove(podName: string): Promise<boolean> {
    if (!isDnsLabel(podName)) return false;
    // A graceful stop first; if podman cannot stop it (e.g. a half-made pod), rm --force still kills it.
    const stop = ["pod", "stop", "--ignore", "--time", String(this.settings.stopTimeoutSeconds), podName];
    await this.podman(stop).catch((err: unknown) => {
      if (!(err instanceof RuntimeCommandError)) throw err;
    });
    const { stdout } = await this.podman(["pod", "rm", "--force", "--ignore", podName]);
    return stdout.trim() !== "";
  }

  async list(): Promise<PodListing> {
    const filter = `label=${LABEL.taskId}`;
    const [pods, containers] = await Promise.all([
      this.podman(["pod", "ps", "--filter", filter, "--format", "json"]),
      this.podman(["ps", "--all", "--pod", "--filter", filter, "--format", "json"]),
    ]);
    return listingFromPodman(parsePodmanPods(pods.stdout), parsePodmanContainers(containers.stdout));
  }

  async capacity(): Promise<NodeCapacity> {
    const used = usedByListing(await this.list());
    return { total: { ...this.settings.capacity }, used };
  }

  private async containersOf(podName: string): Promise<PodmanContainer[]> {
    // A name that is no DNS label cannot be a pod we made; do not hand it to a filter.
    if (!isDnsLabel(podName)) return [];
    const { stdout } = await this.podman([
      "ps",
      "--all",
      "--pod",
      "--filter",
      `pod=${podName}`,
      "--format",
      "json",
    ]);
    return parsePodmanContainers(stdout);
  }

  /** One podman call: argv only (no shell), bounded in time and output. */
  podman(args: readonly string[], input?: string): Promise<CommandOutput> {
    const s = this.settings;
    const argv = [...s.globalArgs, ...args];
    const env = { ...s.env, CONTAINERS_CONF: s.containersConf };
    return new Promise((resolve, reject) => {
      const child = execFile(
        s.podmanPath,
        argv,
        {
          env,
          timeout: s.commandTimeoutMs,
          killSignal: "SIGKILL",
          maxBuffer: MAX_OUTPUT_BYTES,
          encoding: "utf8",
        },
        (error, stdout, stderr) => {
          if (!error) {
            resolve({ stdout, stderr });
            return;
          }
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOENT") {
            reject(new RuntimeUnavailableError(`podman not found at ${s.podmanPath}`, { cause: error }));
            return;
          }
          const timedOut = error.killed === true && error.signal === "SIGKILL";
          const exitCode = typeof error.code === "number" ? error.code : null;
          reject(
            new RuntimeCommandError([s.podmanPath, ...argv], exitCode, stderr, timedOut, { cause: error }),
          );
        },
      );
      // podman would otherwise wait for stdin on `kube play -`; close it either way.
      child.stdin?.on("error", () => undefined);
      child.stdin?.end(input ?? "");
    });
  }
}
