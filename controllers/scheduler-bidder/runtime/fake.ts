// In-memory runtime for tests, simulations and benchmarks (DESIGN §7, §9):
// thousands of node agents in one process, so every operation is O(1) or
// O(pods on this node) and no timer is armed unless a delay is configured.
import { sleep, systemClock, type ControllerClock } from "../../common/clock.js";
import { assertValidDeploySpec, derivePodPhase } from "./manifest.js";
import {
  DeployFailedError,
  InsufficientCapacityError,
  PodExistsError,
  PodNotFoundError,
  RuntimeError,
  type ContainerStatus,
  type DeploySpec,
  type ListedPod,
  type LogOptions,
  type NodeCapacity,
  type PodIdentity,
  type PodListing,
  type PodLogs,
  type PodPhase,
  type PodStatus,
  type ResourceAmounts,
  type ResourceLimits,
  type Runtime,
} from "./types.js";

export interface PodEvent {
  podName: string;
  /** "removed" once the pod is gone. */
  phase: PodPhase | "removed";
  previous: PodPhase | undefined;
  reason?: string;
  /** Clock time in epoch milliseconds. */
  at: number;
}

export type PodEventListener = (event: PodEvent) => void;

/** Pod state changes: subscribe for a callback, or iterate with for-await. */
export class PodEventHub implements AsyncIterable<PodEvent> {
  // Created on first subscribe: most simulated nodes never have a listener.
  private listeners: Set<PodEventListener> | undefined;

  subscribe(listener: PodEventListener): () => void {
    (this.listeners ??= new Set()).add(listener);
    return () => {
      this.listeners?.delete(listener);
    };
  }

  get listenerCount(): number {
    return this.listeners?.size ?? 0;
  }

  /** Listeners run synchronously, inside the runtime call that changed the pod. */
  emit(event: PodEvent): void {
    if (!this.listeners) return;
    for (const listener of [...this.listeners]) listener(event);
  }

  /** Buffers events from the moment it is called until return() (or break). */
  [Symbol.asyncIterator](): AsyncIterableIterator<PodEvent> {
    const queue: PodEvent[] = [];
    let waiter: ((r: IteratorResult<PodEvent>) => void) | undefined;
    let closed = false;
    const unsubscribe = this.subscribe((event) => {
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w({ value: event, done: false });
      } else queue.push(event);
    });
    const iterator: AsyncIterableIterator<PodEvent> = {
      next: () => {
        const event = queue.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (waiter = resolve));
      },
      return: () => {
        closed = true;
        unsubscribe();
        waiter?.({ value: undefined, done: true });
        waiter = undefined;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}

/** Seeded PRNG (mulberry32): same seed, same failures, same delays. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FakeRuntimeOptions {
  /** Default 4000 m cpu, 8 GiB memory, 110 pods. */
  capacity?: Partial<ResourceAmounts>;
  /** Time from deploy to running: fixed, or drawn uniformly from [min, max]. Default 0. */
  deployDelayMs?: number | { min: number; max: number };
  /** Probability in [0, 1] that a deploy fails. Default 0. */
  failureRate?: number;
  seed?: number;
  clock?: ControllerClock;
}

export const DEFAULT_FAKE_CAPACITY: ResourceAmounts = {
  cpuMillis: 4000,
  memoryBytes: 8 * 2 ** 30,
  pods: 110,
};

interface ContainerExit {
  exitCode: number;
  finishedAt: number;
  reason: string;
}

interface FakePod {
  podName: string;
  identity: PodIdentity;
  limits: ResourceLimits;
  containerNames: string[];
  running: boolean;
  startedAt?: number;
  exits?: Map<string, ContainerExit>;
  logs?: Map<string, string[]>;
  phase: PodPhase;
}

const DEFAULT_TAIL = 100;

export class FakeRuntime implements Runtime {
  readonly kind = "fake";
  readonly events = new PodEventHub();
  private readonly pods = new Map<string, FakePod>();
  private readonly total: ResourceAmounts;
  private readonly used: ResourceAmounts = { cpuMillis: 0, memoryBytes: 0, pods: 0 };
  private readonly delay: { min: number; max: number };
  private readonly failureRate: number;
  private readonly random: () => number;
  private readonly clock: ControllerClock;

  constructor(options: FakeRuntimeOptions = {}) {
    this.total = { ...DEFAULT_FAKE_CAPACITY, ...options.capacity };
    const d = options.deployDelayMs ?? 0;
    this.delay = typeof d === "number" ? { min: d, max: d } : { ...d };
    this.failureRate = options.failureRate ?? 0;
    if (!(this.failureRate >= 0 && this.failureRate <= 1))
      throw new RuntimeError("fake: failureRate must be in [0, 1]");
    if (!(this.delay.min >= 0 && this.delay.max >= this.delay.min)) {
      throw new RuntimeError("fake: deployDelayMs needs 0 <= min <= max");
    }
    this.random = seededRandom(options.seed ?? 1);
    this.clock = options.clock ?? systemClock;
  }

