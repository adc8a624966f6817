// The fixture's 3-server cluster: routes over mutual TLS, JetStream R3, and a
// bus that rides through the loss of the server it was connected to.
import { parseHeartbeat } from "../../protocol/parse.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, sampleHeartbeat } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";

let nats: NatsFixture;
beforeAll(async () => {
  nats = await startNats({ servers: 3 });
}, 60_000);
afterAll(async () => {
  await nats?.stop();
});

test("three servers route to each other and replicate a KV bucket", async () => {
  expect(nats.urls).toHaveLength(3);
  const dispatcher = await busAs(nats, "dispatcher");
  const kv = await dispatcher.bus.kvm.create("beemesh-objects", { replicas: 3 });
  const rev = await kv.put("default.web", "v1");
  const status = await kv.status();
  expect(status.replicas).toBe(3);

  // A reader pinned to the third server sees the write made through another.
  const reader = nats.track(await nats.connectAs(await nats.issue("user"), { servers: nats.urls[2] }));
  const { Kvm } = await import("@nats-io/kv");
  const entry = await (await new Kvm(reader).open("beemesh-objects")).get("default.web");
  expect(entry?.revision).toBe(rev);
  expect(entry?.string()).toBe("v1");
});

test("a bus reconnects to a surviving server, keeps its subscriptions, and KV stays writable", async () => {
  const pod0 = await busAs(nats, "watchdog", ["ns", "default", "deployment", "web", "web-0"]);
  const pod1 = await busAs(nats, "watchdog", ["ns", "default", "deployment", "web", "web-1"]);
  const sub = pod1.bus.subscribe("beemesh.watchdog.default.web", {
    type: "Heartbeat",
    parse: parseHeartbeat,
  });
  await pod1.bus.flush();
  const seqs: number[] = [];
  void (async () => {
    for await (const m of sub) seqs.push(m.payload.seq ?? -1);
  })();
  // Interest crosses the cluster's routes a moment after pod1's own server has
  // it (flush confirms only that server), so a heartbeat is sent again until it
  // arrives, as a watchdog's next beat would be.
  const heartbeatUntilSeen = (seq: number, what: string) =>
    waitFor(
      async () => {
        if (seqs.includes(seq)) return true;
        pod0.bus.publish(
          "beemesh.watchdog.default.web",
          "Heartbeat",
          sampleHeartbeat("default", "web", "web-0", Date.now(), seq),
        );
        await pod0.bus.flush().catch(() => undefined);
        return false;
      },
      { timeoutMs: 10_000, intervalMs: 200, what: `heartbeat ${seq} (${what})` },
    );
  await heartbeatUntilSeen(1, "before failover");

  // Stop the server pod1 is connected to.
  const port = Number(pod1.bus.nc.getServer().split(":").pop());
  const victim = nats.servers.find((s) => s.port === port)!;
  const reconnected = (async () => {
    for await (const s of pod1.bus.nc.status()) if (s.type === "reconnect") return;
  })();
  await victim.stop();
  await withTimeout(reconnected, 15_000, "reconnect to a surviving server");
  await pod1.bus.ready();
  expect(Number(pod1.bus.nc.getServer().split(":").pop())).not.toBe(port);

  // The subscription survived the failover: a heartbeat after it arrives.
  await heartbeatUntilSeen(2, "after failover");
  expect([...new Set(seqs)]).toEqual([1, 2]);

  const dispatcher = await busAs(nats, "dispatcher");
  const kv = await dispatcher.bus.kvm.open("beemesh-objects");
  expect(
    await withTimeout(kv.put("default.api", "v1"), 15_000, "KV put with one server down"),
  ).toBeGreaterThan(0);
  await victim.restart();
}, 60_000);
