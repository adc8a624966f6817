// The watchdog's heartbeat on the wire is the protocol Heartbeat
// (protocol/schema/messages.ts): one schema for the watchdogs that count each
// other and the dispatcher that sums them into status. This file only maps it
// to and from the replica logic's own type (logic/types.ts).
import { parseHeartbeat, type Heartbeat } from "../../protocol/index.js";
import type { MessageSpec } from "../../protocol/bus/index.js";
import type { WatchdogHeartbeat } from "./logic/index.js";

export const HEARTBEAT_TYPE = "Heartbeat";

export const HEARTBEAT_SPEC: MessageSpec<Heartbeat> = {
  type: HEARTBEAT_TYPE,
  parse: parseHeartbeat,
};

/** The wire form of a logic heartbeat; `seq` counts this sender's heartbeats. */
export function toWire(hb: WatchdogHeartbeat, seq: number, taskId?: string): Heartbeat {
  return {
    pod: hb.pod,
    node: hb.node,
    ns: hb.ns,
    parent: hb.parent,
    generation: hb.generation,
    healthy: hb.healthy,
    ready: hb.ready,
    ...(taskId !== undefined ? { task_id: taskId } : {}),
    started_at: hb.started_at,
    seq,
    ts: hb.ts,
    spec_revision: hb.spec_revision,
    template_hash: hb.template_hash,
    slot: hb.slot,
    retiring: hb.retiring,
    pending: hb.pending.map((p) => ({
      slot: p.slot,
      claim: p.claim,
      age_ms: Math.max(0, Math.round(p.age_ms)),
    })),
  };
}

export function fromWire(w: Heartbeat): WatchdogHeartbeat {
  return {
    pod: w.pod,
    node: w.node,
    ns: w.ns,
    parent: w.parent,
    generation: w.generation,
    spec_revision: w.spec_revision,
    healthy: w.healthy,
    ready: w.ready,
    ts: w.ts,
    template_hash: w.template_hash,
    started_at: w.started_at,
    slot: w.slot,
    retiring: w.retiring,
    pending: w.pending.map((p) => ({ ...p })),
  };
}
