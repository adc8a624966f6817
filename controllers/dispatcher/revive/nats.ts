// The revival monitor's edges on NATS: the Deployments' dispatch records
// followed by a KV watch, and a node asked over its request subject whether
// its agent is still there.
import { Bucket, KvWatchInclude, type KV } from "@nats-io/kv";
import { NoRespondersError, RequestError, TimeoutError } from "@nats-io/transport-node";
import type { Bus } from "../../../protocol/bus/index.js";
import type { Logger } from "../../common/log.js";
import { requestStatus } from "../../scheduler-bidder/node-api.js";
import { FanoutError } from "../fanout/fanout.js";
import { decodeRecord } from "../fanout/nats.js";
import type { DispatchRecord } from "../fanout/plan.js";
import { RECORD_KEY_PREFIX } from "../fanout/ports.js";
import { delay, sourceKey } from "../fanout/source.js";
import type { NodeAnswer, NodeProber } from "./monitor.js";

export interface RecordFeedOptions {
  /** A record (undefined: deleted) by workload key; `initial`: written before this feed began to watch. */
  onRecord: (key: string, record: DispatchRecord | undefined, initial: boolean) => void;
  signal: AbortSignal;
  logger: Logger;
  /** Wait before watching again after a failure (default 1000 ms). */
  retryMs?: number;
}

/** Follows `dispatch.deployment.>` in beemesh-objects until the signal aborts. */
export async function runRecordFeed(kv: KV, opts: RecordFeedOptions): Promise<void> {
  const { signal, logger } = opts;
  if (!(kv instanceof Bucket)) throw new FanoutError("runRecordFeed needs a JetStream KV bucket");
  const bucket = kv;
  // Record keys flatten dots in names: remember which workload each key was.
  const workloadOf = new Map<string, string>();
  // Revisions up to the stream's last sequence when this feed began were written
  // before it looked (the watch's own isUpdate flag marks the last of them an update).
  let startSeq: number | undefined;
  while (!signal.aborted) {
    try {
      startSeq ??= (await bucket.jsm.streams.info(bucket.stream)).state.last_seq;
      const before = startSeq;
      const watcher = await kv.watch({
        key: `${RECORD_KEY_PREFIX}.deployment.>`,
        include: KvWatchInclude.LastValue,
      });
      const stop = () => watcher.stop();
      signal.addEventListener("abort", stop, { once: true });
      try {
        for await (const e of watcher) {
          if (e.operation !== "PUT") {
            const key = workloadOf.get(e.key);
            workloadOf.delete(e.key);
            if (key !== undefined) opts.onRecord(key, undefined, e.revision <= before);
            continue;
          }
          const record = decodeRecord(e.value);
          if (record === undefined) {
            logger.debug("revive: ignoring an unreadable dispatch record", { key: e.key });
            continue;
          }
          const key = sourceKey(record.kind, record.ns, record.name);
          workloadOf.set(e.key, key);
          opts.onRecord(key, record, e.revision <= before);
        }
      } finally {
        signal.removeEventListener("abort", stop);
      }
    } catch (err) {
      if (signal.aborted) break;
      logger.warn("revive: dispatch record watch broke", { err });
    }
    if (!signal.aborted) await delay(opts.retryMs ?? 1000, signal);
  }
}

/**
 * Asks a node agent for its status: any signed answer means the agent is
 * there. No responders (its subscriptions are gone with its connection) or no
 * answer in time means it is not.
 */
export function busNodeProber(bus: Bus, opts: { timeoutMs?: number } = {}): NodeProber {
  return {
    async probe(nodeId: string): Promise<NodeAnswer> {
      try {
        await requestStatus(bus, nodeId, { ts: Date.now() }, opts.timeoutMs ?? 2000);
        return "there";
      } catch (err) {
        return isSilence(err) ? "gone" : "unknown";
      }
    },
  };
}

function isSilence(err: unknown): boolean {
  if (err instanceof NoRespondersError || err instanceof TimeoutError) return true;
  if (err instanceof RequestError) {
    if (err.isNoResponders()) return true;
    return err.cause instanceof TimeoutError || err.cause instanceof NoRespondersError;
  }
  return false;
}
