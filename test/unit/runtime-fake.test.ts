import { ManualClock } from "../../controllers/common/clock.js";
import { FakeRuntime, type PodEvent } from "../../controllers/scheduler-bidder/runtime/fake.js";
import {
  DeployFailedError,
  InsufficientCapacityError,
  InvalidDeploySpecError,
  PodExistsError,
  PodNotFoundError,
  RuntimeError,
  type DeploySpec,
  type PodManifest,
} from "../../controllers/scheduler-bidder/runtime/types.js";

function manifest(containers: string[] = ["app"]): PodManifest {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { labels: { app: "web" } },
    spec: { containers: containers.map((name) => ({ name, image: "localhost/beemesh/busybox:latest" })) },
  };
}

function spec(podName: string, over: Partial<DeploySpec> = {}): DeploySpec {
  return {
    podName,
    manifest: manifest(),
    identity: {
      taskId: `task-${podName}`,
      ns: "default",
      parent: "web",
      kind: "Deployment",
      generation: 1,
      fencingToken: 7,
    },
    limits: { cpuMillis: 100, memoryBytes: 64 * 2 ** 20 },
    ...over,
  };
}

function record(rt: FakeRuntime): PodEvent[] {
  const events: PodEvent[] = [];
  rt.events.subscribe((e) => events.push(e));
  return events;
}

