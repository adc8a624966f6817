// Pure pod-manifest helpers shared by every runtime: parse, validate, stamp
// with the Beemesh labels, read resource quantities, derive a pod phase.
import { Value } from "@sinclair/typebox/value";
import { identityLabels, identityProblems, isDnsLabel, limitsProblems } from "./labels.js";
import {
  InvalidDeploySpecError,
  PodManifestSchema,
  type ContainerSpec,
  type ContainerStatus,
  type DeploySpec,
  type PodListing,
  type PodManifest,
  type PodPhase,
  type ResourceAmounts,
  type ResourceLimits,
} from "./types.js";

const MAX_SCHEMA_PROBLEMS = 5;

function schemaProblems(input: unknown): string[] {
  const problems: string[] = [];
  for (const e of Value.Errors(PodManifestSchema, input)) {
    problems.push(`manifest${e.path.replaceAll("/", ".")}: ${e.message}`);
    if (problems.length >= MAX_SCHEMA_PROBLEMS) break;
  }
  return problems;
}

/** Checks untrusted JSON (e.g. a manifest fetched from KV) against the Pod schema. */
export function parsePodManifest(input: unknown): PodManifest {
  if (Value.Check(PodManifestSchema, input)) return input;
  throw new InvalidDeploySpecError(schemaProblems(input));
}

/** Every problem with a deploy spec; empty when a runtime may run it. */
export function deploySpecProblems(spec: DeploySpec): string[] {
  const problems: string[] = [];
  if (!isDnsLabel(spec.podName))
    problems.push(`podName ${JSON.stringify(spec.podName)} is not a DNS-1123 label`);
  if (!Value.Check(PodManifestSchema, spec.manifest)) {
    problems.push(...schemaProblems(spec.manifest));
  } else {
    const names = new Set<string>();
    for (const c of [...spec.manifest.spec.containers, ...(spec.manifest.spec.initContainers ?? [])]) {
      if (!isDnsLabel(c.name))
        problems.push(`container name ${JSON.stringify(c.name)} is not a DNS-1123 label`);
      if (names.has(c.name)) problems.push(`container name ${c.name} is used twice`);
      names.add(c.name);
    }
  }
  problems.push(...identityProblems(spec.identity), ...limitsProblems(spec.limits));
  return problems;
}

export function assertValidDeploySpec(spec: DeploySpec): void {
  const problems = deploySpecProblems(spec);
  if (problems.length > 0) throw new InvalidDeploySpecError(problems);
}

export interface PrepareOptions {
  namespace?: string;
  nodeName?: string;
}

/**
 * The manifest as the runtime should run it: named after the pod and carrying
 * the identity labels (they win over any the template had). The input is not
 * modified.
 */
export function prepareManifest(spec: DeploySpec, options: PrepareOptions = {}): PodManifest {
  // A JSON round trip: manifests are JSON data, and the copy lives in this realm.
  const manifest = JSON.parse(JSON.stringify(spec.manifest)) as PodManifest;
  manifest.metadata.name = spec.podName;
  manifest.metadata.labels = { ...manifest.metadata.labels, ...identityLabels(spec.identity, spec.limits) };
  if (options.namespace !== undefined) manifest.metadata.namespace = options.namespace;
  if (options.nodeName !== undefined) manifest.spec.nodeName = options.nodeName;
  return manifest;
}

// ---------------------------------------------------------------------------
// Kubernetes resource quantities ("250m", "0.5", "64Mi", "1e3", "2G").

const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;
const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A quantity in base units (cores, bytes), or undefined when it is not one. */
export function parseQuantity(quantity: string): number | undefined {
  const m = QUANTITY.exec(quantity.trim());
  if (!m || m[1] === undefined) return undefined;
  const base = Number(m[1]);
  const exponent = m[2] !== undefined ? 10 ** Number(m[2].slice(1)) : 1;
  const suffix = m[3] !== undefined ? (SUFFIX[m[3]] ?? 1) : 1;
  const value = base * exponent * suffix;
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

// Rounds away float noise (0.1 * 1000) before rounding up like Kubernetes does.
function ceilClean(value: number): number {
  return Math.ceil(Number(value.toPrecision(12)));
}

export function parseCpuMillis(quantity: string): number | undefined {
  const cores = parseQuantity(quantity);
  return cores === undefined ? undefined : ceilClean(cores * 1000);
}

export function parseMemoryBytes(quantity: string): number | undefined {
  const bytes = parseQuantity(quantity);
  return bytes === undefined ? undefined : ceilClean(bytes);
}

function containerLimits(c: ContainerSpec): ResourceLimits {
  const limits = c.resources?.limits ?? {};
  return {
    cpuMillis: limits.cpu !== undefined ? (parseCpuMillis(limits.cpu) ?? 0) : 0,
    memoryBytes: limits.memory !== undefined ? (parseMemoryBytes(limits.memory) ?? 0) : 0,
  };
}

/**
 * The pod's limits as Kubernetes counts them: the sum over app containers, or
 * the largest init container when that is more. Containers without a limit count 0.
 */
export function manifestLimits(manifest: PodManifest): ResourceLimits {
  const total: ResourceLimits = { cpuMillis: 0, memoryBytes: 0 };
  for (const c of manifest.spec.containers) {
    const l = containerLimits(c);
    total.cpuMillis += l.cpuMillis;
    total.memoryBytes += l.memoryBytes;
  }
  for (const c of manifest.spec.initContainers ?? []) {
    const l = containerLimits(c);
    total.cpuMillis = Math.max(total.cpuMillis, l.cpuMillis);
    total.memoryBytes = Math.max(total.memoryBytes, l.memoryBytes);
  }
  return total;
}

/** What the listed pods hold of a node: their limits, and one pod slot each (an unparsable pod too). */
export function usedByListing(listing: PodListing): ResourceAmounts {
  const used: ResourceAmounts = { cpuMillis: 0, memoryBytes: 0, pods: listing.unparsable.length };
  for (const pod of listing.pods) {
    used.cpuMillis += pod.limits.cpuMillis;
    used.memoryBytes += pod.limits.memoryBytes;
    used.pods += 1;
  }
  return used;
}

// ---------------------------------------------------------------------------
// Pod phase from container states, the same rule for every runtime.

/** Waiting reasons after which a container will not come up by itself. */
export const FATAL_WAITING_REASONS: ReadonlySet<string> = new Set([
  "CrashLoopBackOff",
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
]);

/**
 * failed: some container ended non-zero or cannot start; exited: all ended with
 * 0; pending: some still waiting; running: the rest are up (a container that
 * ended with 0 beside running ones does not fail the pod).
 */
export function derivePodPhase(containers: readonly ContainerStatus[]): PodPhase {
  if (containers.length === 0) return "unknown";
  const failed = containers.some(
    (c) =>
      (c.state === "exited" && c.exitCode !== 0) ||
      (c.state === "waiting" && c.reason !== undefined && FATAL_WAITING_REASONS.has(c.reason)),
  );
  if (failed) return "failed";
  if (containers.every((c) => c.state === "exited")) return "exited";
  if (containers.some((c) => c.state === "waiting")) return "pending";
  if (containers.some((c) => c.state === "unknown")) return "unknown";
  return "running";
}
