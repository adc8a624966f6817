// Failure of a winner (DESIGN §3 step 4): a node agent killed in the middle
// of a deploy stops renewing; after the lease TTL a keeper re-awards the task
// to the next best bid with a new fencing token, and when the killed node
// comes back it finds its lease gone and removes its stale copy, so exactly
// one copy runs. And a restarted agent adopts the pods its runtime still runs
// and keeps renewing their leases instead of starting them again.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { writeSvidFiles } from "../../identity/ca.js";
import { NodeAgent } from "../../controllers/scheduler-bidder/agent.js";
import { FakeRuntime } from "../../controllers/scheduler-bidder/runtime/index.js";
import { ensureSchedulingInfra } from "../../controllers/common/nats-setup.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { FAVOURITE_WINDOW, SchedulingMesh, podTemplate } from "../helpers/scheduling-mesh.js";
import { busAs } from "../helpers/bus.js";
import { waitFor } from "../helpers/wait.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

let mesh: SchedulingMesh;

beforeAll(async () => {
  mesh = await SchedulingMesh.start();
  await mesh.addKeeper("lk-1", FAVOURITE_WINDOW);
});

afterAll(async () => {
  await mesh?.stop();
});

async function copiesOf(taskId: string, runtimes: FakeRuntime[]): Promise<string[]> {
  const where: string[] = [];
  for (const rt of runtimes)
    for (const p of (await rt.list()).pods) if (p.identity.taskId === taskId) where.push(p.podName);
  return where;
}

async function restart(
  nodeId: string,
  runtime: FakeRuntime,
  extra: Partial<ConstructorParameters<typeof NodeAgent>[0]> = {},
) {
  const bus = await busAs(mesh.nats, "scheduler-bidder", ["node", nodeId]);
  const infra = await ensureSchedulingInfra(bus.bus.nc, { create: false });
  const logger = memoryLogger(`agent-${nodeId}-restarted`);
  const agent = new NodeAgent({ nodeId, bus: bus.bus, runtime, buckets: infra.buckets, logger, ...extra });
  await agent.start();
  return { agent, bus, logger };
}

test("winner killed during deploy: re-awarded after the TTL, exactly one copy runs", async () => {
  // The doomed node deploys slowly and is the hinted favourite, so it wins first.
  const doomedRuntime = new FakeRuntime({ deployDelayMs: 2000 });
  const doomed = await mesh.addAgent("kill-1", { runtime: doomedRuntime });
  const others = [await mesh.addAgent("kill-2"), await mesh.addAgent("kill-3")];
  const runtimes = [doomedRuntime, ...others.map((o) => o.runtime as FakeRuntime)];

  const ref = await mesh.putManifest(podTemplate("failover"));
  const task = await mesh.publish(mesh.task(ref, { parent: "failover", hints: { node: "kill-1" } }));
  const first = await mesh.waitForEvent(task.task_id, "leased");
  expect(first.node_id).toBe("kill-1");
  // The deploy has begun (the pod exists, still starting) when the agent dies.
  await waitFor(() => doomedRuntime.podCount === 1, { what: "the deploy to start" });
  const killedAt = performance.now();
  doomed.agent.kill();
  await doomed.bus.bus.close();

  const expired = await mesh.waitForEvent(task.task_id, "expired", 15_000);
  expect(expired.node_id).toBe("kill-1");
  const silentFor = performance.now() - killedAt;
  // Judged by the keeper's monotonic clock since the last renewal it saw (TTL 3 s).
  // The last renewal may have come up to one renew interval (1 s) before the kill.
  expect(silentFor).toBeGreaterThanOrEqual(3000 - 1000);

  const deployed = await waitFor(
    () => mesh.eventsOf(task.task_id, "deployed").find((e) => e.node_id !== "kill-1"),
    {
      timeoutMs: 15_000,
      what: "deployed on another node",
    },
  );
  const leases = mesh.eventsOf(task.task_id, "leased");
  expect(leases).toHaveLength(2);
  const second = leases[1]!;
  expect(second.node_id).toBe(deployed.node_id);
  expect(second.fencing_token).toBeGreaterThan(first.fencing_token!);
  expect(deployed.fencing_token).toBe(second.fencing_token);
  // The dead node never reported anything.
  expect(
    mesh.eventsOf(task.task_id).filter((e) => e.node_id === "kill-1" && e.sender.includes("/node/")),
  ).toEqual([]);

  // The killed node's runtime finished its deploy on its own: two copies for now.
  await waitFor(
    async () =>
      (await doomedRuntime.status((await doomedRuntime.list()).pods[0]!.podName)).phase === "running",
    {
      what: "the orphaned deploy to finish",
    },
  );
  expect(await copiesOf(task.task_id, runtimes)).toHaveLength(2);

  // The node comes back: its lease is someone else's now, so it removes its stale copy.
  const back = await restart("kill-1", doomedRuntime);
  try {
    const removed = await mesh.waitForEvent(task.task_id, "removed");
    expect(removed.node_id).toBe("kill-1");
    expect(removed.details).toMatch(/stale after restart/);
    const copies = await copiesOf(task.task_id, runtimes);
    expect(copies).toHaveLength(1);
    expect(doomedRuntime.podCount).toBe(0);
    const lease = (await mesh.infra.buckets.leases.get(`task.${task.task_id}`))!.json<{
      winner_id: string;
    }>();
    expect(lease.winner_id).toBe(deployed.node_id);
  } finally {
    await back.agent.stop();
    await back.bus.bus.close();
  }
}, 60_000);

