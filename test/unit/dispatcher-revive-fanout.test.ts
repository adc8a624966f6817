// Fanout.revive against in-memory ports: a round claimed by compare-and-set
// before its Tasks, so several dispatchers publish it once; an unfinished
// round is published again under the same ids (the fake stream drops repeats
// as JetStream's dedup window does); Tasks come from the record's manifest
// and task template; the revival stays with its generation.
import { type BeemeshDeployment } from "../../protocol/index.js";
import {
  Fanout,
  REVIVAL_HINT,
  revivalTaskId,
  taskIdFor,
  renderWorkload,
  type FanoutHooks,
} from "../../controllers/dispatcher/fanout/index.js";
import {
  FakeManifests,
  FakeRecords,
  FakeStream,
  deployment,
  fakeFanoutOptions,
} from "../helpers/fanout-fakes.js";

interface World {
  stream: FakeStream;
  records: FakeRecords;
  manifests: FakeManifests;
}

const world = (): World => ({
  stream: new FakeStream(),
  records: new FakeRecords(),
  manifests: new FakeManifests(),
});

function fanout(w: World, opts: { hooks?: FanoutHooks; sidecarImage?: string } = {}): Fanout {
  const base = fakeFanoutOptions(w);
  return new Fanout({
    ...base,
    render: { ...base.render, ...(opts.sidecarImage ? { watchdogImage: opts.sidecarImage } : {}) },
    ...(opts.hooks ? { hooks: opts.hooks } : {}),
  });
}

const revivalTasks = (w: World, round: number) =>
  w.stream.accepted.filter((t) => t.hints?.[REVIVAL_HINT] === String(round));

