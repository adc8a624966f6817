// A partition of the watchdogs (DESIGN §4): 5 replicas split 2 | 3 so the
// groups cannot hear each other's heartbeats for 10 s, then heal. Each side
// sees a deficit and its leader tries to clone, but the clone slots in KV
// (replicas + maxSurge = 6 of them, reachable from both sides) bound the total:
// never more than 6 pods exist, and after the heal the surplus retires to 5.
//
// How the partition is made: every in-process watchdog has a heartbeat filter
// (WatchdogDriverOptions.acceptHeartbeat) that, while the mesh is partitioned,
// drops heartbeats from pods of the other group. NATS and KV stay reachable to
// all, as for two halves of a region that both still reach their NATS cluster.
// Clones join the group of the watchdog that cloned them.
import { WatchdogMesh, sampleDeployment } from "./watchdog-mesh.js";
import { waitFor } from "../helpers/wait.js";

let mesh: WatchdogMesh;

beforeAll(async () => {
  mesh = await WatchdogMesh.start({ nodes: 3 });
});

afterAll(async () => {
  await mesh?.stop();
});

// The scenario itself, not a wait for something: both sides must live with
// their deficit for several TTLs (and slot TTLs) while unable to hear each other.
const PARTITION_MS = 10_000;

const settled = (n: number) => () => {
  const live = mesh.live("web");
  return live.length === n && mesh.watchdogsSettled("web") ? live : undefined;
};

it(`partition 2 | 3 for ${PARTITION_MS / 1000} s, then heal: never more than 6 live, exactly 5 after`, async () => {
  await mesh.deploy(sampleDeployment("web", 5, "uid-web-p"));
  const before = await waitFor(settled(5), { timeoutMs: 15_000, what: "5 replicas" });

  mesh.mark();
  mesh.partition([before.slice(0, 2), before.slice(2)]);
  const t0 = performance.now();
  // Both sides believe replicas are missing: within the partition at most one clone gets a slot.
  await waitFor(() => mesh.live("web").length === 6, {
    timeoutMs: PARTITION_MS,
    what: "a clone during the partition",
  });
  const remaining = PARTITION_MS - (performance.now() - t0);
  await new Promise((r) => setTimeout(r, Math.max(0, remaining)));
  expect(mesh.maxLiveSinceMark()).toBe(6);
  expect(mesh.live("web")).toHaveLength(6);

  mesh.heal();
  const t1 = performance.now();
  const after = await waitFor(settled(5), { timeoutMs: 15_000, what: "5 replicas after the heal" });
  console.log(
    `partition heal: back to 5 in ${Math.round(performance.now() - t1)} ms; max live ${mesh.maxLiveSinceMark()}`,
  );
  // And it stays there, for the mesh's hold rounds of heartbeats.
  await mesh.heartbeatRounds("web", mesh.holdRounds());
  expect(mesh.live("web")).toEqual(after);
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(6);
});
