// Who may connect to the mesh's nats-server, and what each role may publish
// and subscribe to (DESIGN §5), against a real nats-server 2.9.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { createCa, issueSvid } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { rolePermissions, permits, NATS_ROLES, type NatsRole } from "../../identity/nats-config.js";

let nats: NatsFixture;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

/**
 * Connects once and expects a refusal. nats.js reports a server-side TLS alert
 * only as a connect timeout, so the server's log line for this attempt says why.
 */
async function refused(opts: {
  cert?: string;
  key?: string;
  ca: string;
}): Promise<{ err: Error; serverSaid: string }> {
  const server = nats.servers[0]!;
  const logStart = server.log().length;
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: nats.url, tls: opts, maxReconnectAttempts: 0, timeout: 2000 });
  } catch (err) {
    const serverSaid = server
      .log()
      .slice(logStart)
      .split("\n")
      .filter((l) => l.includes("[ERR]"))
      .join("\n");
    return { err: err as Error, serverSaid };
  }
  await nc.close();
  throw new Error("connection was accepted");
}

describe("connecting", () => {
  test("an SVID of a known role connects and round-trips a message", async () => {
    const nc = await nats.connectAs(await nats.issue("dispatcher"));
    const sub = nc.subscribe("beemesh.scheduler.events.x.default.web", { max: 1 });
    nc.publish("beemesh.scheduler.events.x.default.web", "hello");
    for await (const m of sub) expect(m.string()).toBe("hello");
    await nc.close();
  });

  test("without a client certificate the TLS handshake is refused", async () => {
    const { serverSaid } = await refused({ ca: nats.ca.certPem });
    expect(serverSaid).toMatch(/TLS handshake error: .*client didn't provide a certificate/);
  });

  test("a certificate from another CA is refused", async () => {
    const other = await createCa({ trustDomain: nats.trustDomain });
    const svid = await issueSvid(other, {
      id: spiffeId(nats.trustDomain, "node", "intruder"),
      role: "scheduler-bidder",
    });
    const { serverSaid } = await refused({ cert: svid.certPem, key: svid.keyPem, ca: nats.ca.certPem });
    expect(serverSaid).toMatch(/TLS handshake error: .*certificate signed by unknown authority/);
  });

  test("an expired certificate is refused", async () => {
    const svid = await nats.issue("scheduler-bidder", "node", "old", {
      now: new Date(Date.now() - 3 * 60 * 60 * 1000),
      ttlMs: 60 * 60 * 1000,
    });
    expect(svid.notAfter.getTime()).toBeLessThan(Date.now());
    const { serverSaid } = await refused({ cert: svid.certPem, key: svid.keyPem, ca: nats.ca.certPem });
    expect(serverSaid).toMatch(/TLS handshake error: .*certificate has expired/);
  });

  test("a valid certificate whose role names no user gets Authorization Violation", async () => {
    const svid = await issueSvid(nats.ca, { id: spiffeId(nats.trustDomain, "node", "n9"), role: "stranger" });
    const { err } = await refused({ cert: svid.certPem, key: svid.keyPem, ca: nats.ca.certPem });
    expect(err.message).toMatch(/Authorization Violation/i);
  });

  test("a client that does not trust the server's CA refuses the server", async () => {
    const other = await createCa();
    const svid = await nats.issue("user");
    const { err } = await refused({ cert: svid.certPem, key: svid.keyPem, ca: other.certPem });
    expect(err.message).toMatch(/certificate|self.signed|unable to verify/i);
  });
});

const SAMPLE_SUBJECTS = [
  "beemesh.scheduler.tasks.7",
  "beemesh.scheduler.proposals.01HZZZZZZZZZZZZZZZZZZZZZZZ",
  "beemesh.scheduler.leases.node-1",
  "beemesh.scheduler.events.deployment.default.web",
  "beemesh.watchdog.default.web",
  "beemesh.raft.default.db.0",
  "beemesh.node.node-1.remove",
  "$KV.beemesh-manifests.m1",
  "$KV.beemesh-objects.o1",
  "$KV.beemesh-leases.l1",
  "$KV.beemesh-nodes.n1",
  "$JS.API.STREAM.DELETE.KV_beemesh-manifests",
  "other.subject",
];

/** Subjects the server reported as violations for op, collected from the status stream. */
async function violationsOf(
  role: NatsRole,
  op: "publish" | "subscription",
): Promise<{ got: Set<string>; want: Set<string> }> {
  const nc = await nats.connectAs(await nats.issue(role));
  const got = new Set<string>();
  const statusDone = (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error.name === "PermissionViolationError") {
        const pe = s.error as Error & { operation: string; subject: string };
        if (pe.operation === op) got.add(pe.subject);
      }
    }
  })();
  const perms = rolePermissions(role);
  const want = new Set<string>();
  for (const subject of SAMPLE_SUBJECTS) {
    if (op === "publish") {
      nc.publish(subject, "x");
      if (!permits(perms.publish, subject)) want.add(subject);
    } else {
      nc.subscribe(subject, { callback: () => undefined });
      if (!permits(perms.subscribe, subject)) want.add(subject);
    }
  }
  await nc.flush();
  // The server answers every PUB/SUB before the PONG, so after flush only the
  // status dispatch may still be queued.
  await waitFor(() => got.size >= want.size, {
    timeoutMs: 5000,
    what: `${want.size} violations for ${role}`,
  });
  await nc.flush();
  await nc.close();
  await statusDone;
  return { got, want };
}

describe("per-role permissions match rolePermissions()", () => {
  test.each(NATS_ROLES.map((r) => [r]))("%s publish", async (role) => {
    const { got, want } = await violationsOf(role, "publish");
    expect([...got].sort()).toEqual([...want].sort());
  });

  test.each(NATS_ROLES.map((r) => [r]))("%s subscribe", async (role) => {
    const { got, want } = await violationsOf(role, "subscription");
    expect([...got].sort()).toEqual([...want].sort());
  });

  test("only the dispatcher can create and write the manifests bucket", async () => {
    const { Kvm } = await import("@nats-io/kv");
    const d = await nats.connectAs(await nats.issue("dispatcher"));
    const kv = await new Kvm(d).create("beemesh-manifests");
    expect(await kv.put("m1", "spec")).toBeGreaterThan(0);
    for (const role of ["scheduler-bidder", "watchdog", "admin"] as const) {
      const nc = await nats.connectAs(await nats.issue(role));
      const other = await new Kvm(nc).open("beemesh-manifests");
      expect((await other.get("m1"))?.string()).toBe("spec");
      await expect(other.put("m1", "evil")).rejects.toThrow(/Permissions Violation/);
      await nc.close();
    }
    expect((await kv.get("m1"))?.string()).toBe("spec");
    await d.close();
  });
});
