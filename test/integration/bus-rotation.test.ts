// SVID rotation on a live bus: the signing key and the TLS credentials change
// under running publishers without losing, reordering or dropping messages.
import { connect } from "@nats-io/transport-node";
import { Registry } from "prom-client";
import type { Svid } from "../../identity/ca.js";
import { parseHeartbeat } from "../../protocol/parse.js";
import { Bus, type SvidSource } from "../../protocol/bus/index.js";
import type { Heartbeat } from "../../protocol/schema/messages.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, sampleHeartbeat } from "../helpers/bus.js";
import { waitFor, withTimeout } from "../helpers/wait.js";

let nats: NatsFixture;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

const HEARTBEAT = { type: "Heartbeat", parse: parseHeartbeat };
const SUBJECT = "beemesh.watchdog.default.web";
const podId = (pod: string) => ["ns", "default", "deployment", "web", pod];

test("10,000 signed messages across an SVID rotation arrive complete and in order per publisher", async () => {
  const PER_PUBLISHER = 5000;
  const ROTATE_AT = 2500;
  const listener = await busAs(nats, "watchdog", podId("web-9"));
  const publishers = await Promise.all(["web-0", "web-1"].map((pod) => busAs(nats, "watchdog", podId(pod))));
  const next = await Promise.all(["web-0", "web-1"].map((pod) => nats.issue("watchdog", ...podId(pod))));

  const seen = new Map<string, Array<{ seq: number; fingerprint: string }>>();
  let total = 0;
  const sub = listener.bus.subscribe(SUBJECT, HEARTBEAT);
  await listener.bus.nc.flush();
  const reading = (async () => {
    for await (const m of sub) {
      const list = seen.get(m.payload.pod) ?? [];
      list.push({ seq: m.payload.seq ?? -1, fingerprint: m.fingerprint });
      seen.set(m.payload.pod, list);
      if (++total === 2 * PER_PUBLISHER) break;
    }
  })();

  for (let seq = 0; seq < PER_PUBLISHER; seq++) {
    for (const [i, p] of publishers.entries()) {
      if (seq === ROTATE_AT) {
        // web-1 also reconnects, so its new certificate goes to the server mid-stream.
        await p.bus.rotate(next[i]!, { reconnect: i === 1 });
      }
      p.bus.publish(SUBJECT, "Heartbeat", sampleHeartbeat("default", "web", `web-${i}`, Date.now(), seq));
    }
    if (seq % 500 === 499) await Promise.all(publishers.map((p) => p.bus.flush()));
  }
  await Promise.all(publishers.map((p) => p.bus.flush()));
  await withTimeout(reading, 45_000, "10,000 heartbeats");

  expect(total).toBe(2 * PER_PUBLISHER);
  for (const [i, p] of publishers.entries()) {
    const list = seen.get(`web-${i}`)!;
    expect(list.map((e) => e.seq)).toEqual(Array.from({ length: PER_PUBLISHER }, (_, k) => k));
    const fingerprints = [...new Set(list.map((e) => e.fingerprint))];
    expect(fingerprints).toHaveLength(2);
    expect(list.slice(0, ROTATE_AT).every((e) => e.fingerprint === fingerprints[0])).toBe(true);
    expect(list.slice(ROTATE_AT).every((e) => e.fingerprint === fingerprints[1])).toBe(true);
    expect(p.bus.spiffeId).toBe(next[i]!.spiffeId);
  }
  for (const reason of [
    "malformed",
    "untrusted_cert",
    "bad_signature",
    "stale",
    "replay",
    "unauthorized",
    "invalid_payload",
  ] as const) {
    expect(await listener.rejected(reason)).toBe(0);
  }
  await Promise.all([listener, ...publishers].map((b) => b.bus.close()));
}, 60_000);

