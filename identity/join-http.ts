// The join exchange over HTTPS (JOIN.md). The node has no identity yet, so it
// trusts the server through the CA pin it was given with its token: it first
// fetches the bundle (no secret sent), keeps only the certificate whose sha256
// matches the pin, then posts the token over TLS verified against that CA and
// the join server's SPIFFE ID.
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isIP } from "node:net";
import type { PeerCertificate } from "node:tls";
import { createHash } from "node:crypto";
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { CertificateAuthority, Svid } from "./ca.js";
import { issueSvid } from "./ca.js";
import { x509, generateKeyPair, exportPkcs8Pem, subtle } from "./crypto.js";
import type { CryptoKeyPair } from "./crypto.js";
import { pemCertificatesToDer, toArrayBuffer } from "./der.js";
import type { IdentityLog } from "./log.js";
import { silentLog } from "./log.js";
import type { JoinAuthority } from "./join.js";
import { JOIN_TOKEN_PATTERN, JoinRefusedError, NODE_ID_PATTERN, caCertHash } from "./join.js";
import { parseSpiffeId, spiffeId } from "./spiffe-id.js";
import { verifySvidChain } from "./verify.js";

export const JOIN_PATH = "/v1/join";
export const BUNDLE_PATH = "/v1/bundle";
export const JOIN_SERVER_ROLE = "join-server";
/** The join server's SPIFFE ID is /controller/join-server/<instance>; the client accepts no other. */
const JOIN_SERVER_PATH_PREFIX = "/controller/join-server/";
const MAX_REQUEST_BYTES = 16 * 1024;
const MAX_RESPONSE_BYTES = 1024 * 1024;

export class JoinClientError extends Error {
  override name = "JoinClientError";
  constructor(
    message: string,
    readonly status?: number,
    readonly reason?: string,
    options?: { cause?: unknown },
  ) {
    super(`identity: join: ${message}`, options);
  }
}

const JoinRequestSchema = Type.Object(
  {
    token: Type.String({ maxLength: 128 }),
    node_id: Type.String({ maxLength: 63 }),
    public_key: Type.String({ maxLength: 2048, pattern: "^[A-Za-z0-9+/]+={0,2}$" }),
  },
  { additionalProperties: false },
);

const JoinResponseSchema = Type.Object({
  spiffe_id: Type.String(),
  svid_chain_pem: Type.String(),
  bundle_pem: Type.String(),
  expires_at: Type.String(),
});

const BundleResponseSchema = Type.Object({ trust_domain: Type.String(), bundle_pem: Type.String() });

const ErrorBodySchema = Type.Object({ reason: Type.String(), message: Type.String() });

export interface JoinServerOptions {
  authority: JoinAuthority;
  ca: CertificateAuthority;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Instance name in the server's SPIFFE ID. */
  instance?: string;
  /** Extra DNS names for the server certificate. */
  dnsNames?: string[];
  log?: IdentityLog;
  now?: () => number;
}

