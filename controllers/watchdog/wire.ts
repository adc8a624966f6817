// The watchdog's heartbeat on the wire: the protocol Heartbeat plus the fields
// the replica logic needs to count and hand over clone slots (logic/types.ts).
// It travels as envelope type "Heartbeat", so the bus's authorization rule for
// watchdog subjects applies unchanged. The extra fields are not yet in
// protocol/schema/messages.ts; until they are, other readers of heartbeats
// (the dispatcher's summaries) should parse with parseWatchdogHeartbeat.
import { Type, type Static } from "@sinclair/typebox";
import {
  Heartbeat,
  NonNegativeInt,
  NonNegativeInt32,
  TimestampMs,
  makeParser,
  type Parser,
} from "../../protocol/index.js";
import type { MessageSpec } from "../../protocol/bus/index.js";
import type { WatchdogHeartbeat } from "./logic/index.js";

export const HEARTBEAT_TYPE = "Heartbeat";

/** A claim on a clone slot: a task id (ULID) or a pod name. */
const Claim = () =>
  Type.String({ minLength: 1, maxLength: 253, pattern: "^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$" });

const TemplateHash = () => Type.String({ minLength: 1, maxLength: 128, pattern: "^[A-Za-z0-9_-]+$" });

export const PendingCloneWire = Type.Object(
  { slot: NonNegativeInt32(), claim: Claim(), age_ms: NonNegativeInt() },
  { additionalProperties: false },
);

export const WatchdogHeartbeatWire = Type.Object(
  {
    ...Heartbeat.properties,
    started_at: TimestampMs({ description: "the sender's start (its wall clock); the newest retire first" }),
    spec_revision: NonNegativeInt({
      description: "KV revision of the Deployment object the sender has seen",
    }),
    template_hash: TemplateHash(),
    slot: Type.Union([NonNegativeInt32(), Type.Null()]),
    retiring: Type.Boolean(),
    pending: Type.Array(PendingCloneWire, { maxItems: 1024 }),
  },
  { additionalProperties: false },
);
export type WatchdogHeartbeatWire = Static<typeof WatchdogHeartbeatWire>;

export const parseWatchdogHeartbeat: Parser<WatchdogHeartbeatWire> = makeParser({
  name: HEARTBEAT_TYPE,
  schema: WatchdogHeartbeatWire,
  rules: () => undefined,
});

export const HEARTBEAT_SPEC: MessageSpec<WatchdogHeartbeatWire> = {
  type: HEARTBEAT_TYPE,
  parse: parseWatchdogHeartbeat,
};

/** The wire form of a logic heartbeat; `seq` counts this sender's heartbeats. */
export function toWire(hb: WatchdogHeartbeat, seq: number, taskId?: string): WatchdogHeartbeatWire {
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

export function fromWire(w: WatchdogHeartbeatWire): WatchdogHeartbeat {
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
