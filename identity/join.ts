// Node join (DESIGN §5, JOIN.md): single-use, expiring join tokens that a new
// node trades, once, for its node SVID. Only the sha256 of a token is stored;
// the store is a JSON file replaced by fsync + atomic rename under a lock, so
// two redeems of one token cannot both succeed, even from two processes.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { open, readFile, stat, unlink } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { CertificateAuthority, Svid } from "./ca.js";
import { issueSvid, writeFileAtomic } from "./ca.js";
import { subtle, EC_ALG } from "./crypto.js";
import type { CryptoKey, x509 } from "./crypto.js";
import { toArrayBuffer } from "./der.js";
import { spiffeId } from "./spiffe-id.js";

export const NODE_ROLE = "scheduler-bidder";
/** Node IDs end up in NATS subjects (`beemesh.node.<nodeId>.<verb>`), so no dots. */
export const NODE_ID_PATTERN = /^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$/;
const TOKEN_BYTES = 32;
/** base64url of 32 bytes, no padding. */
export const JOIN_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
export const DEFAULT_JOIN_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;
/** Used and expired records stay this long so a late reuse is reported as "used", not "unknown". */
const RETAIN_AFTER_EXPIRY_MS = 24 * 60 * 60 * 1000;

export type JoinRefusalReason =
  | "unknown-token"
  | "expired-token"
  | "used-token"
  | "node-id-mismatch"
  | "invalid-node-id"
  | "invalid-public-key"
  | "invalid-request";

const HTTP_STATUS: Record<JoinRefusalReason, number> = {
  "unknown-token": 401,
  "expired-token": 401,
  "used-token": 403,
  "node-id-mismatch": 403,
  "invalid-node-id": 400,
  "invalid-public-key": 400,
  "invalid-request": 400,
};

/** A join that was refused; `reason` is safe to send to the client and to log (it never holds the token). */
export class JoinRefusedError extends Error {
  override name = "JoinRefusedError";
  readonly httpStatus: number;
  constructor(
    readonly reason: JoinRefusalReason,
    message: string,
  ) {
    super(`identity: join refused (${reason}): ${message}`);
    this.httpStatus = HTTP_STATUS[reason];
  }
}

export class JoinStoreError extends Error {
  override name = "JoinStoreError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`identity: join token store: ${message}`, options);
  }
}

