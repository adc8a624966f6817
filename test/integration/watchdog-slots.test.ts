// Clone-slot leases in the beemesh-leases bucket of a real nats-server, as a
// watchdog (workload SVID, its NATS permissions) sees them: create refuses a
// held slot, the holder renews, a hand-over moves it, a slot frees itself a
// TTL after its last write (judged on the observer's clock, since the bucket
// has no TTL), release is guarded by the claim, and a dead connection is
// "unreachable" rather than "denied".
import type { KV } from "@nats-io/kv";
import { ensureSchedulingInfra } from "../../controllers/common/nats-setup.js";
import type { ControllerClock } from "../../controllers/common/clock.js";
import { KvSlotStore } from "../../controllers/watchdog/slot-store.js";
import { BUCKETS } from "../../protocol/index.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { waitFor } from "../helpers/wait.js";

let nats: NatsFixture;
let dispatcher: TestBus;
let watchdogA: TestBus;
let watchdogB: TestBus;
let kvA: KV;
let kvB: KV;

/** Real timers, a monotonic time the test moves forward. */
function manualMonotonic(): ControllerClock & { advance(ms: number): void } {
  let t = 0;
  return {
    now: () => Date.now(),
    monotonic: () => t,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
    advance: (ms) => {
      t += ms;
    },
  };
}

beforeAll(async () => {
  nats = await startNats();
  dispatcher = await busAs(nats, "dispatcher");
  await ensureSchedulingInfra(dispatcher.bus.nc, { storage: "memory" });
  watchdogA = await busAs(nats, "watchdog", ["ns", "default", "deployment", "web", "web-a"]);
  watchdogB = await busAs(nats, "watchdog", ["ns", "default", "deployment", "web", "web-b"]);
  kvA = await watchdogA.bus.kvm.open(BUCKETS.leases);
  kvB = await watchdogB.bus.kvm.open(BUCKETS.leases);
});

afterAll(async () => {
  for (const b of [watchdogA, watchdogB, dispatcher]) await b?.bus.close().catch(() => undefined);
  await nats?.stop();
});

let n = 0;
const freshKey = () => `clone.default.web.uid-${++n}/slot-0`;

