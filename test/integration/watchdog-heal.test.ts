// Watchdogs heal their Deployment (DESIGN §4) through the real path: a real
// nats-server, real node agents on fake runtimes, a real lease-keeper, and one
// in-process watchdog per pod. Pods are killed under their agents, apps crash.
import { WatchdogMesh, sampleDeployment } from "./watchdog-mesh.js";
import { waitFor } from "../helpers/wait.js";

let mesh: WatchdogMesh;

beforeAll(async () => {
  mesh = await WatchdogMesh.start({ nodes: 3 });
});

afterAll(async () => {
  await mesh?.stop();
});

async function settledAt(parent: string, n: number, timeoutMs = 15_000): Promise<string[]> {
  return waitFor(
    () => {
      const live = mesh.live(parent);
      return live.length === n && mesh.watchdogsSettled(parent) ? live : undefined;
    },
    { timeoutMs, what: `${parent} at ${n} pods with running watchdogs (now ${mesh.live(parent).length})` },
  );
}

/** Holds `n` for the mesh's hold rounds of heartbeats: no clone and no retirement beyond it. */
async function staysAt(parent: string, n: number): Promise<void> {
  mesh.mark();
  await mesh.heartbeatRounds(parent, mesh.holdRounds());
  expect(mesh.live(parent)).toHaveLength(n);
  expect(mesh.maxLiveSinceMark()).toBe(n);
}

describe("watchdog healing", () => {
  it("places 5 replicas and keeps exactly 5", async () => {
    await mesh.deploy(sampleDeployment("web", 5, "uid-web-1"));
    await settledAt("web", 5);
    await staysAt("web", 5);
  });

  it("kill 1 of 5 -> back to 5, with a new pod", async () => {
    const before = await settledAt("web", 5);
    const victim = before[2]!;
    mesh.mark();
    const t0 = performance.now();
    await mesh.kill(victim);
    const after = await waitFor(
      () => {
        const live = mesh.live("web");
        return live.length === 5 && !live.includes(victim) && mesh.watchdogsSettled("web") ? live : undefined;
      },
      { timeoutMs: 15_000, what: "a replacement" },
    );
    console.log(`kill 1 of 5: healed in ${Math.round(performance.now() - t0)} ms`);
    expect(after.filter((p) => !before.includes(p))).toHaveLength(1);
    expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(6);
    await staysAt("web", 5);
  });

  it("kill 3 of 5 -> back to 5", async () => {
    const before = await settledAt("web", 5);
    const victims = before.slice(0, 3);
    mesh.mark();
    const t0 = performance.now();
    await Promise.all(victims.map((v) => mesh.kill(v)));
    expect(mesh.live("web")).toHaveLength(2);
    const after = await waitFor(
      () => {
        const live = mesh.live("web");
        return live.length === 5 && mesh.watchdogsSettled("web") ? live : undefined;
      },
      { timeoutMs: 20_000, what: "three replacements" },
    );
    console.log(`kill 3 of 5: healed in ${Math.round(performance.now() - t0)} ms`);
    expect(after.filter((p) => victims.includes(p))).toEqual([]);
    expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(6);
    await staysAt("web", 5);
  });

  it("an app crash is handed over at once: the dying pod clones its own replacement", async () => {
    const before = await settledAt("web", 5);
    const victim = before[before.length - 1]!;
    const wd = mesh.watchdogOf(victim)!;
    const metric = async (name: string) =>
      Number((await wd.registry.getSingleMetric(name)?.get())?.values[0]?.value ?? 0);
    const clonesBefore = await metric("beemesh_watchdog_clones_total");
    const t0 = performance.now();
    mesh.crash(victim);
    await waitFor(() => !mesh.live("web").includes(victim), {
      timeoutMs: 10_000,
      what: "the crashed pod removed by its node",
    });
    expect(wd.status().retiredFor).toBe("app-died");
    const after = await settledAt("web", 5);
    console.log(`app crash: healed in ${Math.round(performance.now() - t0)} ms`);
    expect(after).not.toContain(victim);
    // The replacement came from the dying pod's hand-over, not from a leader noticing a missing heartbeat.
    expect((await metric("beemesh_watchdog_clones_total")) - clonesBefore).toBe(1);
    expect(await metric("beemesh_watchdog_retires_total")).toBe(1);
    await staysAt("web", 5);
  });
});
