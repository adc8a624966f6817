// Requests one node agent answers on `<prefix>.node.<nodeId>.<verb>` (DESIGN §2)
// and its replies. RemoveRequest is a wire message of protocol/; the logs and
// status requests and the reply are this agent's own (replies travel on the
// requester's inbox, which the authorization table leaves to the requester).
import { Type, type Static } from "@sinclair/typebox";
import {
  NODE_VERBS,
  makeParser,
  parseRemoveRequest,
  subjects,
  type NodeVerb,
  type RemoveRequest,
} from "../../protocol/index.js";
import type { Received, RequestOptions } from "../../protocol/bus/index.js";

export const NODE_REPLY_TYPE = "NodeReply";
export const LOGS_REQUEST_TYPE = "LogsRequest";
export const REMOVE_REQUEST_TYPE = "RemoveRequest";
export const STATUS_REQUEST_TYPE = "StatusRequest";

/** Lines a logs reply carries per container at most; NATS payloads are capped at 1 MiB. */
export const MAX_LOG_LINES = 1000;
export const MAX_LOG_BYTES = 512 * 1024;

const Name = Type.String({ minLength: 1, maxLength: 253, pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" });

export const LogsRequest = Type.Object(
  {
    ns: Type.String({ minLength: 1, maxLength: 63, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" }),
    pod: Name,
    tail: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LOG_LINES })),
    ts: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type LogsRequest = Static<typeof LogsRequest>;

/** "Are you there?": answered by a running agent with the pods it holds. */
export const StatusRequest = Type.Object(
  { ts: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);
export type StatusRequest = Static<typeof StatusRequest>;

export const NodeReply = Type.Object(
  {
    ok: Type.Boolean(),
    node_id: Type.String({ minLength: 1, maxLength: 63 }),
    pod: Type.Optional(Name),
    /** remove: whether a pod was stopped and deleted. */
    removed: Type.Optional(Type.Boolean()),
    /** status: pods the agent holds (starting or running). */
    pods: Type.Optional(Type.Integer({ minimum: 0 })),
    error: Type.Optional(Type.String({ maxLength: 4096 })),
    logs: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ maxLength: 253 }),
            lines: Type.Array(Type.String(), { maxItems: MAX_LOG_LINES }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 64 },
      ),
    ),
    ts: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type NodeReply = Static<typeof NodeReply>;

export const parseLogsRequest = makeParser({
  name: LOGS_REQUEST_TYPE,
  schema: LogsRequest,
  rules: () => undefined,
});
export const parseStatusRequest = makeParser({
  name: STATUS_REQUEST_TYPE,
  schema: StatusRequest,
  rules: () => undefined,
});
export const parseNodeReply = makeParser({
  name: NODE_REPLY_TYPE,
  schema: NodeReply,
  rules: () => undefined,
});

export const REMOVE_SPEC = { type: REMOVE_REQUEST_TYPE, parse: parseRemoveRequest } as const;
export const LOGS_SPEC = { type: LOGS_REQUEST_TYPE, parse: parseLogsRequest } as const;
export const STATUS_SPEC = { type: STATUS_REQUEST_TYPE, parse: parseStatusRequest } as const;

/** What a requester needs of a Bus. */
export interface NodeApiRequester {
  readonly prefix: string;
  request<T>(subject: string, type: string, payload: unknown, reply: RequestOptions<T>): Promise<Received<T>>;
}

/** Only the node that was asked may answer (its SVID is /node/<nodeId>). */
const fromNode = (nodeId: string) => (reply: { principal: { kind: string; nodeId?: string } }) =>
  reply.principal.kind === "node" && reply.principal.nodeId === nodeId;

/**
 * A request on one verb: (bus, nodeId, request, timeoutMs?) resolves with the
 * reply the asked node signed (its SVID, no other's).
 */
function nodeRequest<Req>(verb: NodeVerb, type: string, defaultTimeoutMs: number) {
  return async (
    bus: NodeApiRequester,
    nodeId: string,
    req: Req,
    timeoutMs = defaultTimeoutMs,
  ): Promise<NodeReply> => {
    const r = await bus.request(subjects(bus.prefix).node(nodeId, verb), type, req, {
      type: NODE_REPLY_TYPE,
      parse: parseNodeReply,
      timeoutMs,
      authorizeReply: fromNode(nodeId),
    });
    return r.payload;
  };
}

/** Asks a node agent to remove one pod. */
export const requestRemove = nodeRequest<RemoveRequest>(NODE_VERBS.remove, REMOVE_REQUEST_TYPE, 30_000);
/** Asks a node agent for a pod's last log lines. */
export const requestLogs = nodeRequest<LogsRequest>(NODE_VERBS.logs, LOGS_REQUEST_TYPE, 10_000);
/** Asks a node agent whether it is there (the reply carries the pods it holds). */
export const requestStatus = nodeRequest<StatusRequest>(NODE_VERBS.status, STATUS_REQUEST_TYPE, 5000);
