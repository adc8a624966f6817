// ULIDs (48-bit millisecond time + 80 random bits, Crockford base32) with the
// clock and randomness injected, and deterministic task ids.
import { createHash, getRandomValues } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_LEN = 10;
const RANDOM_BYTES = 10;
const MAX_TIME = 2 ** 48 - 1;
const ULID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

export class UlidError extends Error {
  override readonly name = "UlidError";
}

export interface UlidSource {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** `n` random bytes. */
  randomBytes(n: number): Uint8Array;
}

export function isUlid(value: unknown): value is string {
  return typeof value === "string" && ULID_RE.test(value);
}

/** Encodes a ULID from its time (ms) and 10 random bytes. */
export function encodeUlid(timeMs: number, random: Uint8Array): string {
  if (!Number.isSafeInteger(timeMs) || timeMs < 0 || timeMs > MAX_TIME) {
    throw new UlidError(`protocol: ULID time ${timeMs} is outside 0..2^48-1`);
  }
  if (random.length !== RANDOM_BYTES)
    throw new UlidError(`protocol: ULID needs ${RANDOM_BYTES} random bytes, got ${random.length}`);
  let time = "";
  let t = timeMs;
  for (let i = 0; i < TIME_LEN; i++) {
    time = ALPHABET.charAt(t % 32) + time;
    t = Math.floor(t / 32);
  }
  // 80 bits -> 16 characters of 5 bits, most significant first.
  let bits = 0n;
  for (const b of random) bits = (bits << 8n) | BigInt(b);
  let rand = "";
  for (let i = 0; i < 16; i++) {
    rand = ALPHABET.charAt(Number(bits & 31n)) + rand;
    bits >>= 5n;
  }
  return time + rand;
}

/** The time part of a ULID in milliseconds. */
export function ulidTime(id: string): number {
  if (!isUlid(id)) throw new UlidError(`protocol: ${JSON.stringify(id)} is not a ULID`);
  let t = 0;
  for (const ch of id.slice(0, TIME_LEN)) t = t * 32 + ALPHABET.indexOf(ch);
  return t;
}

/**
 * A ULID generator. Monotonic: within one millisecond (or when the clock steps
 * back) the previous random part is incremented, so ids from one factory sort
 * in creation order.
 */
export function ulidFactory(source: UlidSource): () => string {
  let lastTime = -1;
  let lastRandom: Uint8Array = new Uint8Array(RANDOM_BYTES);
  return () => {
    const now = source.now();
    if (now > lastTime) {
      lastTime = now;
      lastRandom = Uint8Array.from(source.randomBytes(RANDOM_BYTES));
    } else {
      lastRandom = increment(lastRandom);
    }
    return encodeUlid(lastTime, lastRandom);
  };
}

function increment(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  for (let i = out.length - 1; i >= 0; i--) {
    const next = (out[i] ?? 0) + 1;
    out[i] = next & 0xff;
    if (next <= 0xff) return out;
  }
  throw new UlidError("protocol: ULID random part overflowed within one millisecond");
}

/** The real clock and CSPRNG; for main() and other edges, not for pure logic. */
export function systemUlidSource(): UlidSource {
  return {
    now: () => Date.now(),
    randomBytes: (n) => getRandomValues(new Uint8Array(n)),
  };
}

export interface DeterministicTaskIdInput {
  /** metadata.uid of the workload. */
  readonly uid: string;
  /** metadata.generation the task was rendered from. */
  readonly generation: number;
  /** Replica slot: the index for a Deployment, the ordinal for a StatefulSet. */
  readonly slot: number | string;
  /**
   * Time part in ms. Use the object's creationTimestamp so ids still sort by
   * age; default 0 (the Unix epoch), which keeps the id a pure function of
   * (uid, generation, slot).
   */
  readonly timeMs?: number;
}

/**
 * A task id every dispatcher computes alike for the same (uid, generation,
 * slot), so a re-dispatch after a restart is dropped by the JetStream dedup
 * window (Nats-Msg-Id = task id) instead of doubling the replicas. It is a
 * valid ULID: the time part is `timeMs`, the 80-bit random part is the first
 * 10 bytes of sha256("beemesh/task-id/v1\0" + uid + "\0" + generation + "\0" + slot).
 */
export function deterministicTaskId(input: DeterministicTaskIdInput): string {
  if (typeof input.uid !== "string" || input.uid.length === 0)
    throw new UlidError("protocol: task id needs a uid");
  if (!Number.isSafeInteger(input.generation) || input.generation < 0) {
    throw new UlidError(`protocol: generation ${input.generation} is not a non-negative integer`);
  }
  const digest = createHash("sha256")
    .update(`beemesh/task-id/v1\0${input.uid}\0${input.generation}\0${String(input.slot)}`, "utf8")
    .digest();
  return encodeUlid(input.timeMs ?? 0, new Uint8Array(digest.subarray(0, RANDOM_BYTES)));
}
