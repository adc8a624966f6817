// The revival monitor's driving: records from the feed (armed when they were
// there before it looked), the pods' evidence from the status observations,
// nodes asked once per probe period, a due revival handed on once; clock and
// prober are fakes, checks are called by hand.
import { memoryLogger } from "../../controllers/common/log.js";
import type { DispatchRecord } from "../../controllers/dispatcher/fanout/index.js";
import { templateHash } from "../../controllers/dispatcher/fanout/index.js";
import { ReviveMonitor, type NodeAnswer } from "../../controllers/dispatcher/revive/index.js";
import { PodObservations } from "../../controllers/dispatcher/status/index.js";
import type { BeemeshDeployment, Heartbeat, ProviderRecord } from "../../protocol/index.js";
import { deployment as fakeDeployment } from "../helpers/fanout-fakes.js";

const KEY = "Deployment/default/web";

/** default/web (uid-1), generation 1, as the fan-out fakes build it. */
const deployment = (replicas = 2): BeemeshDeployment => fakeDeployment(1, replicas);

function recordOf(w: BeemeshDeployment): DispatchRecord {
  return {
    kind: "Deployment",
    ns: "default",
    name: "web",
    uid: "uid-1",
    generation: 1,
    template_hash: templateHash(w),
    template_generation: 1,
    replicas: w.spec.replicas ?? 1,
    first: 0,
    next: w.spec.replicas ?? 1,
    manifests: [{ key: "sha256.x", sha256: "0".repeat(64) }],
    ts: 0,
  };
}

const heartbeat = (pod: string, node: string): Heartbeat => ({
  pod,
  node,
  ns: "default",
  parent: "web",
  generation: 1,
  healthy: true,
  ready: true,
  started_at: 1,
  spec_revision: 1,
  template_hash: "h",
  slot: 0,
  retiring: false,
  pending: [],
  ts: 1,
});

const provider = (pod: string, node: string): ProviderRecord => ({
  ns: "default",
  kind: "Deployment",
  parent: "web",
  pod,
  node_id: node,
  task_id: "01J0000000000000000000000A",
  fencing_token: 1,
  generation: 1,
  state: "running",
  ts: 1,
});

class Harness {
  now = 0;
  readonly obs = new PodObservations();
  readonly asked: string[] = [];
  readonly revived: Array<{ key: string; round: number; atMs: number }> = [];
  answers = new Map<string, NodeAnswer>();
  readonly w = deployment();
  readonly monitor = new ReviveMonitor({
    settings: { graceMs: 10_000, probeEveryMs: 1000 },
    observations: this.obs,
    workload: (key) => (key === KEY ? this.w : undefined),
    prober: {
      probe: async (node) => {
        this.asked.push(node);
        return this.answers.get(node) ?? "there";
      },
    },
    connected: () => true,
    revive: (key, _w, round) => this.revived.push({ key, round, atMs: this.now }),
    monotonic: () => this.now,
    logger: memoryLogger("revive"),
    providerTtlMs: 60_000,
  });

  /** Moves the clock in checks of 500 ms up to `toMs`, letting probe answers land in between. */
  async runTo(toMs: number): Promise<void> {
    while (this.now < toMs) {
      this.now = Math.min(toMs, this.now + 500);
      this.monitor.check();
      await new Promise((r) => setImmediate(r));
    }
  }
}

describe("ReviveMonitor", () => {
  it("revives once when every pod's heartbeats stop and their nodes do not answer", async () => {
    const h = new Harness();
    h.monitor.record(KEY, recordOf(h.w), false);
    h.obs.provider(provider("web-a", "node-1"), 0);
    h.obs.provider(provider("web-b", "node-2"), 0);
    h.obs.heartbeat("Deployment", heartbeat("web-a", "node-1"), 0);
    h.obs.heartbeat("Deployment", heartbeat("web-b", "node-2"), 0);
    await h.runTo(2000);
    expect(h.asked).toEqual([]);
    // Both nodes die with their pods: heartbeats age past the TTL (3 s), records stay.
    h.answers.set("node-1", "gone");
    h.answers.set("node-2", "gone");
    await h.runTo(4000);
    expect(h.asked.sort()).toEqual(["node-1", "node-2"]);
    await h.runTo(13_000);
    expect(h.revived).toEqual([]);
    await h.runTo(14_500);
    expect(h.revived).toEqual([{ key: KEY, round: 0, atMs: 14_000 }]);
    // Gone nodes are asked again once a second, not on every check.
    const asks = h.asked.length;
    await h.runTo(20_000);
    expect(h.asked.length - asks).toBeLessThanOrEqual(2 * 7);
    expect(h.revived).toHaveLength(1);
    await h.monitor.stop();
  });

  it("one node still answering for its pod keeps the Deployment alive", async () => {
    const h = new Harness();
    h.monitor.record(KEY, recordOf(h.w), true);
    h.obs.provider(provider("web-a", "node-1"), 0);
    h.obs.provider(provider("web-b", "node-2"), 0);
    h.answers.set("node-1", "gone");
    await h.runTo(60_000);
    expect(h.revived).toEqual([]);
    expect(h.asked).toContain("node-2");
    await h.monitor.stop();
  });

  it("a record it saw appear waits for life; one that was there at its start is armed", async () => {
    const fresh = new Harness();
    fresh.monitor.record(KEY, recordOf(fresh.w), false);
    await fresh.runTo(60_000);
    expect(fresh.revived).toEqual([]);
    const restarted = new Harness();
    restarted.monitor.record(KEY, recordOf(restarted.w), true);
    await restarted.runTo(60_000);
    expect(restarted.revived.map((r) => r.atMs)).toEqual([10_500, 20_500, 30_500, 40_500, 50_500]);
    // (The real record's next round would stop the repeats: see the next test.)
    await fresh.monitor.stop();
    await restarted.monitor.stop();
  });

  it("the new round's record disarms it until that round's pods are seen", async () => {
    const h = new Harness();
    h.monitor.record(KEY, recordOf(h.w), true);
    await h.runTo(10_500);
    expect(h.revived).toHaveLength(1);
    h.monitor.record(KEY, { ...recordOf(h.w), revival: { round: 1, count: 2, next: 2 } }, false);
    await h.runTo(60_000);
    expect(h.revived).toHaveLength(1);
    await h.monitor.stop();
  });

  it("a deleted record or object stops it", async () => {
    const h = new Harness();
    h.monitor.record(KEY, recordOf(h.w), true);
    await h.runTo(5000);
    h.monitor.record(KEY, undefined, false);
    await h.runTo(30_000);
    expect(h.revived).toEqual([]);
    await h.monitor.stop();
  });
});