export interface JoinServer {
  readonly url: string;
  readonly port: number;
  readonly caCertHash: string;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new JoinRefusedError("invalid-request", `body larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Starts the join endpoint on HTTPS with a server SVID from `ca`, renewed at half life. */
export async function startJoinServer(opts: JoinServerOptions): Promise<JoinServer> {
  const host = opts.host ?? "127.0.0.1";
  const log = opts.log ?? silentLog;
  const now = opts.now ?? Date.now;
  const id = spiffeId(opts.ca.trustDomain, "controller", "join-server", opts.instance ?? "0");
  const issueServerCert = async () =>
    issueSvid(opts.ca, {
      id,
      role: JOIN_SERVER_ROLE,
      now: new Date(now()),
      dnsNames: ["localhost", ...(opts.dnsNames ?? [])],
      ipAddresses: isIP(host) ? [host] : [],
    });
  let serverSvid = await issueServerCert();
  const bundleBody = { trust_domain: opts.ca.trustDomain, bundle_pem: opts.ca.certPem };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "").split("?")[0];
    if (path === BUNDLE_PATH && req.method === "GET") return sendJson(res, 200, bundleBody);
    if (path !== JOIN_PATH) return sendJson(res, 404, { reason: "not-found", message: "no such path" });
    if (req.method !== "POST")
      return sendJson(res, 405, { reason: "method-not-allowed", message: "use POST" });
    const remote = req.socket.remoteAddress;
    let nodeId: string | undefined;
    try {
      if (!(req.headers["content-type"] ?? "").startsWith("application/json")) {
        throw new JoinRefusedError("invalid-request", "content-type must be application/json");
      }
      const raw = await readBody(req, MAX_REQUEST_BYTES);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        throw new JoinRefusedError("invalid-request", "body is not JSON");
      }
      if (!Value.Check(JoinRequestSchema, body)) {
        const first = Value.Errors(JoinRequestSchema, body).First();
        throw new JoinRefusedError(
          "invalid-request",
          `${first?.path || "/"}: ${first?.message ?? "invalid"}`,
        );
      }
      if (!NODE_ID_PATTERN.test(body.node_id)) {
        throw new JoinRefusedError("invalid-node-id", `node_id must match ${NODE_ID_PATTERN.source}`);
      }
      nodeId = body.node_id;
      const svid = await opts.authority.redeem(
        body.token,
        new Uint8Array(Buffer.from(body.public_key, "base64")),
        now(),
        {
          nodeId: body.node_id,
        },
      );
      log.info("join: issued node svid", {
        spiffe_id: svid.spiffeId,
        remote,
        not_after: svid.notAfter.toISOString(),
      });
      sendJson(res, 200, {
        spiffe_id: svid.spiffeId,
        svid_chain_pem: svid.chainPem,
        bundle_pem: svid.bundlePem,
        expires_at: svid.notAfter.toISOString(),
      });
    } catch (err) {
      if (err instanceof JoinRefusedError) {
        // The reason and node id only: never the token, never the key.
        log.warn("join: refused", { reason: err.reason, node: nodeId, remote });
        return sendJson(res, err.httpStatus, { reason: err.reason, message: err.message });
      }
      log.warn("join: failed", { error: err instanceof Error ? err.name : "unknown", node: nodeId, remote });
      return sendJson(res, 500, { reason: "internal", message: "join failed" });
    }
  };

  const server = https.createServer(
    { cert: serverSvid.chainPem, key: serverSvid.keyPem, minVersion: "TLSv1.2" },
    (req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent) sendJson(res, 500, { reason: "internal", message: "join failed" });
      });
    },
  );
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;

  // Renew the server certificate at half life; a failure retries a minute later.
  let renewTimer: NodeJS.Timeout | undefined;
  const scheduleRenewal = (delayMs: number) => {
    renewTimer = setTimeout(() => {
      issueServerCert().then(
        (next) => {
          serverSvid = next;
          server.setSecureContext({ cert: next.chainPem, key: next.keyPem, minVersion: "TLSv1.2" });
          scheduleRenewal(Math.max(1000, (next.notAfter.getTime() - now()) / 2));
        },
        () => scheduleRenewal(60_000),
      );
    }, delayMs);
    renewTimer.unref();
  };
  scheduleRenewal(Math.max(1000, (serverSvid.notAfter.getTime() - now()) / 2));

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = isIP(host) === 6 ? `[${host}]` : host;
  return {
    url: `https://${urlHost}:${port}`,
    port,
    caCertHash: caCertHash(opts.ca.cert),
    close: () =>
      new Promise<void>((resolve) => {
        if (renewTimer) clearTimeout(renewTimer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface HttpsCall {
  url: URL;
  method: "GET" | "POST";
  body?: string;
  tls: https.RequestOptions;
  timeoutMs: number;
}

function httpsCall(call: HttpsCall): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      call.url,
      {
        method: call.method,
        headers: call.body
          ? { "content-type": "application/json", "content-length": Buffer.byteLength(call.body) }
          : {},
        timeout: call.timeoutMs,
        agent: false,
        ...call.tls,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(new JoinClientError("response too large"));
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new JoinClientError(`no answer within ${call.timeoutMs} ms`)));
    req.on("error", (err) =>
      reject(
        err instanceof JoinClientError
          ? err
          : new JoinClientError(err.message, undefined, undefined, { cause: err }),
      ),
    );
    req.end(call.body);
  });
}

function parseJson(body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new JoinClientError(`${what} is not JSON`, undefined, undefined, { cause: err });
  }
}

/** `sha256:<64 hex>` → the lowercase hex. */
export function parseCaCertHash(pin: string): string {
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(pin.trim());
  if (!m) throw new JoinClientError(`CA pin must look like sha256:<64 hex digits>`);
  return m[1]!.toLowerCase();
}

function uriSansOfPeer(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? "")
    .split(", ")
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
}

export interface JoinMeshOptions {
  /** Base URL of the join server, e.g. https://10.0.0.1:7443 */
  server: string;
  token: string;
  /** `sha256:<hex>` of the CA certificate, given with the token. */
  caCertHash: string;
  nodeId: string;
  /** Key pair to certify; a fresh P-256 pair when unset. */
  keys?: CryptoKeyPair;
  timeoutMs?: number;
  now?: () => number;
}

export interface JoinResult {
  readonly svid: Svid;
  /** The pinned CA, the only certificate this node trusts after joining. */
  readonly bundlePem: string;
}

