// metav1.Status: every refusal the API gives, as kube-apiserver words it, so
// kubectl prints the same lines ("Error from server (NotFound): ...").
import type { FieldCause } from "./kinds.js";

export type StatusReason =
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Invalid"
  | "BadRequest"
  | "RequestEntityTooLarge"
  | "UnsupportedMediaType"
  | "MethodNotAllowed"
  | "NotAcceptable"
  | "Gone"
  | "Expired"
  | "Unauthorized"
  | "Forbidden"
  | "InternalError"
  | "ServiceUnavailable"
  | "Timeout";

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: FieldCause[];
  retryAfterSeconds?: number;
}

export interface Status {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message?: string;
  reason?: StatusReason;
  details?: StatusDetails;
  code: number;
}

/** A request the API refuses; carries the Status to send. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
  }

  toStatus(): Status {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

export interface Target {
  group: string;
  /** The resource's plural, which Kubernetes puts in details.kind for these errors. */
  plural: string;
  name: string;
}

const qualified = (t: Target) => (t.group ? `${t.plural}.${t.group}` : t.plural);

export const notFound = (t: Target) =>
  new ApiError(404, "NotFound", `${qualified(t)} "${t.name}" not found`, {
    name: t.name,
    group: t.group,
    kind: t.plural,
  });

export const alreadyExists = (t: Target) =>
  new ApiError(409, "AlreadyExists", `${qualified(t)} "${t.name}" already exists`, {
    name: t.name,
    group: t.group,
    kind: t.plural,
  });

export const conflict = (
  t: Target,
  why = "the object has been modified; please apply your changes to the latest version and try again",
) =>
  new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${qualified(t)} "${t.name}": ${why}`, {
    name: t.name,
    group: t.group,
    kind: t.plural,
  });

/** 422 with every cause, worded like field.ErrorList.ToAggregate(). */
export function invalid(
  target: { group: string; kind: string; name: string },
  causes: FieldCause[],
): ApiError {
  const shown = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  const list = shown.length === 1 ? shown[0]! : `[${shown.join(", ")}]`;
  return new ApiError(422, "Invalid", `${target.kind}.${target.group} "${target.name}" is invalid: ${list}`, {
    name: target.name,
    group: target.group,
    kind: target.kind,
    causes,
  });
}

export const badRequest = (message: string, causes?: FieldCause[]) =>
  new ApiError(400, "BadRequest", message, causes ? { causes } : undefined);

export const tooLarge = (limit: number) =>
  new ApiError(413, "RequestEntityTooLarge", `Request entity too large: limit is ${limit}`);

export const unsupportedMediaType = (got: string, accepted: readonly string[]) =>
  new ApiError(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format (${got || "none"}) - accepted media types include: ${accepted.join(", ")}`,
  );

export const methodNotAllowed = (method: string, path: string) =>
  new ApiError(
    405,
    "MethodNotAllowed",
    `the server does not allow this method on the requested resource (${method} ${path})`,
  );

export const notAcceptable = (accepted: readonly string[]) =>
  new ApiError(406, "NotAcceptable", `only the following media types are accepted: ${accepted.join(", ")}`);

export const expired = (message: string) => new ApiError(410, "Expired", message);

export const unauthorized = (why: string) => new ApiError(401, "Unauthorized", `Unauthorized: ${why}`);

export const forbidden = (message: string) => new ApiError(403, "Forbidden", message);

export const pathNotFound = (path: string) =>
  new ApiError(404, "NotFound", `the server could not find the requested resource (${path})`);

export const internalError = (message: string) =>
  new ApiError(500, "InternalError", `Internal error occurred: ${message}`);

export const unavailable = (message: string) => new ApiError(503, "ServiceUnavailable", message);

export function successStatus(details?: StatusDetails): Status {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    ...(details ? { details } : {}),
    code: 200,
  };
}
