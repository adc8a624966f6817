import { createAuthorizer, classifySubject, type AuthzRule } from "../../protocol/bus/authz.js";
import { parseSpiffeId } from "../../identity/spiffe-id.js";
import { subjects } from "../../protocol/subjects.js";

const authorize = createAuthorizer();
const td = "spiffe://beemesh.local";
const T = "01HZX0000000000000000000AA";

const ids = {
  dispatcher: `${td}/controller/dispatcher/d-1`,
  leaseKeeper: `${td}/controller/lease-keeper/lk-1`,
  node1: `${td}/node/node-1`,
  node2: `${td}/node/node-2`,
  web0: `${td}/ns/default/deployment/web/web-0`,
  apiPod: `${td}/ns/default/deployment/api/api-0`,
  otherNsWeb: `${td}/ns/prod/deployment/web/web-0`,
  db0: `${td}/ns/default/statefulset/db/db-0`,
  alice: `${td}/user/alice`,
  oddball: `${td}/something/else`,
};

type Case = [what: string, sender: string, type: string, subject: string, payload: unknown, allowed: boolean];

const task = (extra: Record<string, unknown> = {}) => ({
  task_id: T,
  kind: "Deployment",
  ns: "default",
  parent: "web",
  origin: "dispatcher",
  ...extra,
});
const event = (extra: Record<string, unknown> = {}) => ({
  task_id: T,
  status: "deployed",
  kind: "Deployment",
  ns: "default",
  parent: "web",
  ...extra,
});
const hb = (extra: Record<string, unknown> = {}) => ({
  pod: "web-0",
  node: "node-1",
  ns: "default",
  parent: "web",
  ...extra,
});
const remove = (extra: Record<string, unknown> = {}) => ({
  ns: "default",
  kind: "Deployment",
  parent: "web",
  pod: "web-0",
  reason: "retire",
  ...extra,
});