test("after rotation a reconnect presents the new certificate, even once the old one has expired", async () => {
  const id = podId("web-5");
  // Everything slow comes before the short-lived SVID is issued, so its few
  // seconds (X.509 keeps whole seconds) cover only the connect and message 1.
  const listener = await busAs(nats, "watchdog", podId("web-6"));
  const sub = listener.bus.subscribe(SUBJECT, HEARTBEAT);
  await listener.bus.nc.flush();
  const renewed = await nats.issue("watchdog", ...id);
  const shortLived = await nats.issue("watchdog", ...id, { ttlMs: 5000 });
  const registry = new Registry();
  const bus = nats.track(await Bus.connect({ servers: nats.url, svid: shortLived, registry }));
  const got: Heartbeat[] = [];
  const reading = (async () => {
    for await (const m of sub) {
      got.push(m.payload);
      if (got.length === 2) break;
    }
  })();

  bus.publish(SUBJECT, "Heartbeat", sampleHeartbeat("default", "web", "web-5", Date.now(), 1));
  await bus.rotate(renewed);
  // Bounded wait for wall time to pass the old certificate's notAfter: no event marks it.
  await waitFor(() => Date.now() > shortLived.notAfter.getTime() + 50, {
    timeoutMs: 10_000,
    what: "old SVID expiry",
  });
  await expect(
    connect({
      servers: nats.url,
      tls: { cert: shortLived.certPem, key: shortLived.keyPem, ca: shortLived.bundlePem },
      maxReconnectAttempts: 0,
      timeout: 1500,
    }),
  ).rejects.toThrow();

  const reconnected = (async () => {
    for await (const s of bus.nc.status()) if (s.type === "reconnect") return;
  })();
  await bus.nc.reconnect();
  await withTimeout(reconnected, 10_000, "reconnect with the renewed SVID");
  await bus.ready();
  expect(bus.isConnected()).toBe(true);
  bus.publish(SUBJECT, "Heartbeat", sampleHeartbeat("default", "web", "web-5", Date.now(), 2));
  await withTimeout(reading, 5000, "heartbeats before and after rotation");
  expect(got.map((h) => h.seq)).toEqual([1, 2]);
  await Promise.all([bus.close(), listener.bus.close()]);
}, 30_000);

test("an SvidSource drives rotation; a rotation to another identity is refused", async () => {
  const id = podId("web-7");
  let current: Svid = await nats.issue("watchdog", ...id);
  const listeners: Array<(s: Svid) => void> = [];
  const source: SvidSource = {
    current: () => current,
    onUpdate: (fn) => {
      listeners.push(fn);
      return () => listeners.splice(listeners.indexOf(fn), 1);
    },
  };
  const bus = nats.track(await Bus.connect({ servers: nats.url, svid: source, registry: new Registry() }));
  const listener = await busAs(nats, "watchdog", podId("web-8"));
  const sub = listener.bus.subscribe(SUBJECT, HEARTBEAT);
  await listener.bus.nc.flush();
  const fingerprints: string[] = [];
  const reading = (async () => {
    for await (const m of sub) {
      fingerprints.push(m.fingerprint);
      if (fingerprints.length === 2) break;
    }
  })();
  bus.publish(SUBJECT, "Heartbeat", sampleHeartbeat("default", "web", "web-7", Date.now(), 1));
  await bus.nc.flush();
  current = await nats.issue("watchdog", ...id);
  for (const l of listeners) l(current);
  await waitFor(() => bus.spiffeId === current.spiffeId, { what: "rotation" });
  bus.publish(SUBJECT, "Heartbeat", sampleHeartbeat("default", "web", "web-7", Date.now(), 2));
  await withTimeout(reading, 5000, "two heartbeats");
  expect(new Set(fingerprints).size).toBe(2);

  const stranger = await nats.issue("watchdog", ...podId("web-99"));
  await expect(bus.rotate(stranger)).rejects.toThrow(/must keep the SPIFFE ID/);
  await bus.close();
  expect(listeners).toHaveLength(0);
  await listener.bus.close();
});
