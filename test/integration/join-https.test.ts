// Node join over real HTTPS on 127.0.0.1: the node pins the CA by hash, trades
// a one-time token for its SVID, and never sends the token to a server that
// does not chain to the pinned CA with the join server's SPIFFE ID.
import https from "node:https";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, issueSvid } from "../../identity/ca.js";
import type { CertificateAuthority } from "../../identity/ca.js";
import { importPkcs8Pem, subtle, SIGN_ALG } from "../../identity/crypto.js";
import { JoinAuthority, JoinTokenStore, caCertHash } from "../../identity/join.js";
import { JoinClientError, joinMesh, startJoinServer } from "../../identity/join-http.js";
import type { JoinServer } from "../../identity/join-http.js";
import type { IdentityLog } from "../../identity/log.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { verifySvidChain } from "../../identity/verify.js";

const TD = "beemesh.local";

let ca: CertificateAuthority;
let dir: string;
let authority: JoinAuthority;
let server: JoinServer;
let now = Date.now();
const logLines: string[] = [];
const log: IdentityLog = {
  info: (msg, fields) => logLines.push(JSON.stringify({ msg, ...fields })),
  warn: (msg, fields) => logLines.push(JSON.stringify({ msg, ...fields })),
};

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD });
  dir = await mkdtemp(join(tmpdir(), "bm-join-it-"));
  authority = new JoinAuthority({ ca, store: new JoinTokenStore(join(dir, "tokens.json")), now: () => now });
  server = await startJoinServer({ authority, ca, host: "127.0.0.1", port: 0, log, now: () => now });
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  now = Date.now();
});

async function joinError(p: Promise<unknown>): Promise<JoinClientError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof JoinClientError) return err;
    throw err;
  }
  throw new Error("expected the join to fail");
}