describe("KvSlotStore on a real bucket", () => {
  it("grants a free slot once; the holder renews, others are denied", async () => {
    const clock = manualMonotonic();
    const a = new KvSlotStore({ kv: kvA, ttlMs: 3000, clock });
    const b = new KvSlotStore({ kv: kvB, ttlMs: 3000, clock });
    const key = freshKey();
    const [ra, rb] = await Promise.all([a.acquire(key, "web-a"), b.acquire(key, "web-b")]);
    expect([ra, rb].sort()).toEqual(["denied", "granted"]);
    const winner = ra === "granted" ? "web-a" : "web-b";
    const store = winner === "web-a" ? a : b;
    expect(await store.renew(key, winner)).toBe("granted");
    expect(await (winner === "web-a" ? b : a).acquire(key, winner === "web-a" ? "web-b" : "web-a")).toBe(
      "denied",
    );
    expect(await a.holder(key)).toBe(winner);
  });

  it("frees a slot TTL after its last write as the observer saw it; a renewal restarts the count", async () => {
    const clock = manualMonotonic();
    const a = new KvSlotStore({ kv: kvA, ttlMs: 3000, clock });
    const b = new KvSlotStore({ kv: kvB, ttlMs: 3000, clock });
    const key = freshKey();
    expect(await a.acquire(key, "web-a")).toBe("granted");
    expect(await b.acquire(key, "web-b")).toBe("denied"); // b first sees this revision now
    clock.advance(2000);
    expect(await a.renew(key, "web-a")).toBe("granted"); // new revision
    clock.advance(2000);
    expect(await b.acquire(key, "web-b")).toBe("denied"); // b saw the renewal only now
    clock.advance(3000);
    expect(await b.acquire(key, "web-b")).toBe("granted"); // unchanged for a TTL
    expect(await a.renew(key, "web-a")).toBe("denied"); // the old holder learns it lost it
  });

  it("follows the slot keys so expiry counts from the write, not from the first read", async () => {
    const clock = manualMonotonic();
    const a = new KvSlotStore({ kv: kvA, ttlMs: 3000, clock });
    const b = new KvSlotStore({ kv: kvB, ttlMs: 3000, clock });
    const ac = new AbortController();
    const key = freshKey();
    await b.follow("clone.default.web.*", key.slice(0, key.indexOf("/") + 1), ac.signal);
    expect(await a.acquire(key, "web-a")).toBe("granted");
    const written = a.seenRevision(key);
    await waitFor(() => b.seenRevision(key) === written, {
      timeoutMs: 5000,
      what: "the watch to deliver the write",
    });
    clock.advance(3000);
    expect(await b.acquire(key, "web-b")).toBe("granted");
    ac.abort();
  });

  it("renews only its own claim, never one it judges expired (a clone that moved the slot keeps it)", async () => {
    const clock = manualMonotonic();
    const leader = new KvSlotStore({ kv: kvA, ttlMs: 3000, clock });
    const clone = new KvSlotStore({ kv: kvB, ttlMs: 3000, clock });
    const key = freshKey();
    const task = "01HF7YAT00SP7ZQ8GM4CVZ7K5V";
    expect(await leader.acquire(key, task)).toBe("granted");
    expect(await clone.transfer(key, task, "web-b")).toBe("granted");
    expect(await leader.holder(key)).toBe("web-b"); // the leader has now seen the clone's revision
    clock.advance(3000); // ... and, to it, that revision is a TTL old
    expect(await leader.renew(key, task)).toBe("denied");
    expect(await clone.renew(key, "web-b")).toBe("granted");
    expect(await leader.holder(key)).toBe("web-b");
  });

  it("does not count time its process could not run toward expiry", async () => {
    const clock = manualMonotonic();
    const a = new KvSlotStore({ kv: kvA, ttlMs: 3000, clock });
    const b = new KvSlotStore({ kv: kvB, ttlMs: 3000, clock });
    const key = freshKey();
    expect(await a.acquire(key, "web-a")).toBe("granted");
    expect(await b.acquire(key, "web-b")).toBe("denied"); // b first sees the revision now
    clock.advance(3500);
    b.creditPause(1000); // b was stalled for 1 s of that: only 2.5 s count
    expect(await b.acquire(key, "web-b")).toBe("denied");
    clock.advance(500);
    expect(await b.acquire(key, "web-b")).toBe("granted");
  });

  it("hands a slot over from a claim to another, and only from its holder", async () => {
    const clock = manualMonotonic();
    const a = new KvSlotStore({ kv: kvA, ttlMs: 3000, clock });
    const b = new KvSlotStore({ kv: kvB, ttlMs: 3000, clock });
    const key = freshKey();
    expect(await a.acquire(key, "web-a")).toBe("granted");
    expect(await a.transfer(key, "web-a", "01HF7YAT00SP7ZQ8GM4CVZ7K5V")).toBe("granted");
    expect(await b.transfer(key, "web-x", "web-b")).toBe("denied");
    expect(await b.transfer(key, "01HF7YAT00SP7ZQ8GM4CVZ7K5V", "web-b")).toBe("granted");
    expect(await b.transfer(key, "01HF7YAT00SP7ZQ8GM4CVZ7K5V", "web-b")).toBe("granted"); // idempotent for the new holder
    expect(await a.holder(key)).toBe("web-b");
  });

  it("releases only its own claim", async () => {
    const clock = manualMonotonic();
    const a = new KvSlotStore({ kv: kvA, ttlMs: 3000, clock });
    const key = freshKey();
    expect(await a.acquire(key, "web-a")).toBe("granted");
    await a.release(key, "web-b");
    expect(await a.holder(key)).toBe("web-a");
    await a.release(key, "web-a");
    expect(await a.holder(key)).toBeUndefined();
    expect(await a.acquire(key, "web-c")).toBe("granted");
  });

  it("answers unreachable when the store cannot be asked", async () => {
    const clock = manualMonotonic();
    const c = await busAs(nats, "watchdog", ["ns", "default", "deployment", "web", "web-c"]);
    const kv = await c.bus.kvm.open(BUCKETS.leases);
    await c.bus.close();
    const store = new KvSlotStore({ kv, ttlMs: 3000, clock });
    expect(await store.acquire(freshKey(), "web-c")).toBe("unreachable");
  });
});
