// Task leases as they sit in the beemesh-leases bucket (DESIGN §3), shared by
// the lease-keeper (award, re-award) and the node agent (renew, adopt).
//
// The key is `task.<taskId>`, the value a Lease (JSON). The fencing token is
// the KV revision of the write that named the winner. A keeper's award cannot
// know its own revision before the write, so it stores fencing_token 0, read
// as "the revision of this entry"; the winner's renewals carry the token it was
// told, so later revisions keep pointing at the award.
//
// A batch Task (DESIGN §3.6) is placed as shares: contiguous replica ranges
// first..first+granted-1, one lease each. The share at replica 0 uses the
// task's own key (so a single-replica task is the batch of one); a share at
// `first` > 0 uses `task.<taskId>.<first>`.
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

/** The lease key of the share starting at replica `first` of a task. */
export function shareLeaseKey(taskId: string, first: number): string {
  if (!Number.isSafeInteger(first) || first < 0)
    throw new RangeError(`lease-record: share start ${first} is not a non-negative integer`);
  return first === 0 ? taskLeaseKey(taskId) : `${taskLeaseKey(taskId)}.${first}`;
}

/** Task id and share start of a task lease key; undefined for other keys. */
export function parseTaskLeaseKey(key: string): { taskId: string; first: number } | undefined {
  if (!key.startsWith(TASK_LEASE_PREFIX)) return undefined;
  const rest = key.slice(TASK_LEASE_PREFIX.length);
  const dot = rest.indexOf(".");
  if (dot < 0) return rest.length > 0 ? { taskId: rest, first: 0 } : undefined;
  const suffix = rest.slice(dot + 1);
  if (!/^[1-9][0-9]{0,8}$/.test(suffix)) return undefined;
  return { taskId: rest.slice(0, dot), first: Number(suffix) };
}

export function taskIdOfLeaseKey(key: string): string | undefined {
  return parseTaskLeaseKey(key)?.taskId;
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

export async function readLease(kv: KV, taskId: string, first = 0): Promise<LeaseRecord | undefined> {
  return decodeLeaseEntry(await kv.get(shareLeaseKey(taskId, first)));
}
