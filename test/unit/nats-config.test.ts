import {
  natsServerConfig,
  rolePermissions,
  roleUser,
  meshSubjects,
  natsSubjectMatches,
  permits,
  NATS_ROLES,
  NatsConfigError,
  type NatsRole,
} from "../../identity/nats-config.js";

const base = {
  port: 4222,
  tls: { certFile: "/s/server.crt", keyFile: "/s/server.key", caFile: "/s/bundle.crt" },
  jetstream: { storeDir: "/s/js" },
};

/** The users block of a generated config, one entry per user, as { user, text }. */
function usersOf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /\{\s*\n\s*user: "([^"]+)"([\s\S]*?)\n {4}\}/g;
  for (const m of text.matchAll(re)) out.set(m[1]!, m[2]!);
  return out;
}

describe("natsServerConfig", () => {
  const text = natsServerConfig(base);

  test("listens on 127.0.0.1 with mutual TLS mapped to users", () => {
    expect(text).toContain('listen: "127.0.0.1:4222"');
    expect(text).toMatch(
      /^tls \{\n {2}cert_file: "\/s\/server\.crt"\n {2}key_file: "\/s\/server\.key"\n {2}ca_file: "\/s\/bundle\.crt"\n {2}verify_and_map: true\n {2}timeout: 5\n\}$/m,
    );
    expect(text).not.toMatch(/0\.0\.0\.0/);
  });

  test("turns JetStream on with the store dir", () => {
    expect(text).toMatch(/jetstream \{\n {2}store_dir: "\/s\/js"\n/);
  });

  test("has one user per role keyed by its Subject DN, no passwords", () => {
    const users = usersOf(text);
    expect([...users.keys()].sort()).toEqual(NATS_ROLES.map((r) => `OU=${r},O=beemesh`).sort());
    expect(text).not.toMatch(/password/);
  });

  test("quotes $ subjects so nats-server does not read them as variables", () => {
    expect(text).toContain('"$JS.API.INFO"');
    expect(text).not.toMatch(/[\s[,]\$(JS|KV)/);
  });

  test("only the dispatcher may write manifests; admin is denied them explicitly", () => {
    const users = usersOf(text);
    for (const [user, body] of users) {
      const pub = /publish: \{ allow: (\[[^\]]*\])(?:, deny: (\[[^\]]*\]))? \}/.exec(body);
      expect(pub).not.toBeNull();
      const allow = JSON.parse(pub![1]!) as string[];
      const deny = pub![2] ? (JSON.parse(pub![2]) as string[]) : [];
      const canWrite = permits({ allow, deny }, "$KV.beemesh-manifests.abc");
      expect([user, canWrite]).toEqual([user, user === roleUser("dispatcher")]);
    }
  });

  test("responders get allow_responses", () => {
    const users = usersOf(text);
    expect(users.get(roleUser("raft-member"))).toContain("allow_responses: true");
    expect(users.get(roleUser("scheduler-bidder"))).toContain("allow_responses: true");
    expect(users.get(roleUser("dispatcher"))).not.toContain("allow_responses");
  });

  test("a cluster block routes to the other servers with mutual TLS", () => {
    const c = natsServerConfig({
      ...base,
      serverName: "n1",
      cluster: { port: 6222, routePorts: [6223, 6224] },
    });
    expect(c).toContain('server_name: "n1"');
    expect(c).toMatch(
      /cluster \{\n {2}name: "beemesh"\n {2}listen: "127\.0\.0\.1:6222"\n {2}tls \{[\s\S]*? {4}verify: true\n/,
    );
    expect(c).toContain('routes: ["nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"]');
    expect(text).not.toContain("cluster {");
  });

  test("optional monitoring, pid file and a custom prefix", () => {
    const c = natsServerConfig({ ...base, httpPort: 8222, pidFile: "/s/pid", prefix: "mesh2" });
    expect(c).toContain('http: "127.0.0.1:8222"');
    expect(c).toContain('pid_file: "/s/pid"');
    expect(c).toContain('"mesh2.scheduler.proposals.>"');
    expect(c).toContain('"$KV.beemesh-manifests.>"');
    expect(c).not.toMatch(/"beemesh\./);
  });

  test.each([
    [{ ...base, port: 0 }, /client port/],
    [{ ...base, port: 70000 }, /client port/],
    [{ ...base, prefix: "a..b" }, /prefix/],
    [{ ...base, prefix: "a.>" }, /prefix/],
    [{ ...base, roles: [] }, /role/],
    [{ ...base, tls: { ...base.tls, timeoutSec: 0 } }, /timeout/],
    [{ ...base, cluster: { port: 6222, routePorts: [6222] } }, /itself/],
    [{ ...base, jetstream: { storeDir: "" } }, /store dir/],
  ])("rejects contradictions %#", (opts, message) => {
    expect(() => natsServerConfig(opts)).toThrow(NatsConfigError);
    expect(() => natsServerConfig(opts)).toThrow(message);
  });
});

describe("rolePermissions", () => {
  const s = "beemesh";
  const can = (role: NatsRole, op: "publish" | "subscribe", subject: string) =>
    permits(rolePermissions(role)[op], subject);

  test.each<[NatsRole, string, boolean]>([
    ["dispatcher", `${s}.scheduler.tasks.3`, true],
    ["dispatcher", `${s}.scheduler.proposals.T1`, false],
    ["dispatcher", `${s}.scheduler.leases.n1`, false],
    ["dispatcher", "$KV.beemesh-objects.a", true],
    ["dispatcher", "$JS.API.STREAM.CREATE.SCHEDULER_TASKS", true],
    ["scheduler-bidder", `${s}.scheduler.proposals.T1`, true],
    ["scheduler-bidder", `${s}.scheduler.leases.n1`, false],
    ["scheduler-bidder", `${s}.scheduler.tasks.3`, false],
    ["scheduler-bidder", "$KV.beemesh-nodes.n1", true],
    ["scheduler-bidder", "$KV.beemesh-objects.a", false],
    ["scheduler-bidder", "$JS.API.STREAM.PURGE.KV_beemesh-manifests", false],
    ["scheduler-bidder", "$JS.API.STREAM.DELETE.KV_beemesh-leases", false],
    ["scheduler-bidder", "$JS.API.CONSUMER.CREATE.SCHEDULER_TASKS", true],
    ["lease-keeper", `${s}.scheduler.leases.n1`, true],
    ["lease-keeper", `${s}.scheduler.proposals.T1`, false],
    ["lease-keeper", `${s}.scheduler.tasks.3`, true],
    ["lease-keeper", "$KV.beemesh-leases.t", true],
    ["watchdog", `${s}.watchdog.default.web`, true],
    ["watchdog", `${s}.scheduler.tasks.1`, true],
    ["watchdog", `${s}.scheduler.leases.n1`, false],
    ["watchdog", `${s}.raft.default.db.0`, false],
    ["raft-member", `${s}.raft.default.db.0`, true],
    ["raft-member", `${s}.watchdog.default.web`, false],
    ["user", `${s}.scheduler.tasks.1`, true],
    ["user", `${s}.scheduler.events.deployment.default.web`, false],
    ["user", "$KV.beemesh-leases.t", false],
    ["admin", `${s}.anything.at.all`, true],
    ["admin", "$KV.beemesh-manifests.m", false],
  ])("%s publish %s → %s", (role, subject, expected) => {
    expect(can(role, "publish", subject)).toBe(expected);
  });

  test.each<[NatsRole, string, boolean]>([
    ["scheduler-bidder", `${s}.scheduler.tasks.3`, true],
    ["scheduler-bidder", `${s}.node.n1.remove`, true],
    ["scheduler-bidder", `${s}.raft.default.db.0`, false],
    ["lease-keeper", `${s}.scheduler.proposals.T1`, true],
    ["watchdog", `${s}.watchdog.default.web`, true],
    ["watchdog", `${s}.scheduler.proposals.T1`, false],
    ["user", "_INBOX.abc.def", true],
  ])("%s subscribe %s → %s", (role, subject, expected) => {
    expect(can(role, "subscribe", subject)).toBe(expected);
  });

  test("every role can use inboxes and read JetStream", () => {
    for (const role of NATS_ROLES) {
      expect(can(role, "subscribe", "_INBOX.x.y")).toBe(true);
      expect(can(role, "publish", "$JS.API.CONSUMER.MSG.NEXT.KV_beemesh-objects.c1")).toBe(true);
      expect(can(role, "publish", "$JS.ACK.SCHEDULER_TASKS.c.1.2.3.4.5")).toBe(true);
    }
  });

  test("meshSubjects puts subjects under the prefix; bucket names are the protocol's", () => {
    expect(meshSubjects().buckets.manifests).toBe("beemesh-manifests");
    expect(meshSubjects("region1.beemesh").tasks).toBe("region1.beemesh.scheduler.tasks.>");
    expect(meshSubjects("region1.beemesh").buckets.leases).toBe("beemesh-leases");
  });
});

describe("natsSubjectMatches", () => {
  test.each([
    ["a.b", "a.b", true],
    ["a.*", "a.b", true],
    ["a.*", "a.b.c", false],
    ["a.>", "a.b.c", true],
    ["a.>", "a", false],
    [">", "x", true],
    ["a.*.c", "a.b.c", true],
    ["a.b", "a.b.c", false],
    ["a.b.c", "a.b", false],
  ])("%s ~ %s → %s", (pattern, subject, expected) => {
    expect(natsSubjectMatches(pattern, subject)).toBe(expected);
  });
});
