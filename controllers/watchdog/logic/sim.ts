// Deterministic simulation of one Deployment's watchdogs: a simulated clock,
// an in-memory network (latency, loss, partitions), an in-memory CAS slot
// store with TTL, and a scheduler stub that turns clone actions into pods.
// Used by the unit tests and scenario scripts; benches can reuse it.
// Everything random comes from one seeded PRNG, so a seed replays exactly.
import { defaultSlotPrefix, effectiveStrategy } from "./options.js";
import type { WatchdogOptions } from "./options.js";
import { WatchdogReplica } from "./replica.js";
import type { ReplicaView } from "./replica.js";
import type { SlotOp, SlotOutcome, WatchdogAction, WatchdogSpec } from "./types.js";

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The clone-slot store: NATS KV semantics as the watchdog's I/O layer uses them
 * (create refuses an existing key; keys vanish TTL after their last write, like
 * a bucket max_age, judged by the store's own single clock).
 */
export class InMemorySlotStore {
  private readonly entries = new Map<string, { claim: string; expiresAtMs: number }>();
  private writes = 0;

  constructor(private readonly ttlMs: number) {}

  private current(key: string, nowMs: number): { claim: string; expiresAtMs: number } | undefined {
    const e = this.entries.get(key);
    if (e !== undefined && e.expiresAtMs <= nowMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  acquire(key: string, claim: string, nowMs: number): boolean {
    const e = this.current(key, nowMs);
    if (e !== undefined && e.claim !== claim) return false;
    this.put(key, claim, nowMs);
    return true;
  }

  renew(key: string, claim: string, nowMs: number): boolean {
    return this.acquire(key, claim, nowMs);
  }

  transfer(key: string, from: string, to: string, nowMs: number): boolean {
    const e = this.current(key, nowMs);
    if (e !== undefined && e.claim !== from && e.claim !== to) return false;
    this.put(key, to, nowMs);
    return true;
  }

  release(key: string, claim: string, nowMs: number): void {
    const e = this.current(key, nowMs);
    if (e !== undefined && e.claim === claim) this.entries.delete(key);
  }

  holder(key: string, nowMs: number): string | undefined {
    return this.current(key, nowMs)?.claim;
  }

  /** Keys currently held under a prefix. */
  held(prefix: string, nowMs: number): string[] {
    return [...this.entries.keys()]
      .filter((k) => k.startsWith(prefix) && this.current(k, nowMs) !== undefined)
      .sort();
  }

  /** Writes so far (the store cost of the scheme). */
  writeCount(): number {
    return this.writes;
  }

  private put(key: string, claim: string, nowMs: number): void {
    this.writes += 1;
    this.entries.set(key, { claim, expiresAtMs: nowMs + this.ttlMs });
  }
}

export interface SimSpec {
  replicas: number;
  max_surge?: number;
  max_unavailable?: number;
  template_hash?: string;
}

export interface WatchdogSimOptions {
  seed?: number;
  ns?: string;
  parent?: string;
  /** Simulation step (every pod ticks once per step). */
  stepMs?: number;
  probeMs?: number;
  latencyMs?: readonly [number, number];
  storeLatencyMs?: number;
  /** How long an unreachable store takes to answer `unreachable`. */
  storeTimeoutMs?: number;
  scheduleDelayMs?: readonly [number, number];
  /** App readiness after pod start. */
  readyDelayMs?: number;
  /** Spec changes reach each pod after a random delay up to this. */
  specDelayMs?: number;
  watchdog?: WatchdogOptions;
  /** Probability that a clone starts cut off from everyone until the next heal (adversarial placement). */
  isolatedCloneProbability?: number;
  /** Keep the trace of every log action too. */
  verbose?: boolean;
}

interface SimPod {
  name: string;
  node: string;
  group: number;
  storeReachable: boolean;
  wallSkewMs: number;
  monoOffsetMs: number;
  replica: WatchdogReplica;
  running: boolean;
  appAlive: boolean;
  template_hash: string;
  readyAtSimMs: number;
  nextProbeSimMs: number;
  /** Forced probe results (flapping), consumed one per probe. */
  forcedProbes: { live: boolean; ready: boolean }[];
}

interface Scheduled {
  at: number;
  seq: number;
  run: () => void;
}

export type Invariant = (sim: WatchdogSim) => string | null;

export class InvariantViolation extends Error {
  override name = "InvariantViolation";
}

const DEFAULTS = {
  seed: 1,
  ns: "default",
  parent: "web",
  stepMs: 50,
  probeMs: 250,
  latencyMs: [1, 30] as readonly [number, number],
  storeLatencyMs: 5,
  storeTimeoutMs: 500,
  scheduleDelayMs: [300, 900] as readonly [number, number],
  readyDelayMs: 1000,
  specDelayMs: 200,
  isolatedCloneProbability: 0,
};

export class WatchdogSim {
  readonly store: InMemorySlotStore;
  readonly ns: string;
  readonly parent: string;
  private readonly rng: () => number;
  private readonly o: typeof DEFAULTS & { watchdog: WatchdogOptions; verbose: boolean };
  private nowMs = 0;
  private seq = 0;
  private queue: Scheduled[] = [];
  private readonly pods = new Map<string, SimPod>();
  private spec: WatchdogSpec | null = null;
  private generation = 0;
  private revision = 0;
  private loss = 0;
  private cloneCounter = 0;
  private isolatedGroups = 1000;
  private claimCounter = 0;
  private readonly invariants = new Map<string, Invariant>();
  private readonly presetSkews = new Map<string, number>();
  private readonly traceLines: string[] = [];
  private maxLive = 0;
  private clones = 0;
  private retirements = 0;

  constructor(options: WatchdogSimOptions = {}) {
    this.o = {
      ...DEFAULTS,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
      watchdog: options.watchdog ?? {},
      verbose: options.verbose ?? false,
    };
    this.ns = this.o.ns;
    this.parent = this.o.parent;
    this.rng = mulberry32(this.o.seed);
    this.store = new InMemorySlotStore(options.watchdog?.slotTtlMs ?? 10_000);
  }

  // ---- observation ----

  get now(): number {
    return this.nowMs;
  }

  currentSpec(): WatchdogSpec | null {
    return this.spec;
  }

  /** Pods that exist (counted against replicas + maxSurge). */
  live(): string[] {
    return [...this.pods.values()].filter((p) => p.running).map((p) => p.name);
  }

  liveWithTemplate(templateHash: string): string[] {
    return [...this.pods.values()]
      .filter((p) => p.running && p.template_hash === templateHash)
      .map((p) => p.name);
  }

  /** Pods whose app is up and past its readiness delay (ground truth, not what watchdogs believe). */
  ready(): string[] {
    return [...this.pods.values()].filter((p) => this.isReady(p)).map((p) => p.name);
  }

  maxLiveSinceMark(): number {
    return this.maxLive;
  }

  markMax(): void {
    this.maxLive = this.live().length;
  }

  counters(): { clones: number; retirements: number; storeWrites: number } {
    return { clones: this.clones, retirements: this.retirements, storeWrites: this.store.writeCount() };
  }

  heldSlots(): string[] {
    return this.store.held(`${defaultSlotPrefix(this.ns, this.parent)}/`, this.nowMs);
  }

  viewOf(name: string): ReplicaView {
    const p = this.pod(name);
    return p.replica.view(this.mono(p));
  }

  /** Leaders as each running pod sees them. */
  leaders(): Map<string, string | null> {
    const out = new Map<string, string | null>();
    for (const p of this.pods.values()) if (p.running) out.set(p.name, this.viewOf(p.name).leader);
    return out;
  }

  trace(): readonly string[] {
    return this.traceLines;
  }

  drainTrace(): string[] {
    return this.traceLines.splice(0, this.traceLines.length);
  }

  // ---- control ----

  setSpec(spec: SimSpec): void {
    const previous = this.spec;
    this.generation += 1;
    this.revision += 1;
    this.spec = {
      replicas: spec.replicas,
      generation: this.generation,
      template_hash: spec.template_hash ?? previous?.template_hash ?? "v1",
      max_surge: spec.max_surge ?? previous?.max_surge ?? 1,
      max_unavailable: spec.max_unavailable ?? previous?.max_unavailable ?? 0,
    };
    this.log(
      `spec gen=${this.generation} replicas=${this.spec.replicas} template=${this.spec.template_hash}`,
    );
    this.broadcastSpec();
  }

  deleteSpec(): void {
    this.spec = null;
    this.revision += 1;
    this.log("spec deleted");
    this.broadcastSpec();
  }

  /** Pods the dispatcher places (no slot handed over: they seek one). */
  addReplicas(names: readonly string[]): void {
    for (const name of names) this.startPod(name, null, this.spec?.template_hash ?? "v1", 0);
  }

  kill(name: string): void {
    const p = this.pod(name);
    if (!p.running) return;
    p.running = false;
    this.log(`kill ${name}`);
  }

  appDies(name: string): void {
    const p = this.pod(name);
    if (!p.running) return;
    p.appAlive = false;
    this.log(`app dies in ${name}`);
    this.deliver(p, { type: "appDied", nowMs: this.mono(p) });
  }

  /** Groups that can hear each other; unnamed pods (and later clones of theirs) keep their group. */
  partition(groups: readonly (readonly string[])[]): void {
    groups.forEach((g, i) => {
      for (const name of g) this.pod(name).group = i + 1;
    });
    this.log(`partition ${groups.map((g) => g.join(",")).join(" | ")}`);
  }

  heal(): void {
    for (const p of this.pods.values()) p.group = 0;
    this.log("heal");
  }

  setLoss(probability: number): void {
    this.loss = probability;
    this.log(`heartbeat loss ${probability}`);
  }

  /** Skew of a pod's wall clock (its heartbeat ts, and its started_at when set before it starts). */
  setIsolatedCloneProbability(probability: number): void {
    this.o.isolatedCloneProbability = probability;
  }

  setWallSkew(name: string, skewMs: number): void {
    const p = this.pods.get(name);
    if (p === undefined) this.presetSkews.set(name, skewMs);
    else p.wallSkewMs = skewMs;
  }

  setStoreReachable(name: string, reachable: boolean): void {
    this.pod(name).storeReachable = reachable;
    this.log(`${name} ${reachable ? "reaches" : "cannot reach"} the slot store`);
  }

  /** Force the next probe results of a pod. */
  forceProbes(name: string, probes: readonly { live: boolean; ready: boolean }[]): void {
    this.pod(name).forcedProbes.push(...probes);
  }

  addInvariant(name: string, check: Invariant): void {
    this.invariants.set(name, check);
  }

  removeInvariant(name: string): void {
    this.invariants.delete(name);
  }

  /** Advance simulated time by `ms`, running every pod, message and timer due. */
  run(ms: number): void {
    const until = this.nowMs + ms;
    while (this.nowMs < until) {
      this.nowMs = Math.min(until, this.nowMs + this.o.stepMs);
      this.runDue();
      for (const p of [...this.pods.values()]) {
        if (!p.running) continue;
        while (p.running && p.nextProbeSimMs <= this.nowMs) {
          p.nextProbeSimMs += this.o.probeMs;
          const forced = p.forcedProbes.shift();
          const probe = forced ?? { live: p.appAlive, ready: this.isReady(p) };
          this.deliver(p, { type: "probe", live: probe.live, ready: probe.ready, nowMs: this.mono(p) });
        }
        if (p.running) this.deliver(p, { type: "tick", nowMs: this.mono(p) });
      }
      this.runDue();
      this.check();
    }
  }

  // ---- internals ----

  private pod(name: string): SimPod {
    const p = this.pods.get(name);
    if (p === undefined) throw new Error(`sim: no pod named ${name}`);
    return p;
  }

  private mono(p: SimPod): number {
    return this.nowMs + p.monoOffsetMs;
  }

  private isReady(p: SimPod): boolean {
    return p.running && p.appAlive && this.nowMs >= p.readyAtSimMs;
  }

  private between(range: readonly [number, number]): number {
    return Math.round(range[0] + this.rng() * (range[1] - range[0]));
  }

  private schedule(at: number, run: () => void): void {
    const item = { at, seq: this.seq++, run };
    // Small queues: keep it sorted by (at, seq) with a binary insertion.
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = this.queue[mid];
      if (m !== undefined && (m.at < at || (m.at === at && m.seq < item.seq))) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, item);
  }

  private runDue(): void {
    for (let guard = 0; guard < 1_000_000; guard++) {
      const head = this.queue[0];
      if (head === undefined || head.at > this.nowMs) return;
      this.queue.shift();
      head.run();
    }
    throw new Error("sim: event storm (over a million events in one step)");
  }

  private check(): void {
    const live = this.live().length;
    if (live > this.maxLive) this.maxLive = live;
    for (const [name, inv] of this.invariants) {
      const problem = inv(this);
      if (problem !== null) throw new InvariantViolation(`t=${this.nowMs}ms invariant ${name}: ${problem}`);
    }
  }

  private log(line: string): void {
    this.traceLines.push(`${String(this.nowMs).padStart(6)}ms ${line}`);
  }

  private broadcastSpec(): void {
    const spec = this.spec;
    const revision = this.revision;
    for (const p of this.pods.values()) {
      if (!p.running) continue;
      this.schedule(this.nowMs + this.between([0, this.o.specDelayMs]), () => {
        if (p.running) this.deliver(p, { type: "spec", spec, revision, nowMs: this.mono(p) });
      });
    }
  }

  private startPod(
    name: string,
    slot: { index: number; claim: string } | null,
    templateHash: string,
    group: number,
  ): void {
    if (this.pods.has(name)) throw new Error(`sim: pod ${name} exists`);
    const monoOffsetMs = Math.floor(this.rng() * 1e9);
    const wallSkewMs = this.presetSkews.get(name) ?? 0;
    const replica = new WatchdogReplica(
      {
        pod: name,
        node: `node-${name}`,
        ns: this.ns,
        parent: this.parent,
        started_at: this.nowMs + wallSkewMs,
        template_hash: templateHash,
        generation: this.spec?.generation ?? 0,
        ...(slot !== null ? { slot } : {}),
      },
      this.o.watchdog,
      { newClaim: () => `k${++this.claimCounter}` },
      this.nowMs + monoOffsetMs,
    );
    const pod: SimPod = {
      name,
      node: `node-${name}`,
      group,
      storeReachable: true,
      wallSkewMs,
      monoOffsetMs,
      replica,
      running: true,
      appAlive: true,
      template_hash: templateHash,
      readyAtSimMs: this.nowMs + this.o.readyDelayMs,
      nextProbeSimMs: this.nowMs + Math.floor(this.rng() * this.o.probeMs),
      forcedProbes: [],
    };
    this.pods.set(name, pod);
    this.log(`start ${name} template=${templateHash}${slot !== null ? ` slot=${slot.index}` : ""}`);
    // The watchdog reads the spec from KV at start.
    this.handle(
      pod,
      replica.step({ type: "spec", spec: this.spec, revision: this.revision, nowMs: this.mono(pod) }),
    );
  }

  private deliver(p: SimPod, input: Parameters<WatchdogReplica["step"]>[0]): void {
    if (!p.running) return;
    this.handle(p, p.replica.step(input));
  }

  private handle(p: SimPod, actions: readonly WatchdogAction[]): void {
    for (const a of actions) this.apply(p, a);
  }

  private slotAnswer(p: SimPod, op: SlotOp, slot: number, claim: string, attempt: () => boolean): void {
    if (!p.storeReachable) {
      this.schedule(this.nowMs + this.o.storeTimeoutMs, () =>
        this.deliver(p, { type: "slotResult", op, slot, claim, outcome: "unreachable", nowMs: this.mono(p) }),
      );
      return;
    }
    const outcome: SlotOutcome = attempt() ? "granted" : "denied";
    this.schedule(this.nowMs + this.o.storeLatencyMs, () =>
      this.deliver(p, { type: "slotResult", op, slot, claim, outcome, nowMs: this.mono(p) }),
    );
  }

  private apply(p: SimPod, a: WatchdogAction): void {
    switch (a.type) {
      case "heartbeat": {
        const hb = { ...a.hb, ts: this.nowMs + p.wallSkewMs };
        for (const q of this.pods.values()) {
          if (q === p || !q.running || q.group !== p.group) continue;
          if (this.loss > 0 && this.rng() < this.loss) continue;
          this.schedule(this.nowMs + this.between(this.o.latencyMs), () => {
            if (q.group === p.group) this.deliver(q, { type: "heartbeat", hb, nowMs: this.mono(q) });
          });
        }
        return;
      }
      case "acquireSlot":
        this.slotAnswer(p, "acquire", a.slot, a.claim, () => this.store.acquire(a.key, a.claim, this.nowMs));
        return;
      case "renewSlot":
        this.slotAnswer(p, "renew", a.slot, a.claim, () => this.store.renew(a.key, a.claim, this.nowMs));
        return;
      case "transferSlot":
        this.slotAnswer(p, "transfer", a.slot, a.to, () =>
          this.store.transfer(a.key, a.from, a.to, this.nowMs),
        );
        return;
      case "releaseSlot":
        if (p.storeReachable) this.store.release(a.key, a.claim, this.nowMs);
        return;
      case "clone": {
        this.clones += 1;
        const name = `n${String(++this.cloneCounter).padStart(2, "0")}`;
        this.log(`${p.name} clones ${name} (slot ${a.slot}, template ${a.template_hash})`);
        // The clone lands on the requester's side of any partition as it is when the pod starts.
        const isolated = this.o.isolatedCloneProbability > 0 && this.rng() < this.o.isolatedCloneProbability;
        this.schedule(this.nowMs + this.between(this.o.scheduleDelayMs), () =>
          this.startPod(
            name,
            { index: a.slot, claim: a.claim },
            a.template_hash,
            isolated ? ++this.isolatedGroups : p.group,
          ),
        );
        return;
      }
      case "retire":
        this.retirements += 1;
        p.running = false;
        this.log(`${p.name} retires (${a.reason})`);
        return;
      case "log":
        if (this.o.verbose) this.log(`${p.name}: ${a.msg}`);
        return;
    }
  }
}

/** The bound the clone slots enforce for a spec. */
export function slotBound(spec: { replicas: number; max_surge: number; max_unavailable: number }): number {
  return spec.replicas + effectiveStrategy(spec).surge;
}
