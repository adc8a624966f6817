// The status's sources on NATS: a KV watch of beemesh-providers and the
// watchdogs' heartbeats (verified by the Bus: only a pod of that Deployment,
// as itself, may heartbeat on its subject). Both run until the signal aborts
// and come back after a broken watch.
import type { KV } from "@nats-io/kv";
import { KvWatchInclude } from "@nats-io/kv";
import { parseHeartbeat, parseProviderRecord } from "../../../protocol/index.js";
import type { Bus } from "../../../protocol/bus/index.js";
import type { Logger } from "../../common/log.js";
import { delay } from "../fanout/source.js";
import type { PodObservations } from "./observations.js";

export interface FeedOptions {
  obs: PodObservations;
  /** Monotonic milliseconds (performance.now in production). */
  monotonic: () => number;
  logger: Logger;
  signal: AbortSignal;
  /** Wait before watching again after a failure (default 1000 ms). */
  retryMs?: number;
}

export async function runProviderFeed(kv: KV, opts: FeedOptions): Promise<void> {
  const { obs, signal, logger } = opts;
  while (!signal.aborted) {
    try {
      const watcher = await kv.watch({ key: ">", include: KvWatchInclude.LastValue });
      const stop = () => watcher.stop();
      signal.addEventListener("abort", stop, { once: true });
      try {
        for await (const e of watcher) {
          if (e.operation !== "PUT") {
            obs.providerKeyGone(e.key);
            continue;
          }
          let raw: unknown;
          try {
            raw = JSON.parse(new TextDecoder().decode(e.value));
          } catch {
            raw = undefined;
          }
          const parsed = parseProviderRecord(raw);
          if (parsed.ok) obs.provider(parsed.value, opts.monotonic());
          else logger.debug("status: ignoring an invalid provider record", { key: e.key, err: parsed.error });
        }
      } finally {
        signal.removeEventListener("abort", stop);
      }
    } catch (err) {
      if (signal.aborted) break;
      logger.warn("status: provider watch broke", { err });
    }
    if (!signal.aborted) await delay(opts.retryMs ?? 1000, signal);
  }
}

export async function runHeartbeatFeed(bus: Bus, opts: FeedOptions): Promise<void> {
  const { obs, signal, logger } = opts;
  while (!signal.aborted) {
    const sub = bus.subscribe(`${bus.prefix}.watchdog.*.*`, { type: "Heartbeat", parse: parseHeartbeat });
    const stop = () => sub.unsubscribe();
    signal.addEventListener("abort", stop, { once: true });
    try {
      // Heartbeats travel only on Deployment subjects: StatefulSet members have no watchdog.
      for await (const r of sub) obs.heartbeat("Deployment", r.payload, opts.monotonic());
    } catch (err) {
      if (!signal.aborted) logger.warn("status: heartbeat subscription broke", { err });
    } finally {
      signal.removeEventListener("abort", stop);
    }
    if (!signal.aborted) await delay(opts.retryMs ?? 1000, signal);
  }
}