  async deploy(spec: DeploySpec): Promise<void> {
    assertValidDeploySpec(spec);
    const { podName, limits } = spec;
    if (this.pods.has(podName)) throw new PodExistsError(podName);
    const free = this.free();
    if (limits.cpuMillis > free.cpuMillis || limits.memoryBytes > free.memoryBytes || free.pods < 1) {
      throw new InsufficientCapacityError(podName, limits, free);
    }
    // Draw both at call time so outcomes follow the order of deploy calls, not of completions.
    const fails = this.failureRate > 0 && this.random() < this.failureRate;
    const delay =
      this.delay.min +
      (this.delay.max > this.delay.min ? this.random() * (this.delay.max - this.delay.min) : 0);

    const pod: FakePod = {
      podName,
      identity: { ...spec.identity },
      limits: { ...limits },
      containerNames: spec.manifest.spec.containers.map((c) => c.name),
      running: false,
      phase: "pending",
    };
    this.pods.set(podName, pod);
    this.reserve(limits, 1);
    this.emit(pod, undefined);

    if (delay > 0) await sleep(this.clock, delay);
    if (this.pods.get(podName) !== pod) throw new DeployFailedError(podName, "removed while deploying");
    if (fails) {
      const previous = pod.phase;
      pod.phase = "failed";
      this.emit(pod, previous, "injected deploy failure");
      this.delete(pod, "deploy failed");
      throw new DeployFailedError(podName, "injected failure (fake failureRate)");
    }
    pod.running = true;
    pod.startedAt = this.clock.now();
    this.refresh(pod);
  }

  async status(podName: string): Promise<PodStatus> {
    const pod = this.get(podName);
    return { podName, phase: pod.phase, containers: this.containerStatuses(pod) };
  }

  async logs(podName: string, options: LogOptions = {}): Promise<PodLogs> {
    const pod = this.get(podName);
    const tail = options.tail ?? DEFAULT_TAIL;
    return {
      podName,
      containers: pod.containerNames.map((name) => {
        const lines = pod.logs?.get(name) ?? [];
        return { name, lines: tail >= lines.length ? [...lines] : lines.slice(lines.length - tail) };
      }),
    };
  }

  async remove(podName: string): Promise<boolean> {
    const pod = this.pods.get(podName);
    if (!pod) return false;
    this.delete(pod, "removed");
    return true;
  }

  async list(): Promise<PodListing> {
    const pods: ListedPod[] = [];
    for (const pod of this.pods.values()) {
      pods.push({
        podName: pod.podName,
        identity: { ...pod.identity },
        limits: { ...pod.limits },
        phase: pod.phase,
      });
    }
    return { pods, unparsable: [] };
  }

  async capacity(): Promise<NodeCapacity> {
    return { total: { ...this.total }, used: { ...this.used } };
  }

  // -------------------------------------------------------------------------
  // Test hooks.

  /** The app dies: one container (default the first) ends with exitCode (default 1). */
  crash(podName: string, options: { container?: string; exitCode?: number; reason?: string } = {}): void {
    const pod = this.get(podName);
    if (!pod.running) throw new RuntimeError(`fake: pod ${podName} is not running`);
    const container = options.container ?? pod.containerNames[0];
    if (container === undefined || !pod.containerNames.includes(container)) {
      throw new RuntimeError(`fake: pod ${podName} has no container ${String(container)}`);
    }
    if (pod.exits?.has(container)) throw new RuntimeError(`fake: container ${container} already ended`);
    const exitCode = options.exitCode ?? 1;
    const reason = options.reason ?? (exitCode === 0 ? "Completed" : "Error");
    (pod.exits ??= new Map()).set(container, { exitCode, finishedAt: this.clock.now(), reason });
    this.appendLog(podName, container, `fake: exited with code ${exitCode}`);
    this.refresh(pod, reason);
  }

  appendLog(podName: string, container: string, line: string): void {
    const pod = this.get(podName);
    const logs = (pod.logs ??= new Map());
    const lines = logs.get(container) ?? [];
    lines.push(line);
    logs.set(container, lines);
  }

  get podCount(): number {
    return this.pods.size;
  }

  // -------------------------------------------------------------------------

  private get(podName: string): FakePod {
    const pod = this.pods.get(podName);
    if (!pod) throw new PodNotFoundError(podName);
    return pod;
  }

  private free(): ResourceAmounts {
    return {
      cpuMillis: this.total.cpuMillis - this.used.cpuMillis,
      memoryBytes: this.total.memoryBytes - this.used.memoryBytes,
      pods: this.total.pods - this.used.pods,
    };
  }

  private reserve(limits: ResourceLimits, sign: 1 | -1): void {
    this.used.cpuMillis += sign * limits.cpuMillis;
    this.used.memoryBytes += sign * limits.memoryBytes;
    this.used.pods += sign;
  }

  private delete(pod: FakePod, reason: string): void {
    this.pods.delete(pod.podName);
    this.reserve(pod.limits, -1);
    this.events.emit({
      podName: pod.podName,
      phase: "removed",
      previous: pod.phase,
      reason,
      at: this.clock.now(),
    });
  }

  private containerStatuses(pod: FakePod): ContainerStatus[] {
    return pod.containerNames.map((name): ContainerStatus => {
      const exit = pod.exits?.get(name);
      if (exit) {
        return {
          name,
          state: "exited",
          exitCode: exit.exitCode,
          reason: exit.reason,
          startedAt: pod.startedAt,
          finishedAt: exit.finishedAt,
          restarts: 0,
        };
      }
      if (pod.running) return { name, state: "running", startedAt: pod.startedAt, restarts: 0 };
      return { name, state: "waiting", reason: "ContainerCreating", restarts: 0 };
    });
  }

  private refresh(pod: FakePod, reason?: string): void {
    const previous = pod.phase;
    pod.phase = derivePodPhase(this.containerStatuses(pod));
    if (pod.phase !== previous) this.emit(pod, previous, reason);
  }

  private emit(pod: FakePod, previous: PodPhase | undefined, reason?: string): void {
    const event: PodEvent = { podName: pod.podName, phase: pod.phase, previous, at: this.clock.now() };
    if (reason !== undefined) event.reason = reason;
    this.events.emit(event);
  }
}