describe("Fanout.revive", () => {
  it("claims the next round in the record, then publishes one Task per replica from the record", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 3));
    const initial = w.stream.accepted.slice();
    const result = await f.revive(deployment(1, 3), 0);
    expect(result).toMatchObject({
      outcome: "published",
      generation: 1,
      round: 1,
      published: 3,
      duplicates: 0,
    });
    const tasks = revivalTasks(w, 1);
    expect(tasks).toHaveLength(3);
    const r = renderWorkload(deployment(1, 3), { natsUrl: "tls://127.0.0.1:4222" });
    expect(tasks.map((t) => t.task_id).sort()).toEqual([0, 1, 2].map((s) => revivalTaskId(r, 1, s)).sort());
    // Ids of their own: the first Tasks' ids may still sit in the stream's dedup window.
    const firstIds = new Set([0, 1, 2].map((s) => taskIdFor(r, s)));
    expect(tasks.some((t) => firstIds.has(t.task_id))).toBe(false);
    for (const t of tasks) {
      expect(t).toMatchObject({
        kind: "Deployment",
        parent: "web",
        parent_uid: "uid-1",
        generation: 1,
        origin: "dispatcher",
        manifest_ref: initial[0]!.manifest_ref,
        reqs: initial[0]!.reqs,
        qos: initial[0]!.qos,
      });
      expect(t.hints).toEqual({ ...initial[0]!.hints, [REVIVAL_HINT]: "1" });
    }
    expect(w.records.current().revival).toEqual({ round: 1, count: 3, next: 3 });
    expect(result.record?.revival).toEqual({ round: 1, count: 3, next: 3 });
  });

  it("the next round gets new ids again; a caller behind the record publishes nothing", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 2));
    await f.revive(deployment(1, 2), 0);
    expect(await f.revive(deployment(1, 2), 0)).toMatchObject({
      outcome: "superseded",
      round: 1,
      published: 0,
    });
    expect(await f.revive(deployment(1, 2), 1)).toMatchObject({
      outcome: "published",
      round: 2,
      published: 2,
    });
    const ids = new Set(w.stream.accepted.map((t) => t.task_id));
    expect(ids.size).toBe(6);
    expect(w.stream.attempts).toBe(6);
  });

  it("several dispatchers deciding at once publish one round, once", async () => {
    const w = world();
    await fanout(w).reconcile(deployment(1, 4));
    const results = await Promise.all([0, 1, 2].map(() => fanout(w).revive(deployment(1, 4), 0)));
    expect(results.map((r) => r.outcome).sort()).toEqual(["published", "superseded", "superseded"]);
    expect(revivalTasks(w, 1)).toHaveLength(4);
    // 4 initial Tasks, 4 revival Tasks: no publish attempt beyond them.
    expect(w.stream.attempts).toBe(8);
    expect(w.records.current().revival).toEqual({ round: 1, count: 4, next: 4 });
  });

  it("a round whose publisher died half way is finished under the same ids", async () => {
    const w = world();
    await fanout(w).reconcile(deployment(1, 3));
    const crashing = fanout(w, {
      hooks: {
        afterTaskPublished: (task) => {
          if (task.hints?.[REVIVAL_HINT] !== undefined) throw new Error("crash after the first revival task");
        },
      },
    });
    await expect(crashing.revive(deployment(1, 3), 0)).rejects.toThrow("crash");
    expect(w.records.current().revival).toEqual({ round: 1, count: 3, next: 0 });
    const published = revivalTasks(w, 1).length;
    expect(published).toBeGreaterThanOrEqual(1);
    // The record's round (1) is what the next decision passes.
    const result = await fanout(w).revive(deployment(1, 3), 1);
    expect(result).toMatchObject({ outcome: "resumed", round: 1, published: 3, duplicates: published });
    expect(revivalTasks(w, 1)).toHaveLength(3);
    expect(w.records.current().revival).toEqual({ round: 1, count: 3, next: 3 });
  });

  it("takes the manifest and task template from the record, not from its own rendering", async () => {
    const w = world();
    await fanout(w).reconcile(deployment(1, 2));
    const recorded = w.records.current().manifests[0]!;
    // Another dispatcher with another sidecar image would render another manifest.
    await fanout(w, { sidecarImage: "localhost/other:1" }).revive(deployment(1, 2), 0);
    expect(revivalTasks(w, 1).map((t) => t.manifest_ref)).toEqual([recorded, recorded]);
  });

  it.each<[string, (w: World) => Promise<BeemeshDeployment>]>([
    ["no record", async () => deployment(1, 2)],
    [
      "a record of an older generation",
      async (w) => {
        await fanout(w).reconcile(deployment(1, 2));
        return deployment(2, 2, "localhost/app:2");
      },
    ],
    [
      "no replicas wanted",
      async (w) => {
        await fanout(w).reconcile(deployment(1, 2));
        await fanout(w).reconcile(deployment(2, 0));
        return deployment(2, 0);
      },
    ],
    [
      "an object being deleted",
      async (w) => {
        await fanout(w).reconcile(deployment(1, 2));
        const d = deployment(1, 2);
        d.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
        return d;
      },
    ],
  ])("publishes nothing for %s", async (_, setup) => {
    const w = world();
    const d = await setup(w);
    const before = w.stream.attempts;
    expect(await fanout(w).revive(d, 0)).toMatchObject({ outcome: "ineligible", published: 0 });
    expect(w.stream.attempts).toBe(before);
  });

  it("a rewrite of the same generation keeps the revival; the next generation drops it", async () => {
    const w = world();
    const f = fanout(w);
    await f.reconcile(deployment(1, 2));
    await f.revive(deployment(1, 2), 0);
    // A resumed fan-out of generation 1 (its record says fewer were published) rewrites the record.
    const rec = w.records.current();
    const stored = (await w.records.get(rec))!;
    await w.records.put({ ...rec, next: 1 }, stored.revision);
    expect(await f.reconcile(deployment(1, 2))).toMatchObject({ reason: "resume" });
    expect(w.records.current().revival).toEqual({ round: 1, count: 2, next: 2 });
    expect(await f.reconcile(deployment(2, 2, "localhost/app:2"))).toMatchObject({
      reason: "template-changed",
    });
    expect(w.records.current().revival).toBeUndefined();
  });
});
