// Validation results. Causes use Kubernetes' field.ErrorType names so the API
// can hand them out unchanged as metav1.Status causes.

/** metav1.CauseType values we produce. */
export type CauseReason =
  | "FieldValueRequired"
  | "FieldValueInvalid"
  | "FieldValueNotSupported"
  | "FieldValueDuplicate"
  | "FieldValueForbidden"
  | "FieldValueNotFound"
  | "FieldValueTooLong"
  | "FieldValueTooMany"
  | "FieldValueTypeInvalid";

/**
 * One problem with one field. `field` is a Kubernetes field path
 * (`spec.template.spec.containers[0].image`, `metadata.labels[app]`); it is ""
 * only when the input as a whole has the wrong type (not an object).
 */
export interface FieldCause {
  readonly field: string;
  readonly reason: CauseReason;
  readonly message: string;
}

/** metav1.Status, as the API returns it for a refused object. */
export interface StatusFailure {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: "Invalid" | "BadRequest";
  details: { name?: string; group?: string; kind?: string; causes: FieldCause[] };
  code: 422 | 400;
}

/** Every cause found in one input, not just the first. */
export class ValidationError extends Error {
  override readonly name = "ValidationError";
  readonly causes: readonly FieldCause[];
  /** What was parsed ("Task", "BeemeshDeployment", ...). */
  readonly subject: string;
  /** True when more causes existed than MAX_CAUSES; the rest were dropped. */
  readonly truncated: boolean;

  constructor(subject: string, causes: readonly FieldCause[], truncated = false) {
    super(`protocol: invalid ${subject}: ${summarize(causes)}`);
    this.subject = subject;
    this.causes = causes;
    this.truncated = truncated;
  }

  /** The causes in metav1.StatusCause shape. */
  statusCauses(): FieldCause[] {
    return this.causes.map((c) => ({ field: c.field, reason: c.reason, message: c.message }));
  }

  /**
   * A metav1.Status for this error: 422 Invalid when the object was readable
   * but wrong, as kube-apiserver answers for a failed validation.
   */
  toStatus(target: { group?: string; kind?: string; name?: string } = {}): StatusFailure {
    const what = [target.kind, target.group].filter(Boolean).join(".");
    const label =
      target.name !== undefined ? `${what || this.subject} "${target.name}"` : what || this.subject;
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `${label} is invalid: ${summarize(this.causes)}`,
      reason: "Invalid",
      details: { ...target, causes: this.statusCauses() },
      code: 422,
    };
  }
}

export const MAX_CAUSES = 256;

function summarize(causes: readonly FieldCause[]): string {
  const shown = causes.slice(0, 5).map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  const more = causes.length > 5 ? ` (and ${causes.length - 5} more)` : "";
  return `${shown.join("; ")}${more}`;
}

export type Result<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ValidationError };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T>(error: ValidationError): Result<T> => ({ ok: false, error });

/** The value, or the ValidationError thrown: for callers that cannot go on without it. */
export function unwrap<T>(result: Result<T>): T {
  if (result.ok) return result.value;
  throw result.error;
}
