// The fan-out plan: what one reconcile publishes, from the object's current
// generation, the dispatch record of what was published before and, for a
// later generation of a Deployment, how many of its replicas live.
import {
  needsCensus,
  planFanout,
  type DispatchRecord,
  type FanoutTarget,
  type ReplicaCensus,
} from "../../controllers/dispatcher/fanout/index.js";

const dep = (generation: number, replicas: number, templateHash = "h1", uid = "u1"): FanoutTarget => ({
  kind: "Deployment",
  uid,
  generation,
  replicas,
  templateHash,
});
const sts = (generation: number, replicas: number, templateHash = "h1"): FanoutTarget => ({
  ...dep(generation, replicas, templateHash),
  kind: "StatefulSet",
});

function rec(p: Partial<DispatchRecord>): DispatchRecord {
  return {
    kind: "Deployment",
    ns: "default",
    name: "web",
    uid: "u1",
    generation: 1,
    template_hash: "h1",
    template_generation: 1,
    replicas: 3,
    first: 0,
    next: 3,
    manifests: [],
    ts: 0,
    ...p,
  };
}

describe("planFanout", () => {
  const cases: Array<
    [
      string,
      FanoutTarget,
      DispatchRecord | undefined,
      { reason: string; from: number; to: number; tg?: number; remove?: number; census?: ReplicaCensus },
    ]
  > = [
    ["a new object publishes every slot", dep(1, 3), undefined, { reason: "new", from: 0, to: 3, tg: 1 }],
    [
      "a record of another uid (recreated object) starts over",
      dep(1, 2),
      rec({ uid: "old" }),
      { reason: "new", from: 0, to: 2 },
    ],
    [
      "the same generation fully published is up to date",
      dep(1, 3),
      rec({}),
      { reason: "up-to-date", from: 3, to: 3 },
    ],
    [
      "an interrupted generation resumes at the checkpoint",
      dep(1, 5),
      rec({ replicas: 5, next: 2 }),
      { reason: "resume", from: 2, to: 5 },
    ],
    [
      "a record of a later generation means our copy is stale",
      dep(1, 3),
      rec({ generation: 2 }),
      { reason: "stale", from: 0, to: 0 },
    ],
    [
      "with no replica known alive, scale up publishes only the new slots",
      dep(2, 5),
      rec({}),
      { reason: "scaled-up", from: 3, to: 5, tg: 1 },
    ],
    [
      "scale down publishes nothing (the watchdogs retire the surplus)",
      dep(2, 1),
      rec({}),
      { reason: "scaled-down", from: 1, to: 1, tg: 1 },
    ],
    [
      "with no replica known alive, a template change publishes a whole new generation",
      dep(2, 3, "h2"),
      rec({}),
      { reason: "template-changed", from: 0, to: 3, tg: 2 },
    ],
    [
      "template change and scale at once still publishes all slots",
      dep(3, 4, "h2"),
      rec({ generation: 2 }),
      { reason: "template-changed", from: 0, to: 4, tg: 3 },
    ],
    [
      "a metadata-only bump of generation publishes nothing",
      dep(2, 3),
      rec({}),
      { reason: "unchanged", from: 3, to: 3, tg: 1 },
    ],
    [
      "after a scale-down, scaling up again fills from the new count",
      dep(3, 4),
      rec({ generation: 2, replicas: 1, first: 1, next: 1 }),
      { reason: "scaled-up", from: 1, to: 4 },
    ],
    [
      "a StatefulSet template change is rolled by its Raft group: no tasks",
      sts(2, 3, "h2"),
      rec({ kind: "StatefulSet" }),
      { reason: "template-changed", from: 3, to: 3, tg: 2 },
    ],
    [
      "a StatefulSet scale-down removes the ordinals above",
      sts(2, 1),
      rec({ kind: "StatefulSet" }),
      { reason: "scaled-down", from: 1, to: 1, remove: 1 },
    ],
    [
      "a StatefulSet scale-up adds the new ordinals",
      sts(2, 5),
      rec({ kind: "StatefulSet" }),
      { reason: "scaled-up", from: 3, to: 5 },
    ],
    [
      "a Deployment template change with live watchdogs is left to them: no tasks",
      dep(2, 3, "h2"),
      rec({}),
      { reason: "template-changed", from: 3, to: 3, tg: 2, census: { live: 3 } },
    ],
    [
      "a Deployment scale-up with one live watchdog is left to it: no tasks",
      dep(2, 5),
      rec({}),
      { reason: "scaled-up", from: 5, to: 5, tg: 1, census: { live: 1 } },
    ],
    [
      "a Deployment template change with no replica alive publishes a whole new generation",
      dep(2, 3, "h2"),
      rec({}),
      { reason: "template-changed", from: 0, to: 3, tg: 2, census: { live: 0 } },
    ],
    [
      "after a scale to zero no watchdog is left: scaling up publishes every slot, whatever the census",
      dep(3, 3),
      rec({ generation: 2, replicas: 0, first: 0, next: 0 }),
      { reason: "scaled-up", from: 0, to: 3, tg: 1, census: { live: 2 } },
    ],
    [
      "a StatefulSet ignores the census: its Raft group has no watchdog",
      sts(2, 5),
      rec({ kind: "StatefulSet" }),
      { reason: "scaled-up", from: 3, to: 5, census: { live: 3 } },
    ],
  ];

  it.each(cases)("%s", (_name, target, record, want) => {
    const plan = planFanout(target, record, want.census);
    expect({ reason: plan.reason, from: plan.from, to: plan.to }).toEqual({
      reason: want.reason,
      from: want.from,
      to: want.to,
    });
    if (want.tg !== undefined) expect(plan.record.template_generation).toBe(want.tg);
    expect(plan.removeOrdinalsFrom).toBe(want.remove);
    if (plan.writeRecord) {
      // The record after the plan covers exactly the slots the spec asks for.
      expect(plan.record.generation).toBe(target.generation);
      expect(plan.record.next).toBe(Math.max(target.replicas, plan.from));
      expect(plan.record.replicas).toBe(target.replicas);
      expect(plan.record.template_hash).toBe(target.templateHash);
    }
    // Left to the watchdogs exactly when the plan counted live ones and publishes nothing.
    expect(plan.byWatchdogs).toBe(
      target.kind === "Deployment" && needsCensus(target, record) && (want.census?.live ?? 0) > 0,
    );
    if (plan.byWatchdogs) expect(plan.to - plan.from).toBe(0);
  });

  it("is the same plan for the same inputs (any dispatcher, any restart)", () => {
    const a = planFanout(
      dep(4, 7, "h3"),
      rec({ generation: 3, replicas: 5, next: 5, template_hash: "h3", template_generation: 2 }),
    );
    const b = planFanout(
      dep(4, 7, "h3"),
      rec({ generation: 3, replicas: 5, next: 5, template_hash: "h3", template_generation: 2 }),
    );
    expect(a).toEqual(b);
    expect(a).toMatchObject({ from: 5, to: 7, record: { template_generation: 2 } });
  });

  it("asks for a census only for a later generation of a Deployment that had replicas", () => {
    expect(needsCensus(dep(1, 3), undefined)).toBe(false);
    expect(needsCensus(dep(2, 3), rec({ uid: "old" }))).toBe(false);
    expect(needsCensus(dep(1, 3), rec({}))).toBe(false);
    expect(needsCensus(dep(1, 3), rec({ generation: 2 }))).toBe(false);
    expect(needsCensus(dep(2, 3), rec({ replicas: 0, next: 0 }))).toBe(false);
    expect(needsCensus(sts(2, 3), rec({ kind: "StatefulSet" }))).toBe(false);
    expect(needsCensus(dep(2, 3, "h2"), rec({}))).toBe(true);
    expect(needsCensus(dep(2, 1), rec({}))).toBe(true);
  });
});

