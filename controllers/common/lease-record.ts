// Task leases as they sit in the beemesh-leases bucket (DESIGN §3), shared by
// the lease-keeper (award, re-award) and the node agent (renew, adopt).
//
// The key is `task.<taskId>`, the value a Lease (JSON). The fencing token is
// the KV revision of the write that named the winner. A keeper's award cannot
// know its own revision before the write, so it stores fencing_token 0, read
// as "the revision of this entry"; the winner's renewals carry the token it was
// told, so later revisions keep pointing at the award.
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import { kvKeys, parseLease, type Lease } from "../../protocol/index.js";

export const TASK_LEASE_PREFIX = "task.";
/** Watch filter for every task lease. */
export const TASK_LEASES_FILTER = "task.>";

export interface LeaseRecord {
  lease: Lease;
  /** KV revision of this entry. */
  revision: number;
  /** Revision of the award this entry belongs to. */
  fencingToken: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const taskLeaseKey = (taskId: string): string => kvKeys.taskLease(taskId);

export function taskIdOfLeaseKey(key: string): string | undefined {
  return key.startsWith(TASK_LEASE_PREFIX) ? key.slice(TASK_LEASE_PREFIX.length) : undefined;
}

export function encodeLease(lease: Lease): Uint8Array {
  return encoder.encode(JSON.stringify(lease));
}

/** The lease in a KV entry; undefined for deletes and for values that do not parse. */
export function decodeLeaseEntry(entry: KvEntry | null): LeaseRecord | undefined {
  if (entry === null || entry.operation !== "PUT") return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(entry.value));
  } catch {
    return undefined;
  }
  const parsed = parseLease(raw);
  if (!parsed.ok) return undefined;
  const lease = parsed.value;
  return {
    lease,
    revision: entry.revision,
    fencingToken: lease.fencing_token > 0 ? lease.fencing_token : entry.revision,
  };
}

/** KV refused a create or CAS update because the key moved on. */
export function isWrongLastSequence(err: unknown): boolean {
  if (err instanceof JetStreamApiError) {
    return (
      err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      (JetStreamApiCodes as Record<string, number>)["StreamWrongLastSequenceUnknown"] === err.code
    );
  }
  return err instanceof Error && /wrong last sequence/i.test(err.message);
}

export async function readLease(kv: KV, taskId: string): Promise<LeaseRecord | undefined> {
  return decodeLeaseEntry(await kv.get(taskLeaseKey(taskId)));
}
