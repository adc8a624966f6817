// Join tokens: single use, expiring, only their hash on disk, and safe against
// concurrent redeems (in one process and across two store instances).
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa } from "../../identity/ca.js";
import type { CertificateAuthority } from "../../identity/ca.js";
import { generateKeyPair, subtle } from "../../identity/crypto.js";
import {
  JoinAuthority,
  JoinRefusedError,
  JoinStoreError,
  JoinTokenStore,
  NODE_ROLE,
  caCertHash,
  checkRedeemable,
  hashJoinToken,
} from "../../identity/join.js";
import type { JoinTokenRecord } from "../../identity/join.js";
import { verifySvidChain } from "../../identity/verify.js";

const TD = "beemesh.local";
const T0 = Date.parse("2030-01-01T00:00:00Z");
const MIN = 60_000;

let ca: CertificateAuthority;
let dir: string;
let spki: Uint8Array;
let n = 0;

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD, now: new Date(T0 - MIN) });
  dir = await mkdtemp(join(tmpdir(), "bm-join-"));
  spki = new Uint8Array(await subtle.exportKey("spki", (await generateKeyPair()).publicKey));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function freshAuthority(now: () => number = () => T0): { authority: JoinAuthority; path: string } {
  const path = join(dir, `tokens-${n++}.json`);
  return { authority: new JoinAuthority({ ca, store: new JoinTokenStore(path), now }), path };
}

async function refusal(p: Promise<unknown>): Promise<JoinRefusedError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof JoinRefusedError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("checkRedeemable (pure)", () => {
  const rec = (over: Partial<JoinTokenRecord> = {}): JoinTokenRecord => ({
    hash: "a".repeat(64),
    created_at: T0,
    expires_at: T0 + MIN,
    ...over,
  });
  test.each<[string, JoinTokenRecord | undefined, string, number, string | undefined]>([
    ["good", rec(), "n1", T0, undefined],
    ["unknown", undefined, "n1", T0, "unknown-token"],
    ["expired exactly at expires_at", rec(), "n1", T0 + MIN, "expired-token"],
    ["used", rec({ used_at: T0 }), "n1", T0, "used-token"],
    ["used and expired reads as used", rec({ used_at: T0 }), "n1", T0 + 2 * MIN, "used-token"],
    ["bound to another node", rec({ node_id: "n2" }), "n1", T0, "node-id-mismatch"],
    ["bound to this node", rec({ node_id: "n1" }), "n1", T0, undefined],
  ])("%s", (_name, record, nodeId, now, reason) => {
    expect(checkRedeemable(record, nodeId, now)?.reason).toBe(reason);
  });

  test("refusals map to 401/403/400", () => {
    expect(new JoinRefusedError("unknown-token", "").httpStatus).toBe(401);
    expect(new JoinRefusedError("expired-token", "").httpStatus).toBe(401);
    expect(new JoinRefusedError("used-token", "").httpStatus).toBe(403);
    expect(new JoinRefusedError("node-id-mismatch", "").httpStatus).toBe(403);
    expect(new JoinRefusedError("invalid-public-key", "").httpStatus).toBe(400);
  });
});