test("a restarted agent adopts its running pods and resumes renewing their leases", async () => {
  const runtime = new FakeRuntime();
  const node = await mesh.addAgent("adopt-1", { runtime, settledRenewIntervalMs: 300, settleGraceMs: 100 });
  const ref = await mesh.putManifest(podTemplate("adopt"));
  const task = await mesh.publish(mesh.task(ref, { parent: "adopt", hints: { node: "adopt-1" } }));
  const deployed = await mesh.waitForEvent(task.task_id, "deployed");
  expect(deployed.node_id).toBe("adopt-1");
  const pod = runtime.status((await runtime.list()).pods[0]!.podName);
  expect((await pod).phase).toBe("running");

  await node.agent.stop();
  await node.bus.bus.close();
  const before = (await mesh.infra.buckets.leases.get(`task.${task.task_id}`))!.revision;

  const back = await restart("adopt-1", runtime, { settledRenewIntervalMs: 300, settleGraceMs: 100 });
  try {
    expect(back.agent.pods()).toEqual([
      expect.objectContaining({
        task_id: task.task_id,
        fencing_token: deployed.fencing_token,
        state: "running",
      }),
    ]);
    // Renewals resumed: new revisions of the same lease, by the same node, same fencing token.
    const renewed = await waitFor(
      async () => {
        const e = await mesh.infra.buckets.leases.get(`task.${task.task_id}`);
        return e !== null && e.revision >= before + 2 ? e : undefined;
      },
      { timeoutMs: 10_000, what: "renewals after the restart" },
    );
    const lease = renewed.json<{ winner_id: string; fencing_token: number }>();
    expect(lease).toEqual(
      expect.objectContaining({ winner_id: "adopt-1", fencing_token: deployed.fencing_token }),
    );
    // Not started again, not removed.
    expect(runtime.podCount).toBe(1);
    expect(mesh.eventsOf(task.task_id, "deployed")).toHaveLength(1);
    expect(mesh.eventsOf(task.task_id, "removed")).toEqual([]);
    const provider = await waitFor(() =>
      mesh.infra.buckets.providers.get(`deployment.default.adopt.${back.agent.pods()[0]!.pod}`),
    );
    expect(provider.json<{ node_id: string }>().node_id).toBe("adopt-1");
  } finally {
    await back.agent.stop();
    await back.bus.bus.close();
  }
}, 40_000);

test("an agent process SIGKILLed during deploy: the task is re-awarded and runs once", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "beemesh-agent-"));
  await writeSvidFiles(dir, "svid", await mesh.nats.issue("scheduler-bidder", "node", "proc-1"));
  const { NODE_OPTIONS: _jestOnly, ...env } = process.env;
  const child = spawn(process.execPath, ["--import", "tsx", "controllers/scheduler-bidder/main.ts"], {
    cwd: repo,
    env: {
      ...env,
      BEEMESH_NATS_URL: mesh.nats.url,
      BEEMESH_SVID_DIR: dir,
      BEEMESH_RUNTIME: "fake",
      BEEMESH_FAKE_DEPLOY_DELAY_MS: "5000",
      BEEMESH_HEALTH_PORT: "0",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once("exit", (_code, signal) => resolve(signal)),
  );
  try {
    await waitFor(() => stderr.includes('"msg":"ready"'), {
      timeoutMs: 30_000,
      what: `the agent process to start:\n${stderr}`,
    });
    const ref = await mesh.putManifest(podTemplate("sigkill"));
    const task = await mesh.publish(mesh.task(ref, { parent: "sigkill", hints: { node: "proc-1" } }));
    const first = await mesh.waitForEvent(task.task_id, "leased");
    expect(first.node_id).toBe("proc-1");
    // Its first renewal (the confirmation before it deploys) is in KV: the deploy is under way.
    await waitFor(
      async () =>
        ((await mesh.infra.buckets.leases.get(`task.${task.task_id}`))?.revision ?? 0) > first.fencing_token!,
      {
        what: "the winner's first renewal",
      },
    );
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");

    expect((await mesh.waitForEvent(task.task_id, "expired")).node_id).toBe("proc-1");
    const deployed = await waitFor(() => mesh.eventsOf(task.task_id, "deployed")[0], {
      timeoutMs: 15_000,
      what: "deployed elsewhere",
    });
    expect(deployed.node_id).not.toBe("proc-1");
    expect(mesh.eventsOf(task.task_id, "deployed")).toHaveLength(1);
    const copies = await copiesOf(
      task.task_id,
      [...mesh.agents.values()].map((a) => a.runtime as FakeRuntime),
    );
    expect(copies).toHaveLength(1);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