const cases: Case[] = [
  // Tasks
  ["dispatcher publishes a task", ids.dispatcher, "Task", "beemesh.scheduler.tasks.3", task(), true],
  ["a user publishes a task", ids.alice, "Task", "beemesh.scheduler.tasks.3", task(), true],
  ["a node may not publish tasks", ids.node1, "Task", "beemesh.scheduler.tasks.3", task(), false],
  [
    "a lease-keeper may not publish a first attempt",
    ids.leaseKeeper,
    "Task",
    "beemesh.scheduler.tasks.3",
    task({ attempt: 0 }),
    false,
  ],
  [
    "a lease-keeper republishes a task nobody took",
    ids.leaseKeeper,
    "Task",
    "beemesh.scheduler.tasks.3",
    task({ attempt: 2 }),
    true,
  ],
  [
    "a lease-keeper republish with no attempt is refused",
    ids.leaseKeeper,
    "Task",
    "beemesh.scheduler.tasks.3",
    task(),
    false,
  ],
  [
    "a workload clones its own parent",
    ids.web0,
    "Task",
    "beemesh.scheduler.tasks.3",
    task({ origin: "clone" }),
    true,
  ],
  [
    "a workload may not publish a non-clone task",
    ids.web0,
    "Task",
    "beemesh.scheduler.tasks.3",
    task(),
    false,
  ],
  [
    "a workload may not clone another parent",
    ids.apiPod,
    "Task",
    "beemesh.scheduler.tasks.3",
    task({ origin: "clone" }),
    false,
  ],
  [
    "a workload may not clone in another namespace",
    ids.otherNsWeb,
    "Task",
    "beemesh.scheduler.tasks.3",
    task({ origin: "clone" }),
    false,
  ],
  [
    "a workload may not clone as another kind",
    ids.web0,
    "Task",
    "beemesh.scheduler.tasks.3",
    task({ origin: "clone", kind: "StatefulSet" }),
    false,
  ],
  [
    "a StatefulSet member clones its ordinal",
    ids.db0,
    "Task",
    "beemesh.scheduler.tasks.1",
    task({ origin: "clone", kind: "StatefulSet", parent: "db" }),
    true,
  ],
  ["tasks subject must have a shard", ids.dispatcher, "Task", "beemesh.scheduler.tasks", task(), false],
  // Bids
  [
    "a node bids as itself",
    ids.node1,
    "Bid",
    `beemesh.scheduler.proposals.${T}`,
    { task_id: T, node_id: "node-1" },
    true,
  ],
  [
    "a node may not bid as another node",
    ids.node1,
    "Bid",
    `beemesh.scheduler.proposals.${T}`,
    { task_id: T, node_id: "node-2" },
    false,
  ],
  [
    "a bid without node_id is refused",
    ids.node1,
    "Bid",
    `beemesh.scheduler.proposals.${T}`,
    { task_id: T },
    false,
  ],
  [
    "a bid for another task's subject is refused",
    ids.node1,
    "Bid",
    "beemesh.scheduler.proposals.OTHER",
    { task_id: T, node_id: "node-1" },
    false,
  ],
  [
    "a dispatcher may not bid",
    ids.dispatcher,
    "Bid",
    `beemesh.scheduler.proposals.${T}`,
    { task_id: T, node_id: "node-1" },
    false,
  ],
  [
    "a workload may not bid",
    ids.web0,
    "Bid",
    `beemesh.scheduler.proposals.${T}`,
    { task_id: T, node_id: "node-1" },
    false,
  ],
  // Leases
  [
    "a lease-keeper awards",
    ids.leaseKeeper,
    "Lease",
    "beemesh.scheduler.leases.node-1",
    { task_id: T, winner_id: "node-1" },
    true,
  ],
  [
    "a node may not award",
    ids.node1,
    "Lease",
    "beemesh.scheduler.leases.node-1",
    { task_id: T, winner_id: "node-1" },
    false,
  ],
  [
    "a dispatcher may not award",
    ids.dispatcher,
    "Lease",
    "beemesh.scheduler.leases.node-1",
    { task_id: T, winner_id: "node-1" },
    false,
  ],
  // Events
  [
    "a node reports as itself",
    ids.node1,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event({ node_id: "node-1" }),
    true,
  ],
  [
    "a node reports without node_id",
    ids.node1,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event(),
    true,
  ],
  [
    "a node may not report as another",
    ids.node1,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event({ node_id: "node-2" }),
    false,
  ],
  [
    "a lease-keeper reports",
    ids.leaseKeeper,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event({ status: "leased" }),
    true,
  ],
  [
    "a dispatcher reports",
    ids.dispatcher,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event(),
    true,
  ],
  [
    "a workload reports for its parent",
    ids.web0,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event({ status: "cloned" }),
    true,
  ],
  [
    "a workload may not report for another parent",
    ids.apiPod,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event(),
    false,
  ],
  [
    "an event's subject must name its ns and parent",
    ids.dispatcher,
    "Event",
    "beemesh.scheduler.events.deployment.default.api",
    event(),
    false,
  ],
  [
    "a user may not publish events",
    ids.alice,
    "Event",
    "beemesh.scheduler.events.deployment.default.web",
    event(),
    false,
  ],
  // Heartbeats
  ["a pod heartbeats as itself", ids.web0, "Heartbeat", "beemesh.watchdog.default.web", hb(), true],
  [
    "a pod may not heartbeat as a sibling",
    ids.web0,
    "Heartbeat",
    "beemesh.watchdog.default.web",
    hb({ pod: "web-1" }),
    false,
  ],
  [
    "a pod may not heartbeat for another deployment",
    ids.apiPod,
    "Heartbeat",
    "beemesh.watchdog.default.web",
    hb(),
    false,
  ],
  [
    "heartbeat payload must match its subject",
    ids.web0,
    "Heartbeat",
    "beemesh.watchdog.default.api",
    hb(),
    false,
  ],
  [
    "a dotted deployment name travels as one token",
    `${td}/ns/default/deployment/web.v2/web-0`,
    "Heartbeat",
    "beemesh.watchdog.default.web_v2",
    hb({ parent: "web.v2" }),
    true,
  ],
  [
    "a dotted name's token must match",
    `${td}/ns/default/deployment/web.v2/web-0`,
    "Heartbeat",
    "beemesh.watchdog.default.web_v3",
    hb({ parent: "web.v2" }),
    false,
  ],
  ["a node may not heartbeat", ids.node1, "Heartbeat", "beemesh.watchdog.default.web", hb(), false],
  // Raft
  ["a member talks raft in its group", ids.db0, "AppendEntries", "beemesh.raft.default.db.1", {}, true],
  [
    "a dotted StatefulSet name",
    `${td}/ns/default/statefulset/db.x/db-0`,
    "AppendEntries",
    "beemesh.raft.default.db_x.1",
    {},
    true,
  ],
  ["a deployment pod may not talk raft", ids.web0, "AppendEntries", "beemesh.raft.default.web.1", {}, false],
  [
    "a member may not talk in another group",
    ids.db0,
    "RequestVote",
    "beemesh.raft.default.other.1",
    {},
    false,
  ],
  // Node verbs
  ["a pod retires itself", ids.web0, "RemoveRequest", "beemesh.node.node-1.remove", remove(), true],
  [
    "a pod may not remove a sibling",
    ids.web0,
    "RemoveRequest",
    "beemesh.node.node-1.remove",
    remove({ pod: "web-1" }),
    false,
  ],
  [
    "a dispatcher removes",
    ids.dispatcher,
    "RemoveRequest",
    "beemesh.node.node-1.remove",
    remove({ reason: "delete" }),
    true,
  ],
  ["a user asks for logs", ids.alice, "LogsRequest", "beemesh.node.node-1.logs", {}, true],
  ["a pod may not ask for logs", ids.web0, "LogsRequest", "beemesh.node.node-1.logs", {}, false],
  [
    "a node may not ask another node to remove",
    ids.node2,
    "RemoveRequest",
    "beemesh.node.node-1.remove",
    remove(),
    false,
  ],
  // Replies, unknowns
  ["anyone may reply on an inbox", ids.node1, "LogsReply", "_INBOX.abc.def", {}, true],
  [
    "an unknown type on a known subject is refused",
    ids.dispatcher,
    "Bogus",
    "beemesh.scheduler.tasks.3",
    {},
    false,
  ],
  ["an unknown subject is refused", ids.dispatcher, "Task", "other.subject", task(), false],
  [
    "an unknown principal shape gets nothing",
    ids.oddball,
    "Task",
    "beemesh.scheduler.tasks.3",
    task(),
    false,
  ],
  ["a non-object payload is refused", ids.node1, "Bid", `beemesh.scheduler.proposals.${T}`, "node-1", false],
  [
    "an inherited field does not count",
    ids.node1,
    "Bid",
    `beemesh.scheduler.proposals.${T}`,
    Object.create({ node_id: "node-1", task_id: T }) as unknown,
    false,
  ],
];

