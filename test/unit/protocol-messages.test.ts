// Wire messages: each example is accepted; each table row breaks one thing and
// names the field and reason the refusal must carry.
import {
  MESSAGE_PARSERS,
  isMessageType,
  parseBid,
  parseEnvelope,
  parseEvent,
  parseHeartbeat,
  parseLease,
  parseNodeStatus,
  parseProviderRecord,
  parseRemoveRequest,
  parseTask,
  taskOrdinals,
  taskReplicaCount,
} from "../../protocol/index.js";
import {
  exampleBid,
  exampleEnvelope,
  exampleEvent,
  exampleHeartbeat,
  exampleLease,
  exampleNodeStatus,
  exampleProviderRecord,
  exampleRemoveRequest,
  exampleStatefulTask,
  exampleTask,
} from "../../protocol/examples.js";
import type { FieldCause, Parser, Task } from "../../protocol/index.js";

type Obj = Record<string, unknown>;
const parsers: Record<string, Parser<unknown>> = {
  Task: parseTask,
  Bid: parseBid,
  Lease: parseLease,
  Event: parseEvent,
  Heartbeat: parseHeartbeat,
  NodeStatus: parseNodeStatus,
  ProviderRecord: parseProviderRecord,
  RemoveRequest: parseRemoveRequest,
  Envelope: parseEnvelope,
};
const examples: Record<string, () => Obj> = {
  Task: exampleTask,
  StatefulTask: exampleStatefulTask,
  Bid: exampleBid,
  Lease: exampleLease,
  Event: exampleEvent,
  Heartbeat: exampleHeartbeat,
  NodeStatus: exampleNodeStatus,
  ProviderRecord: exampleProviderRecord,
  RemoveRequest: exampleRemoveRequest,
  Envelope: exampleEnvelope,
};

function refusal(parse: Parser<unknown>, input: unknown): FieldCause[] {
  const r = parse(input);
  if (r.ok) throw new Error(`expected a refusal of ${JSON.stringify(input)}`);
  return [...r.error.causes];
}

describe("valid messages", () => {
  test.each(Object.keys(examples))("example %s is accepted unchanged", (name) => {
    const parse = parsers[name === "StatefulTask" ? "Task" : name] as Parser<unknown>;
    const input = (examples[name] as () => Obj)();
    const r = parse(input);
    if (!r.ok) throw r.error;
    expect(r.value).toEqual(input);
  });

  test("optional fields may be left out or undefined", () => {
    const t: Partial<Task> = exampleTask();
    delete t.count;
    delete t.hints;
    t.affinity = undefined;
    expect(parseTask(t).ok).toBe(true);
  });

  test("MESSAGE_PARSERS covers each payload type", () => {
    expect(Object.keys(MESSAGE_PARSERS).sort()).toEqual(
      ["Bid", "Event", "Heartbeat", "Lease", "NodeStatus", "ProviderRecord", "RemoveRequest", "Task"].sort(),
    );
    expect(isMessageType("Task")).toBe(true);
    expect(isMessageType("toString")).toBe(false);
    expect(MESSAGE_PARSERS.Bid(exampleBid()).ok).toBe(true);
  });
});

type Row = [
  name: string,
  parser: string,
  mutate: (o: Obj) => void,
  field: string,
  reason: FieldCause["reason"],
];
const set = (path: string, value: unknown) => (o: Obj) => {
  const keys = path.split(".");
  let at: Obj = o;
  for (const k of keys.slice(0, -1)) at = at[k] as Obj;
  at[keys[keys.length - 1] as string] = value;
};
const del = (key: string) => (o: Obj) => {
  delete o[key];
};

