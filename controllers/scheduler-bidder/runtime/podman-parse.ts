// Pure parsing of podman 4.x JSON output (`ps --format json`, `pod ps
// --format json`, `logs --timestamps`) into runtime types.
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parseIdentityLabels } from "./labels.js";
import { derivePodPhase } from "./manifest.js";
import {
  RuntimeError,
  type ContainerState,
  type ContainerStatus,
  type ListedPod,
  type PodListing,
  type PodStatus,
  type UnparsablePod,
} from "./types.js";

const open = { additionalProperties: true } as const;
const Labels = Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()]);

export const PodmanContainerSchema = Type.Object(
  {
    Id: Type.String(),
    Names: Type.Array(Type.String()),
    State: Type.String(),
    ExitCode: Type.Integer(),
    StartedAt: Type.Optional(Type.Number()),
    ExitedAt: Type.Optional(Type.Number()),
    IsInfra: Type.Optional(Type.Boolean()),
    Pod: Type.Optional(Type.String()),
    PodName: Type.Optional(Type.String()),
    Labels: Type.Optional(Labels),
  },
  open,
);

export const PodmanPodSchema = Type.Object(
  {
    Id: Type.String(),
    Name: Type.String(),
    Status: Type.String(),
    Labels: Type.Optional(Labels),
  },
  open,
);

export type PodmanContainer = Static<typeof PodmanContainerSchema>;
export type PodmanPod = Static<typeof PodmanPodSchema>;

function parseJsonArray<T>(what: string, stdout: string, check: (v: unknown) => v is T): T[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout.trim() === "" ? "[]" : stdout);
  } catch (cause) {
    throw new RuntimeError(`podman ${what}: output is not JSON`, { cause });
  }
  if (parsed === null) return [];
  if (!Array.isArray(parsed)) throw new RuntimeError(`podman ${what}: expected a JSON array`);
  return parsed.map((entry, i) => {
    if (!check(entry)) throw new RuntimeError(`podman ${what}: entry ${i} has an unexpected shape`);
    return entry;
  });
}

export function parsePodmanContainers(stdout: string): PodmanContainer[] {
  return parseJsonArray("ps", stdout, (v): v is PodmanContainer => Value.Check(PodmanContainerSchema, v));
}

export function parsePodmanPods(stdout: string): PodmanPod[] {
  return parseJsonArray("pod ps", stdout, (v): v is PodmanPod => Value.Check(PodmanPodSchema, v));
}

const STATE: Record<string, ContainerState> = {
  created: "waiting",
  configured: "waiting",
  initialized: "waiting",
  running: "running",
  paused: "running",
  stopping: "running",
  exited: "exited",
  stopped: "exited",
};

// podman reports Go's zero time (year 1) as a negative epoch for "never".
function epochMs(seconds: number | undefined): number | undefined {
  return seconds !== undefined && seconds > 0 ? seconds * 1000 : undefined;
}

/** kube play names containers `<pod>-<container>`; Beemesh uses the manifest's name. */
export function podmanContainerName(entry: PodmanContainer, podName: string): string {
  const full = entry.Names[0] ?? entry.Id;
  return full.startsWith(`${podName}-`) ? full.slice(podName.length + 1) : full;
}

export function containerStatusFromPodman(entry: PodmanContainer, podName: string): ContainerStatus {
  const name = podmanContainerName(entry, podName);
  const state = STATE[entry.State] ?? "unknown";
  const status: ContainerStatus = { name, state };
  if (state === "exited") {
    status.exitCode = entry.ExitCode;
    status.reason = entry.ExitCode === 0 ? "Completed" : "Error";
    const finishedAt = epochMs(entry.ExitedAt);
    if (finishedAt !== undefined) status.finishedAt = finishedAt;
  }
  if (state === "waiting") status.reason = "ContainerCreating";
  if (entry.State === "paused") status.reason = "Paused";
  const startedAt = epochMs(entry.StartedAt);
  if (startedAt !== undefined) status.startedAt = startedAt;
  return status;
}

export function appContainersOf(podName: string, containers: readonly PodmanContainer[]): PodmanContainer[] {
  return containers.filter((c) => c.PodName === podName && c.IsInfra !== true);
}

/**
 * Status of one pod from `ps -a --pod` entries; undefined when podman knows no
 * container of that pod (the infra container counts: kube play always makes one).
 */
export function podStatusFromPodman(
  podName: string,
  containers: readonly PodmanContainer[],
): PodStatus | undefined {
  if (!containers.some((c) => c.PodName === podName)) return undefined;
  const statuses = appContainersOf(podName, containers).map((c) => containerStatusFromPodman(c, podName));
  statuses.sort((a, b) => a.name.localeCompare(b.name));
  return { podName, phase: derivePodPhase(statuses), containers: statuses };
}

/** Joins `pod ps` (labels) with `ps -a --pod` (container states). */
export function listingFromPodman(
  pods: readonly PodmanPod[],
  containers: readonly PodmanContainer[],
): PodListing {
  const listed: ListedPod[] = [];
  const unparsable: UnparsablePod[] = [];
  for (const pod of pods) {
    const parsed = parseIdentityLabels(pod.Labels);
    if (!parsed.ok) {
      unparsable.push({ podName: pod.Name, reason: parsed.reason });
      continue;
    }
    const statuses = appContainersOf(pod.Name, containers).map((c) => containerStatusFromPodman(c, pod.Name));
    listed.push({
      podName: pod.Name,
      identity: parsed.identity,
      limits: parsed.limits,
      phase: derivePodPhase(statuses),
    });
  }
  listed.sort((a, b) => a.podName.localeCompare(b.podName));
  return { pods: listed, unparsable };
}

// ---------------------------------------------------------------------------
// Logs: `podman logs --timestamps` writes the container's stdout and stderr to
// its own stdout and stderr; the timestamps put them back in order.

const TIMESTAMPED = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) (.*)$/s;

interface LogLine {
  ms: number;
  frac: string;
  text: string;
}

function timestampedLines(output: string): LogLine[] {
  const lines: LogLine[] = [];
  let last = { ms: Number.NEGATIVE_INFINITY, frac: "" };
  for (const raw of output.split("\n")) {
    if (raw === "") continue;
    const m = TIMESTAMPED.exec(raw);
    const ms = m ? Date.parse(`${m[1]}${m[3]}`) : Number.NaN;
    if (m && m[4] !== undefined && !Number.isNaN(ms)) {
      last = { ms, frac: (m[2] ?? "").padEnd(9, "0") };
      lines.push({ ...last, text: m[4] });
    } else {
      // An unstamped line stays after the line before it.
      lines.push({ ...last, text: raw });
    }
  }
  return lines;
}

function notAfter(a: LogLine, b: LogLine): boolean {
  return a.ms < b.ms || (a.ms === b.ms && a.frac <= b.frac);
}

/** Merges both streams in timestamp order (stdout first on ties) and drops the stamps. */
export function mergeTimestampedLogs(stdout: string, stderr: string): string[] {
  const out = timestampedLines(stdout);
  const err = timestampedLines(stderr);
  const merged: string[] = [];
  let i = 0;
  let j = 0;
  while (i < out.length || j < err.length) {
    const a = out[i];
    const b = err[j];
    if (a !== undefined && (b === undefined || notAfter(a, b))) {
      merged.push(a.text);
      i++;
    } else if (b !== undefined) {
      merged.push(b.text);
      j++;
    }
  }
  return merged;
}
