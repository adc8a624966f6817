// Clone-slot leases in the beemesh-leases KV bucket (DESIGN §4), with the
// semantics the replica logic expects of its slot store (logic/sim.ts
// InMemorySlotStore): create refuses a held key, a held key frees itself TTL
// after its last write. That bucket has no TTL, and a bucket TTL could not be
// watched anyway (DESIGN §3), so expiry is judged here, on this process's
// monotonic clock, from when each revision of a key was first seen; a KV
// watch of the Deployment's slot keys makes "first seen" close to "written".
// Every write is a compare-and-set on the revision that was judged.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import type { ControllerClock } from "../common/clock.js";
import type { SlotOutcome } from "./logic/index.js";

export type SlotKv = Pick<KV, "get" | "create" | "update" | "delete" | "watch">;

export class SlotStoreError extends Error {
  override name = "SlotStoreError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`watchdog: slot store: ${message}`, options);
  }
}

export interface SlotStoreOptions {
  kv: SlotKv;
  /** A slot not rewritten for this long is free (the logic's slotTtlMs). */
  ttlMs: number;
  clock: ControllerClock;
  /** CAS retries when another writer got in between the read and the write. */
  maxAttempts?: number;
}

interface Held {
  claim: string;
  revision: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeSlot(claim: string): Uint8Array {
  return encoder.encode(JSON.stringify({ claim }));
}

/** The claim stored in a slot value, or undefined when the value is not one (treated as foreign). */
export function decodeSlot(value: Uint8Array): string | undefined {
  try {
    const v = JSON.parse(decoder.decode(value)) as unknown;
    if (typeof v === "object" && v !== null && typeof (v as { claim?: unknown }).claim === "string") {
      return (v as { claim: string }).claim;
    }
  } catch {
    // fall through
  }
  return undefined;
}

function isConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** What to do with a slot as it stands: write over `revision` (0: create), or answer right away. */
type Decision = { write: true; revision: number } | { write: false; outcome: "granted" | "denied" };

export class KvSlotStore {
  private readonly kv: SlotKv;
  private readonly ttlMs: number;
  private readonly clock: ControllerClock;
  private readonly maxAttempts: number;
  /** key -> the newest revision seen and when (monotonic) it was first seen. */
  private readonly seen = new Map<string, { revision: number; sinceMs: number }>();

  constructor(opts: SlotStoreOptions) {
    if (!(opts.ttlMs > 0)) throw new SlotStoreError(`ttlMs must be positive, got ${opts.ttlMs}`);
    this.kv = opts.kv;
    this.ttlMs = opts.ttlMs;
    this.clock = opts.clock;
    this.maxAttempts = opts.maxAttempts ?? 3;
  }

  /** Records a revision of a key (from a watch or a read); older revisions are ignored. */
  observe(key: string, revision: number): void {
    const known = this.seen.get(key);
    if (known === undefined || revision > known.revision) {
      this.seen.set(key, { revision, sinceMs: this.clock.monotonic() });
    }
  }

  /**
   * Follows writes to the keys matching `filter` (a KV key pattern) that start
   * with `prefix`, until `signal` aborts. Resolves once the watch is set up.
   */
  async follow(filter: string, prefix: string, signal: AbortSignal): Promise<void> {
    const iter = await this.kv.watch({ key: filter });
    const stop = () => iter.stop();
    if (signal.aborted) {
      stop();
      return;
    }
    signal.addEventListener("abort", stop, { once: true });
    void (async () => {
      try {
        for await (const e of iter) {
          if (e.key.startsWith(prefix)) this.observe(e.key, e.revision);
        }
      } catch {
        // A broken watch only makes expiry count from the next read.
      } finally {
        signal.removeEventListener("abort", stop);
      }
    })();
  }

  /** Take the slot for `claim` if it is free, expired, or already ours. */
  acquire(key: string, claim: string): Promise<SlotOutcome> {
    return this.cas(key, claim, (held, expired) => {
      if (held === undefined) return { write: true, revision: 0 };
      if (held.claim === claim || expired) return { write: true, revision: held.revision };
      return { write: false, outcome: "denied" };
    });
  }

  /**
   * Refreshes a slot `claim` holds, or re-creates it when absent (a write restarts
   * everyone's TTL count). Never takes a slot another claim holds, even one this
   * observer judges expired: a leader renewing a pending clone's task claim would
   * otherwise overwrite the clone that already moved the slot to its pod name.
   */
  renew(key: string, claim: string): Promise<SlotOutcome> {
    return this.cas(key, claim, (held) => {
      if (held === undefined) return { write: true, revision: 0 };
      if (held.claim === claim) return { write: true, revision: held.revision };
      return { write: false, outcome: "denied" };
    });
  }

  /**
   * Time this process could not run (the driver sees a gap between its steps
   * longer than the interval it promises) does not count toward expiry: writes
   * made meanwhile are still unread in the watch, and judging them expired would
   * take live holders' slots.
   */
  creditPause(ms: number): void {
    if (!(ms > 0)) return;
    for (const s of this.seen.values()) s.sinceMs += ms;
  }

  /** Moves the slot from `from` to `to`; also takes it when free or expired. */
  transfer(key: string, from: string, to: string): Promise<SlotOutcome> {
    return this.cas(key, to, (held, expired) => {
      if (held === undefined) return { write: true, revision: 0 };
      if (held.claim === from || held.claim === to || expired)
        return { write: true, revision: held.revision };
      return { write: false, outcome: "denied" };
    });
  }

  /** Deletes the slot if `claim` still holds it; best effort (an unreleased slot expires). */
  async release(key: string, claim: string): Promise<void> {
    try {
      const held = await this.read(key);
      if (held === undefined || held.claim !== claim) return;
      await this.kv.delete(key, { previousSeq: held.revision });
    } catch {
      // Expiry frees it.
    }
  }

  /** The newest revision of a key this store has seen (from its watch or a read); 0 when none. */
  seenRevision(key: string): number {
    return this.seen.get(key)?.revision ?? 0;
  }

  /** The claim holding a key right now, read from the store (tests and status). */
  async holder(key: string): Promise<string | undefined> {
    return (await this.read(key))?.claim;
  }

  private async read(key: string): Promise<Held | undefined> {
    const e: KvEntry | null = await this.kv.get(key);
    if (e === null) return undefined;
    this.observe(key, e.revision);
    if (e.operation !== "PUT") return undefined;
    // A value that is not ours still occupies the key: report it under a claim nobody has.
    return { claim: decodeSlot(e.value) ?? `?rev${e.revision}`, revision: e.revision };
  }

  private expired(key: string, held: Held): boolean {
    const s = this.seen.get(key);
    return (
      s !== undefined && s.revision === held.revision && this.clock.monotonic() - s.sinceMs >= this.ttlMs
    );
  }

  private async cas(
    key: string,
    claim: string,
    decide: (held: Held | undefined, expired: boolean) => Decision,
  ): Promise<SlotOutcome> {
    try {
      for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
        const held = await this.read(key);
        const d = decide(held, held !== undefined && this.expired(key, held));
        if (!d.write) return d.outcome;
        try {
          const revision =
            d.revision === 0
              ? await this.kv.create(key, encodeSlot(claim))
              : await this.kv.update(key, encodeSlot(claim), d.revision);
          this.observe(key, revision);
          return "granted";
        } catch (err) {
          if (!isConflict(err)) throw err;
          // Someone wrote in between: judge again what is there now.
        }
      }
      return "denied";
    } catch {
      return "unreachable";
    }
  }
}