/** Plans a sequence of generations, each record being the last plan's, as the fan-out stores them. */
function run(steps: Array<{ target: FanoutTarget; live: number }>) {
  let record: DispatchRecord | undefined;
  return steps.map(({ target, live }) => {
    const plan = planFanout(target, record, needsCensus(target, record) ? { live } : undefined);
    if (plan.writeRecord) record = { ...rec({}), ...plan.record, next: plan.to };
    return { reason: plan.reason, tasks: plan.to - plan.from, byWatchdogs: plan.byWatchdogs, record };
  });
}

describe("planFanout over a Deployment's life", () => {
  it("create -> template change -> scale up -> scale down with live watchdogs: tasks only at creation", () => {
    const steps = run([
      { target: dep(1, 3, "h1"), live: 0 },
      { target: dep(2, 3, "h2"), live: 3 },
      { target: dep(3, 5, "h2"), live: 3 },
      { target: dep(4, 2, "h2"), live: 5 },
    ]);
    expect(steps.map((s) => [s.reason, s.tasks, s.byWatchdogs])).toEqual([
      ["new", 3, false],
      ["template-changed", 0, true],
      ["scaled-up", 0, true],
      ["scaled-down", 0, true],
    ]);
    // The watchdogs clone from the record: it follows every generation and its template.
    expect(steps[1]!.record).toMatchObject({ generation: 2, template_hash: "h2", template_generation: 2 });
    expect(steps[3]!.record).toMatchObject({
      generation: 4,
      replicas: 2,
      next: 2,
      template_hash: "h2",
      template_generation: 2,
    });
  });

  it("scale to 0 -> scale to 3 publishes 3 tasks (no watchdog survives 0), then a template change none", () => {
    const steps = run([
      { target: dep(1, 2, "h1"), live: 0 },
      { target: dep(2, 0, "h1"), live: 2 },
      // The old pods may still be on their way out (their provider records linger): no matter.
      { target: dep(3, 3, "h1"), live: 2 },
      { target: dep(4, 3, "h2"), live: 3 },
    ]);
    expect(steps.map((s) => [s.reason, s.tasks, s.byWatchdogs])).toEqual([
      ["new", 2, false],
      ["scaled-down", 0, true],
      ["scaled-up", 3, false],
      ["template-changed", 0, true],
    ]);
    expect(steps[2]!.record).toMatchObject({ generation: 3, replicas: 3, first: 0, next: 3 });
  });

  it("every replica gone: a template change publishes N tasks of it, a scale-up the new slots", () => {
    const steps = run([
      { target: dep(1, 3, "h1"), live: 0 },
      { target: dep(2, 3, "h2"), live: 0 },
      { target: dep(3, 4, "h2"), live: 0 },
    ]);
    expect(steps.map((s) => [s.reason, s.tasks])).toEqual([
      ["new", 3],
      ["template-changed", 3],
      ["scaled-up", 1],
    ]);
  });
});