describe("JoinAuthority", () => {
  test("a token is 32 random bytes; only its sha256 is stored, in a 0600 file", async () => {
    const { authority, path } = freshAuthority();
    const created = await authority.createJoinToken({ ttlMs: 10 * MIN });
    expect(Buffer.from(created.token, "base64url")).toHaveLength(32);
    expect(created.expiresAt.getTime()).toBe(T0 + 10 * MIN);
    expect(created.caCertHash).toBe(caCertHash(ca.cert));
    expect(created.caCertHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    const text = await readFile(path, "utf8");
    expect(text).not.toContain(created.token);
    expect(text).toContain(hashJoinToken(created.token));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const other = await authority.createJoinToken({ ttlMs: MIN });
    expect(other.token).not.toBe(created.token);
  });

  test("redeem issues the node SVID over the given key, once", async () => {
    const { authority, path } = freshAuthority();
    const { token } = await authority.createJoinToken({ ttlMs: 10 * MIN });
    const svid = await authority.redeem(token, spki, T0 + MIN, { nodeId: "node-a" });
    expect(svid.spiffeId).toBe(`spiffe://${TD}/node/node-a`);
    expect(svid.role).toBe(NODE_ROLE);
    expect(svid.cert.subjectName.getField("OU")).toEqual(["scheduler-bidder"]);
    expect(new Uint8Array(svid.cert.publicKey.rawData)).toEqual(spki);
    expect((await verifySvidChain(svid.certDer, [ca.cert], T0 + MIN, TD)).toString()).toBe(svid.spiffeId);

    const again = await refusal(authority.redeem(token, spki, T0 + 2 * MIN, { nodeId: "node-a" }));
    expect(again.reason).toBe("used-token");
    expect(again.httpStatus).toBe(403);
    const stored = JSON.parse(await readFile(path, "utf8")) as { tokens: JoinTokenRecord[] };
    expect(stored.tokens[0]).toMatchObject({ used_at: T0 + MIN, used_by: "node-a" });
  });

  test("expired and unknown tokens are refused", async () => {
    let now = T0;
    const { authority } = freshAuthority(() => now);
    const { token } = await authority.createJoinToken({ ttlMs: MIN });
    now = T0 + MIN;
    expect((await refusal(authority.redeem(token, spki, now, { nodeId: "n1" }))).reason).toBe(
      "expired-token",
    );
    const unknown = Buffer.alloc(32, 1).toString("base64url");
    expect((await refusal(authority.redeem(unknown, spki, T0, { nodeId: "n1" }))).reason).toBe(
      "unknown-token",
    );
    expect((await refusal(authority.redeem("not a token", spki, T0, { nodeId: "n1" }))).reason).toBe(
      "unknown-token",
    );
  });

  test("a token bound to a node id only serves that node", async () => {
    const { authority } = freshAuthority();
    const { token } = await authority.createJoinToken({ nodeId: "bound-1", ttlMs: MIN });
    expect((await refusal(authority.redeem(token, spki, T0, { nodeId: "other" }))).reason).toBe(
      "node-id-mismatch",
    );
    const svid = await authority.redeem(token, spki, T0); // the id comes from the token
    expect(svid.spiffeId).toBe(`spiffe://${TD}/node/bound-1`);
  });

  test("bad inputs are refused without consuming the token", async () => {
    const { authority } = freshAuthority();
    const { token } = await authority.createJoinToken({ ttlMs: MIN });
    expect(
      (await refusal(authority.redeem(token, new Uint8Array([1, 2, 3]), T0, { nodeId: "n1" }))).reason,
    ).toBe("invalid-public-key");
    expect((await refusal(authority.redeem(token, spki, T0, { nodeId: "has.dot" }))).reason).toBe(
      "invalid-node-id",
    );
    expect((await refusal(authority.redeem(token, spki, T0, { nodeId: "UPPER" }))).reason).toBe(
      "invalid-node-id",
    );
    expect((await refusal(authority.redeem(token, spki, T0))).reason).toBe("invalid-node-id");
    await expect(authority.redeem(token, spki, T0, { nodeId: "n1" })).resolves.toBeDefined();
  });

  test("concurrent redeems of one token: exactly one wins", async () => {
    const { authority } = freshAuthority();
    const { token } = await authority.createJoinToken({ ttlMs: MIN });
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => authority.redeem(token, spki, T0, { nodeId: `racer-${i}` })),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const reasons = results.flatMap((r) =>
      r.status === "rejected" ? [(r.reason as JoinRefusedError).reason] : [],
    );
    expect(reasons).toEqual(Array(5).fill("used-token"));
  });

  test("two stores on one file (two processes) share tokens and the single use", async () => {
    const path = join(dir, "shared.json");
    const a = new JoinAuthority({ ca, store: new JoinTokenStore(path), now: () => T0 });
    const b = new JoinAuthority({ ca, store: new JoinTokenStore(path), now: () => T0 });
    const { token } = await a.createJoinToken({ ttlMs: MIN });
    const results = await Promise.allSettled([
      a.redeem(token, spki, T0, { nodeId: "x1" }),
      b.redeem(token, spki, T0, { nodeId: "x2" }),
      a.redeem(token, spki, T0, { nodeId: "x3" }),
      b.redeem(token, spki, T0, { nodeId: "x4" }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    // b sees tokens a created later too: each operation re-reads the file.
    const second = await a.createJoinToken({ ttlMs: MIN });
    await expect(b.redeem(second.token, spki, T0, { nodeId: "y" })).resolves.toBeDefined();
  });

  test("old records are pruned a day after they expire", async () => {
    let now = T0;
    const { authority, path } = freshAuthority(() => now);
    await authority.createJoinToken({ ttlMs: MIN });
    now = T0 + MIN + 24 * 60 * MIN + 1;
    await authority.createJoinToken({ ttlMs: MIN });
    const stored = JSON.parse(await readFile(path, "utf8")) as { tokens: JoinTokenRecord[] };
    expect(stored.tokens).toHaveLength(1);
    expect(stored.tokens[0]!.created_at).toBe(now);
  });
});

describe("JoinTokenStore", () => {
  test("a malformed file is an error, not an empty store", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, JSON.stringify({ version: 1, tokens: [{ hash: "nope" }] }));
    await expect(new JoinTokenStore(path).list()).rejects.toThrow(JoinStoreError);
    await writeFile(path, "{");
    await expect(new JoinTokenStore(path).list()).rejects.toThrow(/not JSON/);
  });

  test("waits for a held lock, then gives up with a typed error", async () => {
    const path = join(dir, "locked.json");
    await writeFile(`${path}.lock`, "12345");
    const store = new JoinTokenStore(path, { lockTimeoutMs: 100 });
    await expect(store.update(async () => ({ result: 1 }))).rejects.toThrow(/timed out/);
  });

  test("takes over a stale lock left by a crashed process", async () => {
    const path = join(dir, "stale.json");
    await writeFile(`${path}.lock`, "12345");
    const old = new Date(Date.now() - 60_000);
    await utimes(`${path}.lock`, old, old);
    const store = new JoinTokenStore(path, { lockTimeoutMs: 1000, staleLockMs: 30_000 });
    await expect(store.update(async () => ({ records: [], result: "ok" }))).resolves.toBe("ok");
    await expect(stat(`${path}.lock`)).rejects.toThrow(/ENOENT/);
  });
});
