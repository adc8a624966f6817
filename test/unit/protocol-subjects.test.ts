// Subjects, streams, buckets, token checks, KV keys and the shard function.
import {
  BUCKETS,
  DEFAULT_PREFIX,
  STREAMS,
  SubjectError,
  fnv1a32,
  isValidToken,
  kvKeys,
  nameFromToken,
  nameToken,
  shardOf,
  subjects,
  tokenProblem,
  parseLease,
} from "../../protocol/index.js";
import { EXAMPLE_TASK_ID, exampleLease } from "../../protocol/examples.js";

describe("subjects", () => {
  const s = subjects();

  test("default prefix and every subject family", () => {
    expect(DEFAULT_PREFIX).toBe("beemesh");
    expect(s.tasks(7)).toBe("beemesh.scheduler.tasks.7");
    expect(s.allTasks).toBe("beemesh.scheduler.tasks.*");
    expect(s.proposals(EXAMPLE_TASK_ID)).toBe(`beemesh.scheduler.proposals.${EXAMPLE_TASK_ID}`);
    expect(s.leases("node-1")).toBe("beemesh.scheduler.leases.node-1");
    expect(s.events("Deployment", "default", "web")).toBe("beemesh.scheduler.events.deployment.default.web");
    expect(s.events("StatefulSet", "prod", "db")).toBe("beemesh.scheduler.events.statefulset.prod.db");
    expect(s.allEvents).toBe("beemesh.scheduler.events.>");
    expect(s.eventsFilter({ ns: "default" })).toBe("beemesh.scheduler.events.*.default.*");
    expect(s.eventsFilter()).toBe("beemesh.scheduler.events.*.*.*");
    expect(s.watchdog("default", "web")).toBe("beemesh.watchdog.default.web");
    expect(s.raft("default", "db", 2)).toBe("beemesh.raft.default.db.2");
    expect(s.raftGroup("default", "db")).toBe("beemesh.raft.default.db.*");
    expect(s.node("node-1", "remove")).toBe("beemesh.node.node-1.remove");
    expect(s.nodeAll("node-1")).toBe("beemesh.node.node-1.*");
  });

  test("the prefix is configurable and may have several tokens", () => {
    expect(subjects("eu1.bm").watchdog("a", "b")).toBe("eu1.bm.watchdog.a.b");
    for (const bad of ["", "a..b", "a.*", "a b", ".a", "a>"])
      expect(() => subjects(bad)).toThrow(SubjectError);
  });

  test("names with dots become one token, reversibly", () => {
    expect(s.watchdog("default", "web.example")).toBe("beemesh.watchdog.default.web_example");
    expect(nameToken("a.b.c")).toBe("a_b_c");
    expect(nameFromToken(nameToken("a.b-c.d"))).toBe("a.b-c.d");
  });

  test.each([
    ["a.b", "dot"],
    ["*", "wildcard"],
    [">", "full wildcard"],
    ["a b", "space"],
    ["a\tb", "tab"],
    ["", "empty"],
    ["caf\u00e9", "non-ASCII"],
    ["x".repeat(256), "too long"],
  ])("token %j is refused (%s)", (tok) => {
    expect(isValidToken(tok)).toBe(false);
    expect(tokenProblem(tok)).toEqual(expect.any(String));
    expect(() => s.leases(tok)).toThrow(SubjectError);
  });

  test("bad variable parts are refused in every builder", () => {
    expect(() => s.tasks(-1)).toThrow(SubjectError);
    expect(() => s.tasks(1.5)).toThrow(SubjectError);
    expect(() => s.raft("default", "db", -1)).toThrow(SubjectError);
    expect(() => s.events("Deployment", "a.b", "web")).toThrow(SubjectError);
    expect(() => s.node("node-1", "re move")).toThrow(SubjectError);
    expect(() => s.proposals("x>")).toThrow(SubjectError);
  });

  test("stream and bucket names", () => {
    expect(STREAMS).toEqual({ tasks: "SCHEDULER_TASKS", events: "SCHEDULER_EVENTS" });
    expect(Object.values(BUCKETS).sort()).toEqual([
      "beemesh-leases",
      "beemesh-manifests",
      "beemesh-nodes",
      "beemesh-objects",
      "beemesh-providers",
    ]);
  });
});

describe("KV keys", () => {
  test("each family", () => {
    const sha = "a".repeat(64);
    expect(kvKeys.object("beemeshdeployments", "default", "web.x")).toBe("beemeshdeployments.default.web_x");
    expect(kvKeys.manifest(sha)).toBe(`sha256.${sha}`);
    expect(kvKeys.taskLease(EXAMPLE_TASK_ID)).toBe(`task.${EXAMPLE_TASK_ID}`);
    expect(kvKeys.identityLease("default", "db", 1)).toBe("identity.default.db.1");
    expect(kvKeys.cloneSlot("default", "web", 3, 0)).toBe("clone.default.web.3.0");
    expect(kvKeys.node("node-1")).toBe("node-1");
    expect(kvKeys.provider("Deployment", "default", "web", "web-abc")).toBe("deployment.default.web.web-abc");
  });

  test("refuse characters NATS KV does not allow", () => {
    expect(() => kvKeys.manifest("ABC")).toThrow(SubjectError);
    expect(() => kvKeys.node("node+1")).toThrow(SubjectError);
    expect(() => kvKeys.identityLease("default", "db", -1)).toThrow(SubjectError);
  });

  test("an identity lease key is a valid Lease.identity", () => {
    const lease = {
      ...exampleLease(),
      task_id: undefined,
      identity: kvKeys.identityLease("default", "db", 0),
      winner_id: "db-1",
    };
    const r = parseLease(lease);
    if (!r.ok) throw r.error;
  });
});

describe("shardOf", () => {
  test("FNV-1a known vectors", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });

  test("is stable and within range", () => {
    expect(shardOf(EXAMPLE_TASK_ID, 16)).toBe(fnv1a32(EXAMPLE_TASK_ID) % 16);
    expect(shardOf(EXAMPLE_TASK_ID, 1)).toBe(0);
    for (let i = 0; i < 1000; i++) {
      const shard = shardOf(`task-${i}`, 7);
      expect(shard).toBeGreaterThanOrEqual(0);
      expect(shard).toBeLessThan(7);
    }
  });

  test("spreads ids roughly evenly", () => {
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8000; i++) {
      const shard = shardOf(`01HF7YAT00SP7ZQ8GM4C${i.toString(32).toUpperCase().padStart(6, "0")}`, 8);
      counts[shard] = (counts[shard] ?? 0) + 1;
    }
    for (const c of counts) expect(c).toBeGreaterThan(700);
  });

  test("refuses a non-positive shard count", () => {
    expect(() => shardOf("x", 0)).toThrow(RangeError);
    expect(() => shardOf("x", 2.5)).toThrow(RangeError);
  });
});
