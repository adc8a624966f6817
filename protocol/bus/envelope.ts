// Signing and verifying the envelope every bus message travels in (DESIGN §2):
// {type, payload, sig: {spiffe_id, cert, alg, value}, nonce, ts}. The
// verifier is the whole pipeline in one place; each failure has one reason.
import { KeyObject, randomFillSync, sign as signBytes, verify as verifyBytes } from "node:crypto";
import type { SvidCredentials } from "../../identity/svid.js";
import type { SvidVerifier, VerifiedSvid } from "../../identity/verify.js";
import { SvidVerifyError } from "../../identity/verify.js";
import type { Principal, SpiffeId } from "../../identity/spiffe-id.js";
import { principalOf } from "../../identity/spiffe-id.js";
import type { Parser } from "../parse.js";
import { parseEnvelope } from "../parse.js";
import type { Envelope } from "../schema/messages.js";
import type { MessageAuthorizer } from "./authz.js";
import { BusIdentityError } from "./errors.js";
import type { NonceCache } from "./nonce-cache.js";
import { signingBytes } from "../canonical.js";

export const REJECT_REASONS = [
  "malformed",
  "untrusted_cert",
  "bad_signature",
  "stale",
  "replay",
  "unauthorized",
  "invalid_payload",
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export const SIGNATURE_ALG = "ES256";
export const DEFAULT_SKEW_MS = 30_000;

/** What a subscriber expects on a subject: the envelope type and its payload parser. */
export interface MessageSpec<T> {
  readonly type: string;
  readonly parse: Parser<T>;
}

export interface Accepted<T> {
  readonly type: string;
  readonly payload: T;
  readonly sender: SpiffeId;
  readonly principal: Principal;
  readonly subject: string;
  readonly nonce: string;
  readonly ts: number;
  /** sha256 of the signer's certificate. */
  readonly fingerprint: string;
}

export interface Rejected {
  readonly reason: RejectReason;
  readonly detail: string;
  /** What the message claimed, for the log line; unverified unless the reason is late in the pipeline. */
  readonly claimed?: { type?: string; spiffeId?: string };
}

export type VerifyOutcome<T> =
  { readonly ok: true; readonly value: Accepted<T> } | ({ readonly ok: false } & Rejected);

// ------------------------------------------------------------------ nonces ---

const NONCE_BYTES = 16;
const POOL_NONCES = 256;
let pool = Buffer.alloc(0);
let poolAt = 0;

/** 16 random bytes, base64url (22 characters); drawn from a refilled pool to keep the hot path cheap. */
export function newNonce(): string {
  if (poolAt + NONCE_BYTES > pool.length) {
    pool = randomFillSync(Buffer.alloc(NONCE_BYTES * POOL_NONCES));
    poolAt = 0;
  }
  const nonce = pool.toString("base64url", poolAt, poolAt + NONCE_BYTES);
  poolAt += NONCE_BYTES;
  return nonce;
}

// ------------------------------------------------------------------ signer ---

/** Signs envelopes as one SVID; immutable, so a rotation swaps the whole signer at once. */
export class EnvelopeSigner {
  readonly spiffeId: string;
  readonly certB64: string;
  readonly notAfter: Date;
  private readonly key: KeyObject;

  constructor(svid: SvidCredentials) {
    if (!svid.privateKey) throw new BusIdentityError(`SVID ${svid.spiffeId} has no private key to sign with`);
    this.spiffeId = svid.spiffeId;
    this.certB64 = Buffer.from(svid.certDer).toString("base64");
    this.notAfter = svid.notAfter;
    this.key = KeyObject.from(svid.privateKey);
  }

  sign(subject: string, type: string, payload: unknown, ts: number, nonce: string = newNonce()): Envelope {
    // Sign exactly what receivers will parse: JSON drops undefined fields and turns Dates into strings.
    const wirePayload: unknown = JSON.parse(JSON.stringify(payload) ?? "null");
    const bytes = signingBytes({ type, subject, payload: wirePayload, nonce, ts, spiffe_id: this.spiffeId });
    const value = signBytes("sha256", bytes, { key: this.key, dsaEncoding: "ieee-p1363" }).toString("base64");
    return {
      type,
      payload: wirePayload,
      sig: { spiffe_id: this.spiffeId, cert: this.certB64, alg: SIGNATURE_ALG, value },
      nonce,
      ts,
    };
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return encoder.encode(JSON.stringify(envelope));
}

// ---------------------------------------------------------------- verifier ---

export interface EnvelopeVerifierOptions {
  svids: SvidVerifier;
  authorize: MessageAuthorizer;
  nonces: NonceCache;
  /** Milliseconds since the epoch. */
  now: () => number;
  skewMs?: number;
}

/** Key objects for verified certificates, kept as long as the verifier caches the certificate. */
const publicKeys = new WeakMap<VerifiedSvid, KeyObject>();

function publicKeyOf(v: VerifiedSvid): KeyObject {
  let key = publicKeys.get(v);
  if (!key) {
    key = KeyObject.from(v.publicKey);
    publicKeys.set(v, key);
  }
  return key;
}

const reject = (
  reason: RejectReason,
  detail: string,
  claimed?: Rejected["claimed"],
): VerifyOutcome<never> => ({
  ok: false,
  reason,
  detail,
  claimed,
});

/**
 * The verification pipeline, in order: malformed → untrusted_cert →
 * bad_signature → stale → replay → unauthorized → invalid_payload.
 */
export class EnvelopeVerifier {
  readonly skewMs: number;
  private readonly opts: EnvelopeVerifierOptions;

  constructor(opts: EnvelopeVerifierOptions) {
    this.opts = opts;
    this.skewMs = opts.skewMs ?? DEFAULT_SKEW_MS;
  }

  async verify<T>(subject: string, data: Uint8Array, spec: MessageSpec<T>): Promise<VerifyOutcome<T>> {
    let raw: unknown;
    try {
      raw = JSON.parse(decoder.decode(data));
    } catch {
      return reject("malformed", "not UTF-8 JSON");
    }
    const parsed = parseEnvelope(raw);
    if (!parsed.ok) return reject("malformed", parsed.error.message);
    const env = parsed.value;
    const claimed = { type: env.type, spiffeId: env.sig.spiffe_id };

    let cert: VerifiedSvid;
    try {
      cert = await this.opts.svids.verify(Buffer.from(env.sig.cert, "base64"));
    } catch (err) {
      if (err instanceof SvidVerifyError) return reject("untrusted_cert", err.message, claimed);
      throw err;
    }
    if (cert.id.toString() !== env.sig.spiffe_id) {
      return reject(
        "untrusted_cert",
        `certificate names ${cert.id.toString()}, envelope claims ${env.sig.spiffe_id}`,
        claimed,
      );
    }

    const bytes = signingBytes({
      type: env.type,
      subject,
      payload: env.payload,
      nonce: env.nonce,
      ts: env.ts,
      spiffe_id: env.sig.spiffe_id,
    });
    const signature = Buffer.from(env.sig.value, "base64");
    let good: boolean;
    try {
      good = verifyBytes("sha256", bytes, { key: publicKeyOf(cert), dsaEncoding: "ieee-p1363" }, signature);
    } catch {
      good = false;
    }
    if (!good) return reject("bad_signature", "signature does not verify", claimed);

    const now = this.opts.now();
    if (Math.abs(now - env.ts) > this.skewMs) {
      return reject("stale", `ts ${env.ts} is ${now - env.ts} ms from now (skew ${this.skewMs} ms)`, claimed);
    }

    const verdict = this.opts.nonces.check(`${env.sig.spiffe_id}\u0000${env.nonce}`, env.ts, now);
    if (verdict !== "fresh") {
      return reject(
        "replay",
        verdict === "replay" ? "nonce seen before" : "older than the replay cache remembers",
        claimed,
      );
    }

    const decision = this.opts.authorize({ sender: cert.id, type: env.type, subject, payload: env.payload });
    if (!decision.allow) return reject("unauthorized", decision.why, claimed);

    if (env.type !== spec.type)
      return reject("invalid_payload", `type ${env.type}, expected ${spec.type}`, claimed);
    const payload = spec.parse(env.payload);
    if (!payload.ok) return reject("invalid_payload", payload.error.message, claimed);

    return {
      ok: true,
      value: {
        type: env.type,
        payload: payload.value,
        sender: cert.id,
        principal: principalOf(cert.id),
        subject,
        nonce: env.nonce,
        ts: env.ts,
        fingerprint: cert.fingerprint,
      },
    };
  }
}