const rows: Row[] = [
  ["task id not a ULID", "Task", set("task_id", "not-a-ulid"), "task_id", "FieldValueInvalid"],
  [
    "task id lower case",
    "Task",
    set("task_id", "01hf7yat00sp7zq8gm4cvz7k5v"),
    "task_id",
    "FieldValueInvalid",
  ],
  ["unknown kind", "Task", set("kind", "DaemonSet"), "kind", "FieldValueNotSupported"],
  ["namespace with dots", "Task", set("ns", "a.b"), "ns", "FieldValueInvalid"],
  ["missing manifest ref", "Task", del("manifest_ref"), "manifest_ref", "FieldValueRequired"],
  ["bad sha256", "Task", set("manifest_ref.sha256", "abc"), "manifest_ref.sha256", "FieldValueInvalid"],
  ["negative cpu", "Task", set("reqs.cpu_millis", -1), "reqs.cpu_millis", "FieldValueInvalid"],
  [
    "port out of range",
    "Task",
    set("reqs.ports", [{ port: 70000, protocol: "TCP" }]),
    "reqs.ports[0].port",
    "FieldValueInvalid",
  ],
  [
    "duplicate port",
    "Task",
    set("reqs.ports", [
      { port: 80, protocol: "TCP" },
      { port: 80, protocol: "TCP" },
    ]),
    "reqs.ports[1]",
    "FieldValueDuplicate",
  ],
  ["priority beyond int32", "Task", set("priority", 2 ** 31), "priority", "FieldValueInvalid"],
  ["bad qos", "Task", set("qos", "Gold"), "qos", "FieldValueNotSupported"],
  ["bad origin", "Task", set("origin", "user"), "origin", "FieldValueNotSupported"],
  ["short nonce", "Task", set("nonce", "abc"), "nonce", "FieldValueInvalid"],
  ["ts as a string", "Task", set("ts", "2024-01-01T00:00:00Z"), "ts", "FieldValueTypeInvalid"],
  ["count zero", "Task", set("count", 0), "count", "FieldValueInvalid"],
  ["deployment with ordinal", "Task", set("ordinal", 0), "ordinal", "FieldValueForbidden"],
  ["statefulset without ordinal", "Task", set("kind", "StatefulSet"), "ordinal", "FieldValueRequired"],
  ["unknown field", "Task", set("pod_spec", {}), "pod_spec", "FieldValueForbidden"],
  [
    "node selector key",
    "Task",
    set("node_selector", { "a b": "x" }),
    "node_selector[a b]",
    "FieldValueInvalid",
  ],
  [
    "toleration Exists with value",
    "Task",
    set("tolerations", [{ key: "k", operator: "Exists", value: "v" }]),
    "tolerations[0].value",
    "FieldValueInvalid",
  ],
  ["bid fit without offer", "Bid", set("offered", 0), "offered", "FieldValueInvalid"],
  ["bid score NaN", "Bid", set("score", Number.NaN), "score", "FieldValueInvalid"],
  ["bid node id with dot", "Bid", set("node_id", "node.1"), "node_id", "FieldValueInvalid"],
  ["bid fit as string", "Bid", set("fit", "yes"), "fit", "FieldValueTypeInvalid"],
  [
    "lease with both keys",
    "Lease",
    set("identity", "identity.default.db.0"),
    "identity",
    "FieldValueForbidden",
  ],
  ["lease with no key", "Lease", del("task_id"), "task_id", "FieldValueRequired"],
  ["lease granted zero", "Lease", set("granted", 0), "granted", "FieldValueInvalid"],
  ["lease fencing negative", "Lease", set("fencing_token", -5), "fencing_token", "FieldValueInvalid"],
  ["event status unknown", "Event", set("status", "exploded"), "status", "FieldValueNotSupported"],
  ["deployed event without node", "Event", del("node_id"), "node_id", "FieldValueRequired"],
  ["heartbeat healthy missing", "Heartbeat", del("healthy"), "healthy", "FieldValueRequired"],
  ["heartbeat generation float", "Heartbeat", set("generation", 1.5), "generation", "FieldValueInvalid"],
  [
    "node allocatable above capacity",
    "NodeStatus",
    set("allocatable.cpu_millis", 99999),
    "allocatable.cpu_millis",
    "FieldValueInvalid",
  ],
  ["node duplicate shards", "NodeStatus", set("shards", [1, 1]), "shards", "FieldValueDuplicate"],
  [
    "node taint effect",
    "NodeStatus",
    set("taints", [{ key: "k", effect: "Sometimes" }]),
    "taints[0].effect",
    "FieldValueNotSupported",
  ],
  ["provider state", "ProviderRecord", set("state", "zombie"), "state", "FieldValueNotSupported"],
  ["remove reason", "RemoveRequest", set("reason", "because"), "reason", "FieldValueNotSupported"],
  ["envelope without sig", "Envelope", del("sig"), "sig", "FieldValueRequired"],
  ["envelope alg", "Envelope", set("sig.alg", "none"), "sig.alg", "FieldValueNotSupported"],
  ["envelope spiffe id", "Envelope", set("sig.spiffe_id", "https://x"), "sig.spiffe_id", "FieldValueInvalid"],
  ["envelope cert not base64", "Envelope", set("sig.cert", "%%%%"), "sig.cert", "FieldValueInvalid"],
  ["envelope type", "Envelope", set("type", "task.created"), "type", "FieldValueInvalid"],
];