describe("default authorization table", () => {
  test.each(cases)("%s", (_what, sender, type, subject, payload, allowed) => {
    const decision = authorize({ sender: parseSpiffeId(sender), type, subject, payload });
    expect(decision.allow).toBe(allowed);
    if (!decision.allow) expect(decision.why.length).toBeGreaterThan(0);
  });
});

describe("classifySubject", () => {
  test.each([
    ["beemesh.scheduler.tasks.1", "tasks"],
    ["beemesh.scheduler.proposals.x", "proposals"],
    ["beemesh.scheduler.leases.n", "leases"],
    ["beemesh.scheduler.events.a.b.c", "events"],
    ["beemesh.watchdog.a.b", "watchdog"],
    ["beemesh.raft.a.b.0", "raft"],
    ["beemesh.node.n.remove", "node"],
    ["_INBOX.x", "inbox"],
    ["beemesh.scheduler.other.x", undefined],
    ["beemeshx.watchdog.a.b", undefined],
    ["beemesh..watchdog", undefined],
  ])("%s → %s", (subject, family) => {
    expect(classifySubject(subject, "beemesh")?.family).toBe(family);
  });

  test("a custom prefix", () => {
    expect(classifySubject("m2.watchdog.a.b", "m2")?.tokens).toEqual(["watchdog", "a", "b"]);
    expect(classifySubject("beemesh.watchdog.a.b", "m2")).toBeUndefined();
  });
});

test("extra rules go in front of the table", () => {
  const rule: AuthzRule = {
    family: "tasks",
    types: ["Task"],
    authorize: () => ({ allow: false, why: "frozen" }),
  };
  const frozen = createAuthorizer({ extraRules: [rule] });
  const d = frozen({
    sender: parseSpiffeId(ids.dispatcher),
    type: "Task",
    subject: "beemesh.scheduler.tasks.1",
    payload: task(),
  });
  expect(d).toEqual({ allow: false, why: "frozen" });
});

describe("names with dots: the subject a sender builds is the one its receivers accept", () => {
  // Senders build subjects with subjects.ts (nameToken: "." -> "_"); the table must map names the same way.
  const names = ["web", "web.v2", "a.b.c", "shop-api.prod-1"];
  const s = subjects("region1.beemesh");
  const authz = createAuthorizer({ prefix: "region1.beemesh" });
  const allowed = (sender: string, type: string, subject: string, payload: unknown) =>
    authz({ sender: parseSpiffeId(sender), type, subject, payload }).allow;

  test.each(names)("events of %s from a node, a lease-keeper, a dispatcher and the workload", (name) => {
    const subject = s.events("Deployment", "default", name);
    const payload = { task_id: T, node_id: "node-1", kind: "Deployment", ns: "default", parent: name };
    expect(allowed(ids.node1, "Event", subject, payload)).toBe(true);
    expect(allowed(ids.leaseKeeper, "Event", subject, payload)).toBe(true);
    expect(allowed(ids.dispatcher, "Event", subject, payload)).toBe(true);
    expect(allowed(`${td}/ns/default/deployment/${name}/pod-1`, "Event", subject, payload)).toBe(true);
    // Another object's subject still refuses it.
    expect(allowed(ids.node1, "Event", s.events("Deployment", "default", `${name}x`), payload)).toBe(false);
  });

  test.each(names)("heartbeats and raft RPCs of %s", (name) => {
    const pod = `${name.replace(/\./g, "-")}-0`;
    const hb = { pod, node: "node-1", ns: "default", parent: name };
    expect(
      allowed(`${td}/ns/default/deployment/${name}/${pod}`, "Heartbeat", s.watchdog("default", name), hb),
    ).toBe(true);
    expect(
      allowed(`${td}/ns/default/statefulset/${name}/${pod}`, "AppendEntries", s.raft("default", name, 0), {}),
    ).toBe(true);
  });
});