describe("FakeRuntime", () => {
  test("deploy, status, list, logs, remove", async () => {
    const rt = new FakeRuntime({ clock: new ManualClock(1_000) });
    const s = spec("web-1", {
      identity: {
        taskId: "01HZZZZZZZZZZZZZZZZZZZZZZZ",
        ns: "shop",
        parent: "db",
        kind: "StatefulSet",
        ordinal: 2,
        generation: 4,
        fencingToken: 99,
      },
    });
    await rt.deploy(s);

    const status = await rt.status("web-1");
    expect(status).toEqual({
      podName: "web-1",
      phase: "running",
      containers: [{ name: "app", state: "running", startedAt: 1_000, restarts: 0 }],
    });

    const listing = await rt.list();
    expect(listing.unparsable).toEqual([]);
    expect(listing.pods).toEqual([
      { podName: "web-1", identity: s.identity, limits: s.limits, phase: "running" },
    ]);

    rt.appendLog("web-1", "app", "one");
    rt.appendLog("web-1", "app", "two");
    rt.appendLog("web-1", "app", "three");
    expect(await rt.logs("web-1", { tail: 2 })).toEqual({
      podName: "web-1",
      containers: [{ name: "app", lines: ["two", "three"] }],
    });

    await expect(rt.remove("web-1")).resolves.toBe(true);
    await expect(rt.remove("web-1")).resolves.toBe(false);
    await expect(rt.status("web-1")).rejects.toBeInstanceOf(PodNotFoundError);
    await expect(rt.logs("web-1")).rejects.toBeInstanceOf(PodNotFoundError);
    expect((await rt.list()).pods).toEqual([]);
  });

  test("a second deploy under the same name is refused", async () => {
    const rt = new FakeRuntime();
    await rt.deploy(spec("a"));
    const err = await rt.deploy(spec("a")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PodExistsError);
    expect(err).toBeInstanceOf(RuntimeError);
    expect((err as PodExistsError).name).toBe("PodExistsError");
    expect(rt.podCount).toBe(1);
  });

  test("invalid specs are refused before anything is reserved", async () => {
    const rt = new FakeRuntime();
    await expect(rt.deploy(spec("Bad_Name"))).rejects.toBeInstanceOf(InvalidDeploySpecError);
    await expect(
      rt.deploy(spec("ok", { identity: { ...spec("ok").identity, kind: "StatefulSet" } })),
    ).rejects.toThrow(/StatefulSet needs an ordinal/);
    await expect(rt.deploy(spec("ok", { manifest: manifest(["app", "app"]) }))).rejects.toThrow(/used twice/);
    expect((await rt.capacity()).used).toEqual({ cpuMillis: 0, memoryBytes: 0, pods: 0 });
  });

  test("crash: the app dies, the pod reports failed with the exit code, and events follow", async () => {
    const clock = new ManualClock(0);
    const rt = new FakeRuntime({ clock });
    const events = record(rt);
    await rt.deploy(spec("w"));
    await clock.advance(500);
    rt.crash("w", { exitCode: 137, reason: "OOMKilled" });

    const status = await rt.status("w");
    expect(status.phase).toBe("failed");
    expect(status.containers[0]).toMatchObject({
      state: "exited",
      exitCode: 137,
      reason: "OOMKilled",
      finishedAt: 500,
    });
    expect((await rt.logs("w")).containers[0]?.lines).toEqual(["fake: exited with code 137"]);
    expect(() => rt.crash("w")).toThrow(RuntimeError);

    await rt.remove("w");
    expect(events.map((e) => [e.phase, e.previous, e.at])).toEqual([
      ["pending", undefined, 0],
      ["running", "pending", 0],
      ["failed", "running", 500],
      ["removed", "failed", 500],
    ]);
  });

  test("an exit with 0 ends a single-container pod as exited, but not a pod whose sidecar still runs", async () => {
    const rt = new FakeRuntime();
    await rt.deploy(spec("solo"));
    rt.crash("solo", { exitCode: 0 });
    expect((await rt.status("solo")).phase).toBe("exited");

    await rt.deploy(spec("duo", { manifest: manifest(["app", "watchdog"]) }));
    rt.crash("duo", { container: "app", exitCode: 0 });
    expect((await rt.status("duo")).phase).toBe("running");
    rt.crash("duo", { container: "watchdog", exitCode: 2 });
    expect((await rt.status("duo")).phase).toBe("failed");
    expect(() => rt.crash("duo", { container: "nope" })).toThrow(/no container nope/);
  });

  test("deploy delay: pending until the injected clock moves, then running", async () => {
    const clock = new ManualClock(10);
    const rt = new FakeRuntime({ clock, deployDelayMs: 200 });
    const deployed = rt.deploy(spec("slow"));
    expect((await rt.status("slow")).phase).toBe("pending");
    expect((await rt.status("slow")).containers[0]).toMatchObject({
      state: "waiting",
      reason: "ContainerCreating",
    });
    expect(clock.pending).toBe(1);
    await clock.advance(199);
    expect((await rt.status("slow")).phase).toBe("pending");
    await clock.advance(1);
    await deployed;
    expect(await rt.status("slow")).toMatchObject({ phase: "running", containers: [{ startedAt: 210 }] });
  });

  test("removing a pod while it deploys fails that deploy and frees its share", async () => {
    const clock = new ManualClock();
    const rt = new FakeRuntime({ clock, deployDelayMs: { min: 50, max: 100 } });
    const outcome = rt.deploy(spec("gone")).catch((e: unknown) => e);
    await expect(rt.remove("gone")).resolves.toBe(true);
    await clock.advance(100);
    expect(await outcome).toBeInstanceOf(DeployFailedError);
    expect((await rt.capacity()).used.pods).toBe(0);
  });

  test("failure rate: seeded, reproducible, close to the configured rate", async () => {
    async function failures(seed: number): Promise<string[]> {
      const rt = new FakeRuntime({
        failureRate: 0.3,
        seed,
        capacity: { pods: 2000, cpuMillis: 1e9, memoryBytes: 1e15 },
      });
      const failed: string[] = [];
      for (let i = 0; i < 1000; i++) {
        await rt.deploy(spec(`p-${i}`)).catch((e: unknown) => {
          if (!(e instanceof DeployFailedError)) throw e;
          failed.push(`p-${i}`);
        });
      }
      const listing = await rt.list();
      expect(listing.pods.length + failed.length).toBe(1000);
      expect((await rt.capacity()).used.pods).toBe(listing.pods.length);
      return failed;
    }
    const a = await failures(42);
    expect(a.length).toBeGreaterThan(250);
    expect(a.length).toBeLessThan(350);
    expect(await failures(42)).toEqual(a);
    expect(await failures(43)).not.toEqual(a);
  });

  test("a failed deploy emits failed then removed", async () => {
    const rt = new FakeRuntime({ failureRate: 1 });
    const events = record(rt);
    await expect(rt.deploy(spec("f"))).rejects.toThrow(/injected failure/);
    expect(events.map((e) => e.phase)).toEqual(["pending", "failed", "removed"]);
    await expect(rt.status("f")).rejects.toBeInstanceOf(PodNotFoundError);
  });

  test("capacity: cpu, memory and pod count are each enforced and released on remove", async () => {
    const rt = new FakeRuntime({ capacity: { cpuMillis: 250, memoryBytes: 256, pods: 2 } });
    const small = { cpuMillis: 100, memoryBytes: 100 };
    await rt.deploy(spec("a", { limits: small }));
    await expect(rt.deploy(spec("b", { limits: { cpuMillis: 200, memoryBytes: 1 } }))).rejects.toBeInstanceOf(
      InsufficientCapacityError,
    );
    await expect(rt.deploy(spec("b", { limits: { cpuMillis: 1, memoryBytes: 200 } }))).rejects.toThrow(
      /free 150m\/156B\/1 pods/,
    );
    await rt.deploy(spec("b", { limits: small }));
    await expect(rt.deploy(spec("c", { limits: { cpuMillis: 0, memoryBytes: 0 } }))).rejects.toBeInstanceOf(
      InsufficientCapacityError,
    );
    expect(await rt.capacity()).toEqual({
      total: { cpuMillis: 250, memoryBytes: 256, pods: 2 },
      used: { cpuMillis: 200, memoryBytes: 200, pods: 2 },
    });
    await rt.remove("a");
    expect((await rt.capacity()).used).toEqual({ cpuMillis: 100, memoryBytes: 100, pods: 1 });
    await rt.deploy(spec("c", { limits: small }));
  });

  test("events as an async iterable", async () => {
    const rt = new FakeRuntime();
    const seen: string[] = [];
    const done = (async () => {
      for await (const e of rt.events) {
        seen.push(`${e.podName}:${e.phase}`);
        if (e.phase === "removed") break;
      }
    })();
    await rt.deploy(spec("it"));
    await rt.remove("it");
    await done;
    expect(seen).toEqual(["it:pending", "it:running", "it:removed"]);
    expect(rt.events.listenerCount).toBe(0);
  });

  test("options that contradict themselves are refused", () => {
    expect(() => new FakeRuntime({ failureRate: 1.5 })).toThrow(RuntimeError);
    expect(() => new FakeRuntime({ deployDelayMs: { min: 10, max: 5 } })).toThrow(RuntimeError);
  });

  // Cost is measured by bench/scheduling.ts; here only that 10,000 pods on 100
  // runtimes all come up on one clock advance.
  test("ten thousand pods across a hundred runtimes all run", async () => {
    const clock = new ManualClock();
    const nodes = Array.from(
      { length: 100 },
      () => new FakeRuntime({ clock, deployDelayMs: { min: 1, max: 50 }, capacity: { pods: 200 } }),
    );
    const deploys: Promise<void>[] = [];
    nodes.forEach((rt, n) => {
      for (let i = 0; i < 100; i++)
        deploys.push(rt.deploy(spec(`n${n}-p${i}`, { limits: { cpuMillis: 1, memoryBytes: 1 } })));
    });
    expect(clock.pending).toBe(10_000);
    await clock.advance(50);
    await Promise.all(deploys);
    let running = 0;
    for (const rt of nodes) running += (await rt.list()).pods.filter((p) => p.phase === "running").length;
    expect(running).toBe(10_000);
  });
});
