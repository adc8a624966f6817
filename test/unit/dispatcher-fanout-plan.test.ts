// The fan-out plan: what one reconcile publishes, from the object's current
// generation and the dispatch record of what was published before.
import {
  planFanout,
  type DispatchRecord,
  type FanoutTarget,
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
      { reason: string; from: number; to: number; tg?: number; remove?: number },
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
      "scale up publishes only the new slots",
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
      "a template change publishes a whole new generation",
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
  ];

  it.each(cases)("%s", (_name, target, record, want) => {
    const plan = planFanout(target, record);
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
});
