// The bus against a real nats-server: forged, tampered, replayed, stale and
// misattributed messages are dropped and counted under their own reason;
// request/reply and JetStream publishing carry the same envelope.
import { ulid } from "ulid";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { createCa, issueSvid, type Svid } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { parseBid, parseTask, type Parser } from "../../protocol/parse.js";
import { ok } from "../../protocol/errors.js";
import {
  EnvelopeSigner,
  encodeEnvelope,
  BusReplyRejectedError,
  type Received,
} from "../../protocol/bus/index.js";
import type { Bid } from "../../protocol/schema/messages.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, sampleBid, sampleTask, type TestBus } from "../helpers/bus.js";
import { withTimeout } from "../helpers/wait.js";

let nats: NatsFixture;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

const BID = { type: "Bid", parse: parseBid };
const proposals = (taskId: string) => `beemesh.scheduler.proposals.${taskId}`;

describe("verification on the wire", () => {
  let keeper: TestBus;
  let node1: Svid;
  let raw: NatsConnection;
  let received: Received<Bid>[];
  let reader: Promise<void>;
  let markers = 0;

  beforeAll(async () => {
    keeper = await busAs(nats, "lease-keeper");
    node1 = await nats.issue("scheduler-bidder", "node", "node-1");
    raw = await nats.connectAs(node1);
    received = [];
    const sub = keeper.bus.subscribe("beemesh.scheduler.proposals.>", BID);
    await keeper.bus.nc.flush();
    reader = (async () => {
      for await (const m of sub) received.push(m);
    })();
  });
  afterAll(async () => {
    await raw.close();
    await keeper.bus.drain();
    await reader;
  });

  const sign = (svid: Svid, bid: Bid, ts = Date.now(), subject = proposals(bid.task_id)) =>
    new EnvelopeSigner(svid).sign(subject, "Bid", bid, ts);

  /**
   * Sends data, then a good marker bid on the same connection; the bus verifies
   * in order, so once the marker is in, everything before it was judged.
   */
  async function sendThenMark(...messages: Array<[subject: string, data: Uint8Array]>): Promise<void> {
    for (const [subject, data] of messages) raw.publish(subject, data);
    const marker = sampleBid("node-1");
    markers++;
    raw.publish(proposals(marker.task_id), encodeEnvelope(sign(node1, marker)));
    await withTimeout(
      (async () => {
        while (!received.some((r) => r.payload.task_id === marker.task_id))
          await new Promise((r) => setImmediate(r));
      })(),
      5000,
      "marker bid",
    );
  }

  test("a good bid arrives verified, with its sender", async () => {
    const bid = sampleBid("node-1");
    await sendThenMark([proposals(bid.task_id), encodeEnvelope(sign(node1, bid))]);
    const got = received.find((r) => r.payload.task_id === bid.task_id);
    expect(got?.sender.toString()).toBe(node1.spiffeId);
    expect(got?.payload).toEqual(bid);
  });

  test("malformed bytes are counted as malformed", async () => {
    const before = await keeper.rejected("malformed");
    await sendThenMark(
      [proposals("x"), new TextEncoder().encode("not json")],
      [proposals("y"), new TextEncoder().encode('{"type":"Bid"}')],
    );
    expect((await keeper.rejected("malformed")) - before).toBe(2);
  });

  test("a certificate from another CA inside the envelope is untrusted_cert", async () => {
    const other = await createCa();
    const rogue = await issueSvid(other, {
      id: spiffeId(nats.trustDomain, "node", "node-1"),
      role: "scheduler-bidder",
    });
    const before = await keeper.rejected("untrusted_cert");
    const bid = sampleBid("node-1");
    await sendThenMark([proposals(bid.task_id), encodeEnvelope(sign(rogue, bid))]);
    expect((await keeper.rejected("untrusted_cert")) - before).toBe(1);
    expect(received.some((r) => r.payload.task_id === bid.task_id)).toBe(false);
  });

  test("a forged signature and a tampered payload are bad_signature", async () => {
    const node2 = await nats.issue("scheduler-bidder", "node", "node-2");
    const before = await keeper.rejected("bad_signature");
    const forgedBid = sampleBid("node-1");
    const forged = sign(node2, forgedBid);
    forged.sig.cert = Buffer.from(node1.certDer).toString("base64");
    forged.sig.spiffe_id = node1.spiffeId;
    const tamperedBid = sampleBid("node-1");
    const tampered = sign(node1, tamperedBid);
    (tampered.payload as Bid).score = 1e9;
    await sendThenMark(
      [proposals(forgedBid.task_id), encodeEnvelope(forged)],
      [proposals(tamperedBid.task_id), encodeEnvelope(tampered)],
    );
    expect((await keeper.rejected("bad_signature")) - before).toBe(2);
    expect(
      received.some(
        (r) => r.payload.task_id === forgedBid.task_id || r.payload.task_id === tamperedBid.task_id,
      ),
    ).toBe(false);
  });

  test("a replayed message is counted as replay and delivered once", async () => {
    const bid = sampleBid("node-1");
    const data = encodeEnvelope(sign(node1, bid));
    const before = await keeper.rejected("replay");
    await sendThenMark(
      [proposals(bid.task_id), data],
      [proposals(bid.task_id), data],
      [proposals(bid.task_id), data],
    );
    expect((await keeper.rejected("replay")) - before).toBe(2);
    expect(received.filter((r) => r.payload.task_id === bid.task_id)).toHaveLength(1);
  });

  test("a stale timestamp is counted as stale", async () => {
    const old = sampleBid("node-1");
    const future = sampleBid("node-1");
    const before = await keeper.rejected("stale");
    await sendThenMark(
      [proposals(old.task_id), encodeEnvelope(sign(node1, old, Date.now() - 60_000))],
      [proposals(future.task_id), encodeEnvelope(sign(node1, future, Date.now() + 60_000))],
    );
    expect((await keeper.rejected("stale")) - before).toBe(2);
  });

  test("a sender whose identity does not match the subject or payload is unauthorized", async () => {
    const before = await keeper.rejected("unauthorized");
    const asOther = sampleBid("node-2");
    const wrongSubject = sampleBid("node-1");
    const elsewhere = proposals(ulid());
    await sendThenMark(
      [proposals(asOther.task_id), encodeEnvelope(sign(node1, asOther))],
      [elsewhere, encodeEnvelope(sign(node1, wrongSubject, Date.now(), elsewhere))],
    );
    // The second is signed for the subject it travels on, but names another task.
    expect((await keeper.rejected("unauthorized")) - before).toBe(2);
    const line = keeper.logs.lines.find((l) => l["reason"] === "unauthorized");
    expect(line?.["detail"]).toMatch(/node-1 sent node_id=node-2/);
    expect(JSON.stringify(keeper.logs.lines)).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
  });

  test("a payload that fails its schema is invalid_payload", async () => {
    const before = await keeper.rejected("invalid_payload");
    const bid = { ...sampleBid("node-1"), fit: false, offered: 3 };
    await sendThenMark([proposals(bid.task_id), encodeEnvelope(sign(node1, bid))]);
    expect((await keeper.rejected("invalid_payload")) - before).toBe(1);
  });

  test("accepted messages are counted too", async () => {
    const accepted = await keeper.registry.getSingleMetric("beemesh_messages_accepted_total")!.get();
    expect(accepted.values.find((v) => v.labels["type"] === "Bid")?.value).toBeGreaterThanOrEqual(
      markers + 2,
    );
  });
});