const JoinTokenRecordSchema = Type.Object(
  {
    hash: Type.String({ pattern: "^[0-9a-f]{64}$" }),
    node_id: Type.Optional(Type.String({ pattern: NODE_ID_PATTERN.source })),
    created_at: Type.Integer({ minimum: 0 }),
    expires_at: Type.Integer({ minimum: 0 }),
    used_at: Type.Optional(Type.Integer({ minimum: 0 })),
    used_by: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type JoinTokenRecord = Static<typeof JoinTokenRecordSchema>;

const JoinTokenFileSchema = Type.Object(
  { version: Type.Literal(1), tokens: Type.Array(JoinTokenRecordSchema) },
  { additionalProperties: false },
);
type JoinTokenFile = Static<typeof JoinTokenFileSchema>;

export function hashJoinToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export function generateJoinToken(): string {
  return randomBytes(TOKEN_BYTES).toString("base64url");
}

/** sha256 of the CA certificate's DER, as a node is given it with its token (like kubeadm's discovery hash). */
export function caCertHash(caCert: x509.X509Certificate): string {
  return "sha256:" + createHash("sha256").update(new Uint8Array(caCert.rawData)).digest("hex");
}

function findRecord(records: readonly JoinTokenRecord[], hash: string): JoinTokenRecord | undefined {
  const want = Buffer.from(hash, "hex");
  return records.find((r) => timingSafeEqual(Buffer.from(r.hash, "hex"), want));
}

/**
 * Pure check of one redeem attempt: the refusal, or undefined when the record may be
 * redeemed by `nodeId` at `nowMs`. Order matters: a used token stays "used" after expiry.
 */
export function checkRedeemable(
  record: JoinTokenRecord | undefined,
  nodeId: string,
  nowMs: number,
): JoinRefusedError | undefined {
  if (!record) return new JoinRefusedError("unknown-token", "no such join token");
  if (record.used_at !== undefined) return new JoinRefusedError("used-token", "join token was already used");
  if (nowMs >= record.expires_at) return new JoinRefusedError("expired-token", "join token has expired");
  if (record.node_id !== undefined && record.node_id !== nodeId) {
    return new JoinRefusedError("node-id-mismatch", `join token is bound to another node id than ${nodeId}`);
  }
  return undefined;
}

/** Drops records nobody can redeem any more once their grace period has passed. */
export function pruneRecords(records: readonly JoinTokenRecord[], nowMs: number): JoinTokenRecord[] {
  return records.filter((r) => nowMs < r.expires_at + RETAIN_AFTER_EXPIRY_MS);
}

export interface JoinTokenStoreOptions {
  /** How long to wait for another process's lock before giving up. */
  lockTimeoutMs?: number;
  /** A lock file older than this is taken to belong to a crashed process. */
  staleLockMs?: number;
}

/** The JSON file of token records; every change is a locked read-modify-write. */
export class JoinTokenStore {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly lockTimeoutMs: number;
  private readonly staleLockMs: number;

  constructor(
    readonly path: string,
    opts: JoinTokenStoreOptions = {},
  ) {
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 5_000;
    this.staleLockMs = opts.staleLockMs ?? 30_000;
  }

  async list(): Promise<JoinTokenRecord[]> {
    return (await this.read()).tokens;
  }

  /**
   * Runs fn on the current records under the lock; what it returns in `records` is written
   * (fsync + rename) before `result` is handed back. Returning `records: undefined` writes nothing.
   */
  async update<T>(
    fn: (records: JoinTokenRecord[]) => Promise<{ records?: JoinTokenRecord[]; result: T }>,
  ): Promise<T> {
    const run = this.chain.then(() =>
      this.withFileLock(async () => {
        const current = await this.read();
        const { records, result } = await fn(current.tokens.map((r) => ({ ...r })));
        if (records) await this.write({ version: 1, tokens: records });
        return result;
      }),
    );
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async read(): Promise<JoinTokenFile> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, tokens: [] };
      throw new JoinStoreError(`cannot read ${this.path}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new JoinStoreError(`${this.path} is not JSON`, { cause: err });
    }
    if (!Value.Check(JoinTokenFileSchema, parsed)) {
      const first = Value.Errors(JoinTokenFileSchema, parsed).First();
      throw new JoinStoreError(
        `${this.path} is malformed at ${first?.path ?? "/"}: ${first?.message ?? "?"}`,
      );
    }
    return parsed;
  }

  private async write(file: JoinTokenFile): Promise<void> {
    await writeFileAtomic(this.path, JSON.stringify(file, null, 2) + "\n", 0o600);
  }

  private async withFileLock<T>(fn: () => Promise<T>): Promise<T> {
    const lockPath = `${this.path}.lock`;
    const deadline = Date.now() + this.lockTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const fh = await open(lockPath, "wx", 0o600);
        await fh.writeFile(String(process.pid));
        await fh.close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST")
          throw new JoinStoreError(`cannot lock ${lockPath}`, { cause: err });
      }
      const age = await stat(lockPath).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > this.staleLockMs) {
        await unlink(lockPath).catch(() => undefined);
        continue;
      }
      if (Date.now() >= deadline) throw new JoinStoreError(`timed out waiting for ${lockPath}`);
      await delay(Math.min(5 * 2 ** Math.min(attempt, 4), 50));
    }
    try {
      return await fn();
    } finally {
      await unlink(lockPath).catch(() => undefined);
    }
  }
}

export interface JoinAuthorityOptions {
  ca: CertificateAuthority;
  store: JoinTokenStore;
  /** TTL of issued node SVIDs; the CA default (1 h) when unset. */
  svidTtlMs?: number;
  now?: () => number;
}

export interface CreatedJoinToken {
  /** The secret: shown once to the operator, never stored or logged. */
  readonly token: string;
  readonly expiresAt: Date;
  readonly nodeId: string | undefined;
  /** The CA pin a node needs with the token (`sha256:<hex>`). */
  readonly caCertHash: string;
}

export interface RedeemOptions {
  /** The node id the joiner asks for; required when the token is not bound to one. */
  nodeId?: string;
}

/** Creates join tokens and trades them, once each, for node SVIDs. */
export class JoinAuthority {
  private readonly ca: CertificateAuthority;
  private readonly store: JoinTokenStore;
  private readonly svidTtlMs: number | undefined;
  private readonly now: () => number;

  constructor(opts: JoinAuthorityOptions) {
    this.ca = opts.ca;
    this.store = opts.store;
    this.svidTtlMs = opts.svidTtlMs;
    this.now = opts.now ?? Date.now;
  }

  get trustDomain(): string {
    return this.ca.trustDomain;
  }

  async createJoinToken(opts: { nodeId?: string; ttlMs?: number } = {}): Promise<CreatedJoinToken> {
    const ttlMs = opts.ttlMs ?? DEFAULT_JOIN_TOKEN_TTL_MS;
    if (!(ttlMs > 0)) throw new RangeError("identity: join token ttlMs must be positive");
    if (opts.nodeId !== undefined && !NODE_ID_PATTERN.test(opts.nodeId)) {
      throw new JoinRefusedError(
        "invalid-node-id",
        `node id ${JSON.stringify(opts.nodeId)} must match ${NODE_ID_PATTERN.source}`,
      );
    }
    const token = generateJoinToken();
    const nowMs = this.now();
    const record: JoinTokenRecord = {
      hash: hashJoinToken(token),
      created_at: nowMs,
      expires_at: nowMs + ttlMs,
    };
    if (opts.nodeId !== undefined) record.node_id = opts.nodeId;
    await this.store.update(async (records) => ({
      records: [...pruneRecords(records, nowMs), record],
      result: undefined,
    }));
    return {
      token,
      expiresAt: new Date(record.expires_at),
      nodeId: opts.nodeId,
      caCertHash: caCertHash(this.ca.cert),
    };
  }

  /**
   * Trades a token for the SVID `spiffe://<td>/node/<nodeId>` (role scheduler-bidder) over
   * `publicKeySpki` (ECDSA P-256). The token is marked used in the same locked write that
   * precedes the answer, so it is never good twice.
   */
  async redeem(
    token: string,
    publicKeySpki: Uint8Array,
    now: Date | number,
    opts: RedeemOptions = {},
  ): Promise<Svid> {
    const nowMs = typeof now === "number" ? now : now.getTime();
    if (!JOIN_TOKEN_PATTERN.test(token)) throw new JoinRefusedError("unknown-token", "no such join token");
    if (opts.nodeId !== undefined && !NODE_ID_PATTERN.test(opts.nodeId)) {
      throw new JoinRefusedError("invalid-node-id", `node id must match ${NODE_ID_PATTERN.source}`);
    }
    let publicKey: CryptoKey;
    try {
      publicKey = await subtle.importKey("spki", toArrayBuffer(publicKeySpki), EC_ALG, true, ["verify"]);
    } catch {
      throw new JoinRefusedError(
        "invalid-public-key",
        "public_key must be an ECDSA P-256 SubjectPublicKeyInfo",
      );
    }
    const hash = hashJoinToken(token);
    return this.store.update(async (records) => {
      const record = findRecord(records, hash);
      const nodeId = opts.nodeId ?? record?.node_id;
      if (record && nodeId === undefined) {
        throw new JoinRefusedError("invalid-node-id", "node_id is required for a token not bound to a node");
      }
      const refusal = checkRedeemable(record, nodeId ?? "", nowMs);
      if (refusal) throw refusal;
      const id = spiffeId(this.ca.trustDomain, "node", nodeId!);
      const svid = await issueSvid(this.ca, {
        id,
        role: NODE_ROLE,
        publicKey,
        now: new Date(nowMs),
        ...(this.svidTtlMs !== undefined ? { ttlMs: this.svidTtlMs } : {}),
      });
      record!.used_at = nowMs;
      record!.used_by = nodeId!;
      return { records: pruneRecords(records, nowMs), result: svid };
    });
  }
}
