// The verification pipeline with real certificates and a fake clock: each
// failure is dropped with its own reason.
import { ulid } from "ulid";
import { createCa, issueSvid, type CertificateAuthority, type Svid } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { SvidVerifier } from "../../identity/verify.js";
import { parseBid } from "../../protocol/parse.js";
import {
  EnvelopeSigner,
  EnvelopeVerifier,
  encodeEnvelope,
  NonceCache,
  createAuthorizer,
  type VerifyOutcome,
} from "../../protocol/bus/index.js";
import type { Bid } from "../../protocol/schema/messages.js";
import { sampleBid } from "../helpers/bus.js";

const TD = "beemesh.local";
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
let ca: CertificateAuthority;
let node1: Svid;
let node2: Svid;
let clock: number;

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD, now: new Date(T0 - 86_400_000) });
  node1 = await issueSvid(ca, {
    id: spiffeId(TD, "node", "node-1"),
    role: "scheduler-bidder",
    now: new Date(T0),
  });
  node2 = await issueSvid(ca, {
    id: spiffeId(TD, "node", "node-2"),
    role: "scheduler-bidder",
    now: new Date(T0),
  });
});

function makeVerifier(bundle = ca.certPem) {
  clock = T0;
  const svids = new SvidVerifier({ bundle, trustDomain: TD, now: () => clock });
  const verifier = new EnvelopeVerifier({
    svids,
    authorize: createAuthorizer(),
    nonces: new NonceCache({ windowMs: 30_000 }),
    now: () => clock,
  });
  return { svids, verifier };
}

const BID = { type: "Bid", parse: parseBid };
const subjectFor = (bid: Bid) => `beemesh.scheduler.proposals.${bid.task_id}`;

function signedBid(svid: Svid, bid: Bid, ts = clock, subject = subjectFor(bid)): Uint8Array {
  return encodeEnvelope(new EnvelopeSigner(svid).sign(subject, "Bid", bid, ts));
}

function reasonOf(outcome: VerifyOutcome<unknown>): string {
  return outcome.ok ? "accepted" : outcome.reason;
}