/** Joins the mesh: returns this node's SVID (spiffe://<td>/node/<nodeId>) and its key. */
export async function joinMesh(opts: JoinMeshOptions): Promise<JoinResult> {
  const pin = parseCaCertHash(opts.caCertHash);
  if (!JOIN_TOKEN_PATTERN.test(opts.token)) throw new JoinClientError("join token is malformed");
  if (!NODE_ID_PATTERN.test(opts.nodeId))
    throw new JoinClientError(`node id must match ${NODE_ID_PATTERN.source}`);
  const base = new URL(opts.server);
  if (base.protocol !== "https:") throw new JoinClientError("the join server URL must be https");
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const now = opts.now ?? Date.now;

  // Step 1: the bundle, over TLS we cannot verify yet; the pin is what makes it trustworthy.
  const bundleRes = await httpsCall({
    url: new URL(BUNDLE_PATH, base),
    method: "GET",
    tls: { rejectUnauthorized: false },
    timeoutMs,
  });
  if (bundleRes.status !== 200)
    throw new JoinClientError(`bundle request answered ${bundleRes.status}`, bundleRes.status);
  const bundleBody = parseJson(bundleRes.body, "bundle response");
  if (!Value.Check(BundleResponseSchema, bundleBody))
    throw new JoinClientError("bundle response is malformed");
  const pinned = pemCertificatesToDer(bundleBody.bundle_pem).find(
    (der) => createHash("sha256").update(der).digest("hex") === pin,
  );
  if (!pinned) throw new JoinClientError("no certificate in the server's bundle matches the CA pin");
  const caCert = new x509.X509Certificate(toArrayBuffer(pinned));
  const caPem = caCert.toString("pem");
  const trustDomain = parseSpiffeId(
    (caCert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? []).find(
      (n) => n.type === "url",
    )?.value ?? "",
  ).trustDomain;

  // Step 2: the token, only over TLS that chains to the pinned CA and names the join server.
  const keys = opts.keys ?? (await generateKeyPair());
  const spki = new Uint8Array(await subtle.exportKey("spki", keys.publicKey));
  const joinRes = await httpsCall({
    url: new URL(JOIN_PATH, base),
    method: "POST",
    body: JSON.stringify({
      token: opts.token,
      node_id: opts.nodeId,
      public_key: Buffer.from(spki).toString("base64"),
    }),
    tls: {
      ca: caPem,
      checkServerIdentity: (_host, cert) => {
        const uris = uriSansOfPeer(cert);
        const ok =
          uris.length === 1 && uris[0]!.startsWith(`spiffe://${trustDomain}${JOIN_SERVER_PATH_PREFIX}`);
        return ok
          ? undefined
          : new JoinClientError(`server is not a join server of ${trustDomain} (${uris.join(",")})`);
      },
    },
    timeoutMs,
  });
  const joinBody = parseJson(joinRes.body, "join response");
  if (joinRes.status !== 200) {
    const err = Value.Check(ErrorBodySchema, joinBody) ? joinBody : { reason: "unknown", message: "" };
    throw new JoinClientError(`server refused the join: ${err.reason}`, joinRes.status, err.reason);
  }
  if (!Value.Check(JoinResponseSchema, joinBody)) throw new JoinClientError("join response is malformed");

  // Step 3: what came back must be our node's SVID, over our key, from the pinned CA.
  const chain = pemCertificatesToDer(joinBody.svid_chain_pem);
  const leafDer = chain[0];
  if (!leafDer) throw new JoinClientError("join response holds no certificate");
  const id = await verifySvidChain(leafDer, [caCert], now(), trustDomain).catch((err: unknown) => {
    throw new JoinClientError("issued SVID does not verify against the pinned CA", undefined, undefined, {
      cause: err,
    });
  });
  const expected = spiffeId(trustDomain, "node", opts.nodeId).toString();
  if (id.toString() !== expected)
    throw new JoinClientError(`issued SVID names ${id.toString()}, expected ${expected}`);
  const cert = new x509.X509Certificate(toArrayBuffer(leafDer));
  if (!Buffer.from(cert.publicKey.rawData).equals(Buffer.from(spki))) {
    throw new JoinClientError("issued SVID does not certify our public key");
  }
  const certPem = cert.toString("pem");
  return {
    bundlePem: caPem,
    svid: {
      spiffeId: expected,
      role: cert.subjectName.getField("OU")[0] ?? "",
      cert,
      certPem,
      certDer: leafDer,
      keyPem: await exportPkcs8Pem(keys.privateKey),
      privateKey: keys.privateKey,
      chainPem: `${certPem}\n${caPem}\n`,
      bundlePem: caPem,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
    },
  };
}
