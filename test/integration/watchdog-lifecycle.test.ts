// A Deployment's life driven only by its object in KV (DESIGN §4): scale up
// and down, a rolling image update, and deletion, with no controller but the
// watchdogs (the stand-in dispatcher only stores the object and, for a new
// generation, its manifest). Real nats-server, node agents, lease-keeper.
import { WatchdogMesh, sampleDeployment } from "./watchdog-mesh.js";
import { waitFor } from "../helpers/wait.js";

let mesh: WatchdogMesh;

beforeAll(async () => {
  mesh = await WatchdogMesh.start({ nodes: 3, readyDelayMs: 300 });
  await mesh.deploy(sampleDeployment("web", 5, "uid-web-l"));
  await waitFor(settled(5), { timeoutMs: 15_000, what: "5 replicas" });
});

afterAll(async () => {
  await mesh?.stop();
});

function settled(n: number, template?: string) {
  return () => {
    const live = mesh.live("web");
    const ok =
      live.length === n &&
      mesh.watchdogsSettled("web") &&
      (template === undefined || live.every((p) => mesh.templateOf(p) === template));
    return ok ? live : undefined;
  };
}

/** Holds `n` for the mesh's hold rounds of heartbeats: no clone and no retirement beyond it. */
async function holds(n: number): Promise<void> {
  mesh.mark();
  await mesh.heartbeatRounds("web", mesh.holdRounds());
  expect(mesh.live("web")).toHaveLength(n);
  expect(mesh.maxLiveSinceMark()).toBe(n);
}

it("scales 5 -> 10 -> 2 from the object in KV", async () => {
  mesh.mark();
  await mesh.update("web", (o) => {
    o.spec.replicas = 10;
  });
  await waitFor(settled(10), { timeoutMs: 20_000, what: "10 replicas" });
  // replicas + maxSurge slots bound the way up.
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(11);
  await holds(10);

  const before = mesh.live("web");
  await mesh.update("web", (o) => {
    o.spec.replicas = 2;
  });
  const after = await waitFor(settled(2), { timeoutMs: 20_000, what: "2 replicas" });
  expect(after.every((p) => before.includes(p))).toBe(true);
  await holds(2);

  await mesh.update("web", (o) => {
    o.spec.replicas = 5;
  });
  await waitFor(settled(5), { timeoutMs: 20_000, what: "5 replicas again" });
});

it("rolls a new image out one replica at a time, never below replicas - maxUnavailable ready", async () => {
  // Ready by ground truth and by each replica's own probes. Until its probes have
  // passed successThreshold times a replica is unready to the logic (as a pod is
  // to Kubernetes), and an unready old replica is the first a rollout retires: a
  // rollout begun before then loses one that ground truth already counts as ready.
  await waitFor(
    () =>
      mesh.readyPods("web").length === 5 &&
      mesh.live("web").every((p) => mesh.watchdogOf(p)?.status().view?.ready === true),
    { timeoutMs: 5000, what: "5 replicas ready, by ground truth and by their own probes" },
  );
  const old = mesh.live("web");
  const oldTemplate = mesh.templateOf(old[0]!);
  mesh.mark();
  const obj = await mesh.update("web", (o) => {
    o.spec.template.spec.containers[0]!.image = "localhost/app:v2";
  });
  expect(obj.spec.strategy?.rollingUpdate?.maxUnavailable ?? 0).toBe(0);
  const t0 = performance.now();
  const rolled = await waitFor(
    () => {
      const live = mesh.live("web");
      return live.length === 5 &&
        live.every((p) => mesh.templateOf(p) !== oldTemplate) &&
        mesh.watchdogsSettled("web")
        ? live
        : undefined;
    },
    { timeoutMs: 40_000, what: "every replica on the new template" },
  );
  console.log(
    `rollout of 5: ${Math.round(performance.now() - t0)} ms; min ready ${mesh.minReadySinceMark()}; max live ${mesh.maxLiveSinceMark()}`,
  );
  expect(rolled.filter((p) => old.includes(p))).toEqual([]);
  // maxUnavailable 0: at least 5 ready pods at every moment; maxSurge 1: at most 6 pods.
  expect(mesh.minReadySinceMark()).toBeGreaterThanOrEqual(5);
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(6);
});

it("deleting the Deployment retires every replica", async () => {
  const replicas = mesh.live("web");
  expect(replicas).toHaveLength(5);
  await mesh.deleteObject("web");
  // Done when no pod is left and every watchdog web ever ran has ended: only a
  // watchdog publishes clones, so nothing can bring a replica back after that.
  const ended = (pod: string) => {
    const phase = mesh.watchdogOf(pod)?.status().phase;
    return phase === undefined || phase === "retired" || phase === "stopped";
  };
  const everyWatchdogOfWeb = () =>
    [...mesh.livePods().values()].filter((p) => p.parent === "web").map((p) => p.pod);
  await waitFor(() => mesh.live("web").length === 0 && everyWatchdogOfWeb().every(ended), {
    timeoutMs: 10_000,
    what: "no pods and no running watchdog left",
  });
  // Each replica left because it saw the deletion, not for any other reason.
  expect(replicas.map((p) => mesh.watchdogOf(p)?.status().retiredFor)).toEqual(replicas.map(() => "deleted"));
  expect(mesh.live("web")).toHaveLength(0);
});