describe("request and reply", () => {
  type Vote = { granted: boolean; term: number };
  const parseVote: Parser<Vote> = (input) => ok(input as Vote);

  test("a signed request gets a verified signed reply", async () => {
    const db0 = await busAs(nats, "raft-member", ["ns", "default", "statefulset", "db", "db-0"]);
    const db1 = await busAs(nats, "raft-member", ["ns", "default", "statefulset", "db", "db-1"]);
    const sub = db1.bus.subscribe("beemesh.raft.default.db.1", { type: "RequestVote", parse: parseVote });
    await db1.bus.nc.flush();
    const server = (async () => {
      for await (const req of sub) {
        expect(req.sender.toString()).toBe(db0.svid.spiffeId);
        db1.bus.reply(req, "VoteReply", { granted: true, term: req.payload.term });
        break;
      }
    })();
    const reply = await db0.bus.request(
      "beemesh.raft.default.db.1",
      "RequestVote",
      { granted: false, term: 7 },
      {
        type: "VoteReply",
        parse: parseVote,
        timeoutMs: 5000,
        authorizeReply: (r) => r.sender.toString() === db1.svid.spiffeId,
      },
    );
    expect(reply.payload).toEqual({ granted: true, term: 7 });
    expect(reply.sender.toString()).toBe(db1.svid.spiffeId);
    await server;

    // The same exchange, but db-0 only trusts an answer from db-2.
    const again = (async () => {
      for await (const req of db1.bus.subscribe("beemesh.raft.default.db.1", {
        type: "RequestVote",
        parse: parseVote,
      })) {
        db1.bus.reply(req, "VoteReply", { granted: true, term: 8 });
        break;
      }
    })();
    await db1.bus.nc.flush();
    await expect(
      db0.bus.request(
        "beemesh.raft.default.db.1",
        "RequestVote",
        { granted: false, term: 8 },
        {
          type: "VoteReply",
          parse: parseVote,
          authorizeReply: (r) => r.sender.toString().endsWith("/db-2"),
        },
      ),
    ).rejects.toThrow(BusReplyRejectedError);
    expect(await db0.rejected("unauthorized")).toBe(1);
    await again;
    await Promise.all([db0.bus.close(), db1.bus.close()]);
  });
});

describe("JetStream", () => {
  test("publishDurable deduplicates by msgID and consumers verify what they read", async () => {
    const dispatcher = await busAs(nats, "dispatcher");
    const node = await busAs(nats, "scheduler-bidder", ["node", "node-7"]);
    const jsm = await jetstreamManager(dispatcher.bus.nc);
    await jsm.streams.add({
      name: "SCHEDULER_TASKS",
      subjects: ["beemesh.scheduler.tasks.>"],
      duplicate_window: 60_000_000_000,
    });

    const task = sampleTask();
    const first = await dispatcher.bus.publishDurable("beemesh.scheduler.tasks.0", "Task", task, {
      msgID: task.task_id,
    });
    const second = await dispatcher.bus.publishDurable("beemesh.scheduler.tasks.0", "Task", task, {
      msgID: task.task_id,
    });
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    expect(second.seq).toBe(first.seq);
    const other = sampleTask();
    await dispatcher.bus.publishDurable("beemesh.scheduler.tasks.1", "Task", other, { msgID: other.task_id });

    const consumer = await node.bus.js.consumers.get("SCHEDULER_TASKS");
    const messages = await consumer.consume();
    const got: string[] = [];
    for await (const m of node.bus.verified(messages, { type: "Task", parse: parseTask })) {
      got.push(m.payload.task_id);
      expect(m.sender.toString()).toBe(dispatcher.svid.spiffeId);
      if (got.length === 2) break;
    }
    await messages.close();
    expect(got).toEqual([task.task_id, other.task_id]);
    await Promise.all([dispatcher.bus.close(), node.bus.close()]);
  });
});
