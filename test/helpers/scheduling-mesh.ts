// A scheduling mesh for integration tests: a real nats-server (mutual TLS,
// per-role users), a dispatcher-role bus that creates the streams and buckets,
// writes manifests and publishes tasks, node agents (each with its own node
// SVID and bus) over fake or real runtimes, and lease-keepers.
import { createHash } from "node:crypto";
import { Registry } from "prom-client";
import { ulid } from "ulid";
import { ensureSchedulingInfra, type SchedulingInfra } from "../../controllers/common/nats-setup.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { NodeAgent, type NodeAgentOptions } from "../../controllers/scheduler-bidder/agent.js";
import { FakeRuntime, type Runtime } from "../../controllers/scheduler-bidder/runtime/index.js";
import { LeaseKeeper, type LeaseKeeperOptions } from "../../controllers/lease-keeper/keeper.js";
import {
  kvKeys,
  parseEvent,
  shardOf,
  subjects,
  type Event,
  type ManifestRef,
  type Task,
} from "../../protocol/index.js";
import { newNonce } from "../../protocol/bus/index.js";
import { busAs, type TestBus } from "./bus.js";
import { startNats, type NatsFixture } from "./nats-server.js";
import { waitFor } from "./wait.js";

export interface MeshAgent {
  nodeId: string;
  agent: NodeAgent;
  runtime: Runtime;
  bus: TestBus;
}

export interface MeshKeeper {
  name: string;
  keeper: LeaseKeeper;
  bus: TestBus;
  registry: Registry;
}

export interface MeshOptions {
  shards?: number;
}

export class SchedulingMesh {
  readonly events: Array<Event & { sender: string }> = [];
  readonly agents = new Map<string, MeshAgent>();
  readonly keepers: MeshKeeper[] = [];
  readonly shards: number;
  private readonly closers: Array<() => Promise<unknown>> = [];
  private reader: Promise<void> | undefined;

  private constructor(
    readonly nats: NatsFixture,
    readonly dispatcher: TestBus,
    readonly infra: SchedulingInfra,
    opts: MeshOptions,
  ) {
    this.shards = opts.shards ?? 1;
  }

  static async start(opts: MeshOptions = {}): Promise<SchedulingMesh> {
    const nats = await startNats();
    try {
      const dispatcher = await busAs(nats, "dispatcher", ["controller", "dispatcher", "d1"]);
      const infra = await ensureSchedulingInfra(dispatcher.bus.nc, { create: true, storage: "memory" });
      const mesh = new SchedulingMesh(nats, dispatcher, infra, opts);
      const sub = dispatcher.bus.subscribe(subjects().allEvents, { type: "Event", parse: parseEvent });
      mesh.reader = (async () => {
        for await (const m of sub) mesh.events.push({ ...m.payload, sender: m.sender.toString() });
      })();
      await dispatcher.bus.nc.flush();
      return mesh;
    } catch (err) {
      await nats.stop();
      throw err;
    }
  }

  async addAgent(
    nodeId: string,
    opts: Partial<NodeAgentOptions> & { fake?: ConstructorParameters<typeof FakeRuntime>[0] } = {},
  ): Promise<MeshAgent> {
    const bus = await busAs(this.nats, "scheduler-bidder", ["node", nodeId]);
    const infra = await ensureSchedulingInfra(bus.bus.nc, { create: false, waitTimeoutMs: 5000 });
    const runtime = opts.runtime ?? new FakeRuntime(opts.fake);
    const { fake: _fake, ...rest } = opts;
    const agent = new NodeAgent({
      nodeId,
      bus: bus.bus,
      runtime,
      buckets: infra.buckets,
      logger: memoryLogger(`agent-${nodeId}`),
      shards: this.shards,
      ...rest,
    });
    await agent.start();
    const entry = { nodeId, agent, runtime, bus };
    this.agents.set(nodeId, entry);
    this.closers.push(async () => {
      await agent.stop();
      await bus.bus.close();
    });
    return entry;
  }

  async addKeeper(name: string, opts: Partial<LeaseKeeperOptions> = {}): Promise<MeshKeeper> {
    const bus = await busAs(this.nats, "lease-keeper", ["controller", "lease-keeper", name]);
    const infra = await ensureSchedulingInfra(bus.bus.nc, { create: false, waitTimeoutMs: 5000 });
    const registry = new Registry();
    const keeper = new LeaseKeeper({
      bus: bus.bus,
      buckets: infra.buckets,
      registry,
      logger: memoryLogger(`keeper-${name}`),
      ...opts,
    });
    await keeper.start();
    const entry = { name, keeper, bus, registry };
    this.keepers.push(entry);
    this.closers.push(async () => {
      await keeper.stop();
      await bus.bus.close();
    });
    return entry;
  }

  /** Stores a manifest as the dispatcher does (content-addressed); returns its reference. */
  async putManifest(manifest: unknown): Promise<ManifestRef> {
    const bytes = new TextEncoder().encode(JSON.stringify(manifest));
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const key = kvKeys.manifest(sha256);
    await this.infra.buckets.manifests.put(key, bytes);
    return { key, sha256 };
  }

  task(ref: ManifestRef, extra: Partial<Task> = {}): Task {
    return {
      task_id: ulid(),
      kind: "Deployment",
      ns: "default",
      parent: "web",
      parent_uid: "uid-web",
      generation: 1,
      manifest_ref: ref,
      reqs: { cpu_millis: 10, memory_bytes: 1 << 20, ports: [] },
      priority: 0,
      qos: "Burstable",
      attempt: 0,
      origin: "dispatcher",
      nonce: newNonce(),
      ts: Date.now(),
      ...extra,
    };
  }

  async publish(task: Task): Promise<Task> {
    const subject = subjects().tasks(shardOf(task.task_id, this.shards));
    await this.dispatcher.bus.publishDurable(
      subject,
      "Task",
      { ...task, ts: Date.now() },
      { msgID: task.task_id },
    );
    return task;
  }

  eventsOf(taskId: string, status?: Event["status"]): Array<Event & { sender: string }> {
    return this.events.filter((e) => e.task_id === taskId && (status === undefined || e.status === status));
  }

  async waitForEvent(
    taskId: string,
    status: Event["status"],
    timeoutMs = 15_000,
  ): Promise<Event & { sender: string }> {
    return waitFor(() => this.eventsOf(taskId, status)[0], {
      timeoutMs,
      what: `${status} event of ${taskId}`,
    });
  }

  async stop(): Promise<void> {
    for (const close of this.closers.reverse()) await close().catch(() => undefined);
    await this.dispatcher.bus.close().catch(() => undefined);
    await this.reader?.catch(() => undefined);
    await this.nats.stop();
  }
}

/**
 * Keeper options for tests whose hinted favourite must win: on a loaded
 * machine 250 ms can pass before its bid is read. The window closes early once
 * every node has bid, so a wide one costs these tests nothing.
 */
export const FAVOURITE_WINDOW = { logic: { windowMs: 1500 } };

export const BUSYBOX_IMAGE = "localhost/beemesh/busybox:latest";

/** A one-container pod template (never run by the fake runtime). */
export function podTemplate(parent = "web", labels: Record<string, string> = {}): unknown {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { labels: { app: parent, "beemesh.io/parent": parent, ...labels } },
    spec: {
      hostNetwork: true,
      restartPolicy: "Never",
      containers: [
        { name: "app", image: BUSYBOX_IMAGE, imagePullPolicy: "Never", command: ["/bin/sleep", "3600"] },
      ],
    },
  };
}