describe("refused messages", () => {
  test.each(rows)("%s", (_name, parser, mutate, field, reason) => {
    const input = (examples[parser] as () => Obj)();
    mutate(input);
    const causes = refusal(parsers[parser] as Parser<unknown>, input);
    expect(causes).toContainEqual(expect.objectContaining({ field, reason }));
  });

  test("a StatefulSet batch must count its ordinals", () => {
    const t: Obj = exampleStatefulTask();
    t.count = 2;
    expect(refusal(parseTask, t)).toContainEqual(
      expect.objectContaining({ field: "count", reason: "FieldValueInvalid" }),
    );
    t.ordinal = 1;
    expect(refusal(parseTask, t)).toContainEqual(
      expect.objectContaining({ field: "ordinals", reason: "FieldValueForbidden" }),
    );
  });

  test("a non-object input is a root type error with an empty path", () => {
    for (const input of [null, 42, "task", [exampleTask()], undefined]) {
      const causes = refusal(parseTask, input);
      expect(causes).toEqual([expect.objectContaining({ field: "", reason: "FieldValueTypeInvalid" })]);
    }
  });

  test("an envelope's payload is only checked by the payload's parser", () => {
    const env = exampleEnvelope();
    env.payload = { anything: true };
    expect(parseEnvelope(env).ok).toBe(true);
    expect(parseTask(env.payload).ok).toBe(false);
  });
});

describe("task batches", () => {
  test("replica count and ordinals", () => {
    const t = exampleTask();
    delete t.count;
    expect(taskReplicaCount(t)).toBe(1);
    expect(taskOrdinals(t)).toEqual([]);
    expect(taskReplicaCount({ ...t, count: 5 })).toBe(5);
    const s = exampleStatefulTask();
    expect(taskReplicaCount(s)).toBe(3);
    expect(taskOrdinals(s)).toEqual([0, 1, 2]);
    expect(taskOrdinals({ ordinal: 4 })).toEqual([4]);
    expect(taskReplicaCount({ ordinal: 4 })).toBe(1);
  });
});

describe("bid kinds: fits, fits only by preemption, does not fit", () => {
  const victim = { ns: "default", pod: "low-1", task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5W", priority: 0 };
  const bid = (over: Obj) => ({ ...exampleBid(), ...over });

  test.each<[string, Obj, boolean, string]>([
    ["fits", { fit: true, offered: 1 }, true, ""],
    ["fits only by evicting the victims it names", { fit: false, offered: 1, victims: [victim] }, true, ""],
    ["does not fit", { fit: false, offered: 0, reasons: ["InsufficientCpu: 10 < 100"] }, true, ""],
    ["a fitting bid naming victims", { fit: true, offered: 1, victims: [victim] }, false, "victims"],
    ["a preempting bid that offers nothing", { fit: false, offered: 0, victims: [victim] }, false, "offered"],
    ["a bid that neither fits nor preempts yet offers", { fit: false, offered: 1 }, false, "offered"],
  ])("%s", (_what, over, ok, field) => {
    const parsed = MESSAGE_PARSERS.Bid(bid(over));
    expect(parsed.ok).toBe(ok);
    if (!parsed.ok) expect(parsed.error.causes.map((c) => c.field)).toContain(field);
  });
});