describe("EnvelopeVerifier", () => {
  test("accepts a well-signed bid and reports who sent it", async () => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-1", ulid(), clock);
    const outcome = await verifier.verify(subjectFor(bid), signedBid(node1, bid), BID);
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    expect(outcome.value.sender.toString()).toBe("spiffe://beemesh.local/node/node-1");
    expect(outcome.value.principal).toEqual({ kind: "node", nodeId: "node-1" });
    expect(outcome.value.payload).toEqual(bid);
  });

  test.each([
    ["not JSON", new TextEncoder().encode("{nope")],
    ["not UTF-8", new Uint8Array([0xff, 0xfe, 0x7b])],
    [
      "no signature",
      new TextEncoder().encode(JSON.stringify({ type: "Bid", payload: {}, nonce: "a".repeat(22), ts: T0 })),
    ],
    [
      "an unknown field",
      new TextEncoder().encode(
        JSON.stringify({ type: "Bid", payload: {}, nonce: "a".repeat(22), ts: T0, sig: {}, extra: 1 }),
      ),
    ],
  ])("malformed: %s", async (_what, data) => {
    const { verifier } = makeVerifier();
    expect(reasonOf(await verifier.verify("beemesh.scheduler.proposals.x", data, BID))).toBe("malformed");
  });

  test("untrusted_cert: a certificate from another CA", async () => {
    const { verifier } = makeVerifier();
    const other = await createCa({ trustDomain: TD, now: new Date(T0 - 1000) });
    const rogue = await issueSvid(other, {
      id: spiffeId(TD, "node", "node-1"),
      role: "scheduler-bidder",
      now: new Date(T0),
    });
    const bid = sampleBid("node-1", ulid(), clock);
    expect(reasonOf(await verifier.verify(subjectFor(bid), signedBid(rogue, bid), BID))).toBe(
      "untrusted_cert",
    );
  });

  test("untrusted_cert: expired, and not yet valid", async () => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-1", ulid(), clock);
    const data = signedBid(node1, bid);
    clock = node1.notAfter.getTime() + 1;
    const late = sampleBid("node-1", ulid(), clock);
    expect(reasonOf(await verifier.verify(subjectFor(late), signedBid(node1, late), BID))).toBe(
      "untrusted_cert",
    );
    clock = node1.notBefore.getTime() - 1;
    expect(reasonOf(await verifier.verify(subjectFor(bid), data, BID))).toBe("untrusted_cert");
  });

  test("untrusted_cert: a certificate of another trust domain", async () => {
    const otherTd = await createCa({ trustDomain: "elsewhere.test", now: new Date(T0 - 1000) });
    const svid = await issueSvid(otherTd, {
      id: spiffeId("elsewhere.test", "node", "node-1"),
      role: "scheduler-bidder",
      now: new Date(T0),
    });
    const { verifier } = makeVerifier(`${ca.certPem}\n${otherTd.certPem}`);
    const bid = sampleBid("node-1", ulid(), clock);
    const outcome = await verifier.verify(subjectFor(bid), signedBid(svid, bid), BID);
    expect(reasonOf(outcome)).toBe("untrusted_cert");
    expect(outcome.ok ? "" : outcome.detail).toMatch(/trust domain/);
  });

  test("untrusted_cert: the envelope claims an ID its certificate does not carry", async () => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-2", ulid(), clock);
    const env = new EnvelopeSigner(node1).sign(subjectFor(bid), "Bid", bid, clock);
    env.sig.spiffe_id = node2.spiffeId;
    expect(reasonOf(await verifier.verify(subjectFor(bid), encodeEnvelope(env), BID))).toBe("untrusted_cert");
  });

  test("bad_signature: signed with another key than the certificate's", async () => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-1", ulid(), clock);
    const forged = new EnvelopeSigner(node2).sign(subjectFor(bid), "Bid", bid, clock);
    // node-1's certificate and ID, node-2's signature.
    forged.sig.cert = Buffer.from(node1.certDer).toString("base64");
    forged.sig.spiffe_id = node1.spiffeId;
    expect(reasonOf(await verifier.verify(subjectFor(bid), encodeEnvelope(forged), BID))).toBe(
      "bad_signature",
    );
  });

  test.each([
    ["payload", (e: Record<string, unknown>) => ((e["payload"] as Bid).score = 0.99)],
    ["type", (e: Record<string, unknown>) => (e["type"] = "Lease")],
    ["nonce", (e: Record<string, unknown>) => (e["nonce"] = "b".repeat(22))],
    ["ts", (e: Record<string, unknown>) => (e["ts"] = (e["ts"] as number) + 1)],
  ])("bad_signature: tampered %s", async (_what, tamper) => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-1", ulid(), clock);
    const env = new EnvelopeSigner(node1).sign(subjectFor(bid), "Bid", bid, clock) as unknown as Record<
      string,
      unknown
    >;
    tamper(env);
    expect(
      reasonOf(await verifier.verify(subjectFor(bid), new TextEncoder().encode(JSON.stringify(env)), BID)),
    ).toBe("bad_signature");
  });

  test("bad_signature: a message moved to another subject", async () => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-1", ulid(), clock);
    const data = signedBid(node1, bid);
    expect(reasonOf(await verifier.verify(`${subjectFor(bid)}x`, data, BID))).toBe("bad_signature");
  });

  test("stale: outside the skew window either way, accepted just inside it", async () => {
    const { verifier } = makeVerifier();
    const at = (ts: number) => {
      const bid = sampleBid("node-1", ulid(), ts);
      return verifier.verify(subjectFor(bid), signedBid(node1, bid, ts), BID);
    };
    expect(reasonOf(await at(clock - 30_001))).toBe("stale");
    expect(reasonOf(await at(clock + 30_001))).toBe("stale");
    expect(reasonOf(await at(clock - 29_999))).toBe("accepted");
    expect(reasonOf(await at(clock + 29_999))).toBe("accepted");
  });

  test("replay: the same message twice", async () => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-1", ulid(), clock);
    const data = signedBid(node1, bid);
    expect(reasonOf(await verifier.verify(subjectFor(bid), data, BID))).toBe("accepted");
    clock += 1000;
    expect(reasonOf(await verifier.verify(subjectFor(bid), data, BID))).toBe("replay");
  });

  test("unauthorized: a node bidding as another node", async () => {
    const { verifier } = makeVerifier();
    const bid = sampleBid("node-2", ulid(), clock);
    const outcome = await verifier.verify(subjectFor(bid), signedBid(node1, bid), BID);
    expect(reasonOf(outcome)).toBe("unauthorized");
    expect(outcome.ok ? "" : outcome.detail).toMatch(/node-1 sent node_id=node-2/);
  });

  test("invalid_payload: a bid that breaks its schema rules, and an unexpected type", async () => {
    const { verifier } = makeVerifier();
    const bad = { ...sampleBid("node-1", ulid(), clock), offered: 0 };
    expect(reasonOf(await verifier.verify(subjectFor(bad), signedBid(node1, bad), BID))).toBe(
      "invalid_payload",
    );
    const bid = sampleBid("node-1", ulid(), clock);
    const env = encodeEnvelope(new EnvelopeSigner(node1).sign(subjectFor(bid), "Bid", bid, clock));
    expect(reasonOf(await verifier.verify(subjectFor(bid), env, { type: "Other", parse: parseBid }))).toBe(
      "invalid_payload",
    );
  });

  test("a certificate is verified once, then served from the fingerprint cache", async () => {
    const { verifier, svids } = makeVerifier();
    for (let i = 0; i < 5; i++) {
      const bid = sampleBid("node-1", ulid(), clock);
      expect(reasonOf(await verifier.verify(subjectFor(bid), signedBid(node1, bid), BID))).toBe("accepted");
    }
    expect(svids.stats()).toMatchObject({ misses: 1, hits: 4, cached: 1 });
  });
});

describe("EnvelopeSigner", () => {
  test("signs the payload as it travels: undefined fields dropped", async () => {
    const { verifier } = makeVerifier();
    const bid = { ...sampleBid("node-1", ulid(), clock), victims: undefined };
    const env = new EnvelopeSigner(node1).sign(subjectFor(bid), "Bid", bid, clock);
    expect(Object.keys(env.payload as object)).not.toContain("victims");
    expect(reasonOf(await verifier.verify(subjectFor(bid), encodeEnvelope(env), BID))).toBe("accepted");
  });

  test("refuses an SVID without a private key", () => {
    expect(
      () => new EnvelopeSigner({ ...node1, privateKey: undefined as unknown as Svid["privateKey"] }),
    ).toThrow(/no private key/);
  });

  test("fresh nonces every time", () => {
    const s = new EnvelopeSigner(node1);
    const nonces = new Set(Array.from({ length: 1000 }, () => s.sign("beemesh.x", "Bid", {}, T0).nonce));
    expect(nonces.size).toBe(1000);
    for (const n of nonces) expect(n).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });
});