function rawRequest(
  url: string,
  opts: { method: string; body?: string; contentType?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: opts.method,
        ca: ca.certPem,
        agent: false,
        headers: opts.contentType ? { "content-type": opts.contentType } : {},
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

test("a node joins and gets spiffe://<td>/node/<id> over its own key", async () => {
  const { token, caCertHash: pin } = await authority.createJoinToken({ ttlMs: 60_000 });
  expect(pin).toBe(server.caCertHash);
  const result = await joinMesh({ server: server.url, token, caCertHash: pin, nodeId: "node-1" });
  expect(result.svid.spiffeId).toBe(`spiffe://${TD}/node/node-1`);
  expect(result.svid.role).toBe("scheduler-bidder");
  expect(result.bundlePem.trim()).toBe(ca.certPem.trim());
  const id = await verifySvidChain(result.svid.certDer, [ca.cert], Date.now(), TD);
  expect(id.toString()).toBe(`spiffe://${TD}/node/node-1`);
  // The key stayed on the node and matches the certificate.
  const key = await importPkcs8Pem(result.svid.keyPem);
  const data = new TextEncoder().encode("bid");
  const sig = await subtle.sign(SIGN_ALG, key, data);
  const pub = await result.svid.cert.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
  expect(await subtle.verify(SIGN_ALG, pub, sig, data)).toBe(true);
  expect(logLines.some((l) => l.includes("issued node svid") && l.includes("node-1"))).toBe(true);
});

test("a reused token is refused with 403 used-token", async () => {
  const { token, caCertHash: pin } = await authority.createJoinToken({ ttlMs: 60_000 });
  await joinMesh({ server: server.url, token, caCertHash: pin, nodeId: "node-2" });
  const err = await joinError(joinMesh({ server: server.url, token, caCertHash: pin, nodeId: "node-2" }));
  expect(err.status).toBe(403);
  expect(err.reason).toBe("used-token");
});

test("an unknown token is refused with 401 unknown-token", async () => {
  const token = Buffer.alloc(32, 7).toString("base64url");
  const err = await joinError(
    joinMesh({ server: server.url, token, caCertHash: server.caCertHash, nodeId: "node-3" }),
  );
  expect(err.status).toBe(401);
  expect(err.reason).toBe("unknown-token");
});

test("an expired token is refused with 401 expired-token", async () => {
  const { token } = await authority.createJoinToken({ ttlMs: 1000 });
  now += 1000;
  const err = await joinError(
    joinMesh({ server: server.url, token, caCertHash: server.caCertHash, nodeId: "node-4" }),
  );
  expect(err.status).toBe(401);
  expect(err.reason).toBe("expired-token");
});

test("a wrong CA pin stops the client before it sends the token", async () => {
  const { token } = await authority.createJoinToken({ ttlMs: 60_000 });
  const other = await createCa({ trustDomain: TD });
  const err = await joinError(
    joinMesh({ server: server.url, token, caCertHash: caCertHash(other.cert), nodeId: "node-5" }),
  );
  expect(err.message).toMatch(/matches the CA pin/);
  // The token was never presented, so it still works with the right pin.
  const ok = await joinMesh({ server: server.url, token, caCertHash: server.caCertHash, nodeId: "node-5" });
  expect(ok.svid.spiffeId).toBe(`spiffe://${TD}/node/node-5`);
});

/** A server that hands out the real CA bundle but presents `tls` itself, counting join attempts. */
async function impostor(tls: {
  cert: string;
  key: string;
}): Promise<{ url: string; posts: () => number; close: () => Promise<void> }> {
  let posts = 0;
  const srv = https.createServer(tls, (req, res) => {
    if (req.method === "POST") posts++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ trust_domain: TD, bundle_pem: ca.certPem }));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    posts: () => posts,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

test("an impostor with a certificate from another CA never receives the token", async () => {
  const evil = await createCa({ trustDomain: TD });
  const cert = await issueSvid(evil, {
    id: spiffeId(TD, "controller", "join-server", "0"),
    role: "join-server",
    ipAddresses: ["127.0.0.1"],
  });
  const srv = await impostor({ cert: cert.chainPem, key: cert.keyPem });
  try {
    const { token } = await authority.createJoinToken({ ttlMs: 60_000 });
    await expect(
      joinMesh({ server: srv.url, token, caCertHash: server.caCertHash, nodeId: "node-6" }),
    ).rejects.toThrow(JoinClientError);
    expect(srv.posts()).toBe(0);
  } finally {
    await srv.close();
  }
});

test("an impostor holding a real SVID that is not the join server's never receives the token", async () => {
  // A compromised node has a CA-issued certificate; it must not be able to pose as the join server.
  const nodeCert = await issueSvid(ca, {
    id: spiffeId(TD, "node", "evil"),
    role: "scheduler-bidder",
    ipAddresses: ["127.0.0.1"],
  });
  const srv = await impostor({ cert: nodeCert.chainPem, key: nodeCert.keyPem });
  try {
    const { token } = await authority.createJoinToken({ ttlMs: 60_000 });
    const err = await joinError(
      joinMesh({ server: srv.url, token, caCertHash: server.caCertHash, nodeId: "node-7" }),
    );
    expect(err.message).toMatch(/not a join server/);
    expect(srv.posts()).toBe(0);
  } finally {
    await srv.close();
  }
});

test("malformed requests get 400/405 with a reason", async () => {
  const url = `${server.url}/v1/join`;
  const bad = await rawRequest(url, { method: "POST", body: "{", contentType: "application/json" });
  expect(bad.status).toBe(400);
  expect(JSON.parse(bad.body)).toMatchObject({ reason: "invalid-request" });
  const extra = await rawRequest(url, {
    method: "POST",
    body: JSON.stringify({ token: "x", node_id: "n", public_key: "AAAA", admin: true }),
    contentType: "application/json",
  });
  expect(extra.status).toBe(400);
  const wrongType = await rawRequest(url, { method: "POST", body: "{}", contentType: "text/plain" });
  expect(wrongType.status).toBe(400);
  const get = await rawRequest(url, { method: "GET" });
  expect(get.status).toBe(405);
  const badNode = await rawRequest(url, {
    method: "POST",
    body: JSON.stringify({
      token: Buffer.alloc(32).toString("base64url"),
      node_id: "a.b",
      public_key: "AAAA",
    }),
    contentType: "application/json",
  });
  expect(badNode.status).toBe(400);
  expect(JSON.parse(badNode.body)).toMatchObject({ reason: "invalid-node-id" });
});

test("logs never hold a token or a key", async () => {
  const { token } = await authority.createJoinToken({ ttlMs: 60_000 });
  const result = await joinMesh({
    server: server.url,
    token,
    caCertHash: server.caCertHash,
    nodeId: "node-8",
  });
  await joinError(joinMesh({ server: server.url, token, caCertHash: server.caCertHash, nodeId: "node-8" }));
  const all = logLines.join("\n");
  expect(all).toContain("used-token");
  expect(all).not.toContain(token);
  expect(all).not.toContain("PRIVATE KEY");
  const keyBody = result.svid.keyPem.split("\n")[1]!;
  expect(all).not.toContain(keyBody);
});
