// A rolling update whose dispatch record lags its object (DESIGN §4): the
// dispatcher writes a new generation's record after the object, and the
// watchdogs see the object first. The leader's clone waits for the record
// (recordWaitMs, 900 ms with the mesh's 300 ms interval), and when the record
// takes longer its slot is released and the clone tried again after
// slotRetryMs, so the rollout does not stall for cloneGraceMs (60 s here, the
// default). The record's lag is staged on the watchdogs' own log lines, not
// timed, so a loaded machine cannot turn one case into the other. Real
// nats-server, node agents on fake runtimes, lease-keeper, in-process
// watchdogs (watchdog-mesh.ts).
import { WatchdogMesh, sampleDeployment } from "./watchdog-mesh.js";
import { waitFor } from "../helpers/wait.js";

const REPLICAS = 3;
const CLONE_GRACE_MS = 60_000;
/** parseWatchdogOptions' default for the mesh's 300 ms interval (3 intervals). */
const RECORD_WAIT_MS = 900;
const WAITING = "dispatch record lags the object; waiting for it";
const GAVE_UP = "clone task not built: the dispatch record did not catch up";
const CAUGHT_UP = "dispatch record caught up";

let mesh: WatchdogMesh;

beforeAll(async () => {
  mesh = await WatchdogMesh.start({ nodes: 3, readyDelayMs: 300, logic: { cloneGraceMs: CLONE_GRACE_MS } });
  await mesh.deploy(sampleDeployment("web", REPLICAS, "uid-web-race"));
  await waitFor(() => mesh.live("web").length === REPLICAS && mesh.watchdogsSettled("web"), {
    timeoutMs: 15_000,
    what: `${REPLICAS} replicas`,
  });
}, 30_000);

afterAll(async () => {
  await mesh?.stop();
});

/** Watchdog log lines with this message, over every pod the mesh ever ran. */
function logged(msg: string): number {
  return mesh.watchdogLogs().filter((l) => l.includes(`: ${msg} {`)).length;
}

interface Rollout {
  /** From the object's write until every replica ran the new template. */
  tookMs: number;
  /** From the record's write until the first pod of the new template started. */
  firstCloneAfterRecordMs: number;
  /** From the object's write until the record's. */
  recordLagMs: number;
}

/** Rolls `image` out with the record written once the watchdogs have logged `recordAfter` once more. */
async function rollWithLaggingRecord(image: string, recordAfter: string): Promise<Rollout> {
  // Every replica ready by its own probes first: an unready old replica is the first a rollout retires.
  await waitFor(
    () =>
      mesh.readyPods("web").length === REPLICAS &&
      mesh.live("web").every((p) => mesh.watchdogOf(p)?.status().view?.ready === true),
    { timeoutMs: 5000, what: `${REPLICAS} replicas ready, by ground truth and by their own probes` },
  );
  const old = mesh.live("web");
  const oldTemplate = mesh.templateOf(old[0]!);
  mesh.mark();
  const t0 = performance.now();
  const seen = logged(recordAfter);
  const { recorded } = await mesh.updateRecordLater(
    "web",
    (o) => {
      o.spec.template.spec.containers[0]!.image = image;
    },
    { until: () => logged(recordAfter) > seen, what: `a watchdog logging "${recordAfter}"` },
  );
  const recordedAt = await recorded;
  const rolled = await waitFor(
    () => {
      const live = mesh.live("web");
      return live.length === REPLICAS &&
        live.every((p) => mesh.templateOf(p) !== oldTemplate) &&
        mesh.watchdogsSettled("web")
        ? live
        : undefined;
    },
    // Well before cloneGraceMs: a clone refused for the lagging record no longer waits it out.
    { timeoutMs: 10_000, what: "every replica on the new template within 10 s" },
  );
  const tookMs = performance.now() - t0;
  const newTemplate = mesh.templateOf(rolled[0]!);
  // Mesh events: "<performance.now()> start <pod> on <node> template=<hash>".
  const starts = mesh.events
    .map((e) => /^(\d+) start \S+ on \S+ template=(\S+)$/.exec(e))
    .filter((m): m is RegExpExecArray => m !== null && m[2] === newTemplate)
    .map((m) => Number(m[1]));
  const firstCloneAfterRecordMs = Math.min(...starts) - recordedAt;
  console.log(
    `rollout of ${REPLICAS}, record ${Math.round(recordedAt - t0)} ms behind the object ` +
      `(after "${recordAfter}"): ${Math.round(tookMs)} ms; ` +
      `first clone ${Math.round(firstCloneAfterRecordMs)} ms after the record; ` +
      `max live ${mesh.maxLiveSinceMark()}; min ready ${mesh.minReadySinceMark()}`,
  );
  expect(rolled.filter((p) => old.includes(p))).toEqual([]);
  // maxSurge 1 / maxUnavailable 0, whatever the record did.
  expect(mesh.maxLiveSinceMark()).toBeLessThanOrEqual(REPLICAS + 1);
  expect(mesh.minReadySinceMark()).toBeGreaterThanOrEqual(REPLICAS);
  return { tookMs, firstCloneAfterRecordMs, recordLagMs: recordedAt - t0 };
}

it("a record later than recordWaitMs: the slot is released and the clone retried, no cloneGraceMs stall", async () => {
  const before = { waited: logged(WAITING), gaveUp: logged(GAVE_UP) };
  // The record comes only after a leader waited recordWaitMs for it and gave the slot up.
  const { tookMs, recordLagMs } = await rollWithLaggingRecord("localhost/app:v2", GAVE_UP);
  expect(tookMs).toBeLessThan(CLONE_GRACE_MS / 6);
  expect(recordLagMs).toBeGreaterThanOrEqual(RECORD_WAIT_MS);
  expect(logged(WAITING)).toBeGreaterThan(before.waited);
  expect(logged(GAVE_UP)).toBeGreaterThan(before.gaveUp);
}, 40_000);

it("a record within recordWaitMs: the waiting clone goes out as soon as the record is written", async () => {
  const before = { waited: logged(WAITING), gaveUp: logged(GAVE_UP), caughtUp: logged(CAUGHT_UP) };
  // The record comes right after the leader began to wait for it.
  const { tookMs, firstCloneAfterRecordMs } = await rollWithLaggingRecord("localhost/app:v3", WAITING);
  expect(tookMs).toBeLessThan(CLONE_GRACE_MS / 6);
  // The watch on the record's key wakes the clone: bidding (a 250 ± 100 ms
  // window) and the start, not a retry after slotRetryMs or cloneGraceMs.
  expect(firstCloneAfterRecordMs).toBeLessThan(3000);
  expect(logged(CAUGHT_UP)).toBeGreaterThan(before.caughtUp);
  expect(logged(GAVE_UP)).toBe(before.gaveUp);
}, 40_000);
