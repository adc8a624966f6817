// Canonical JSON: the one byte sequence a signature covers. Object keys are
// sorted by UTF-16 code units at every level, there is no whitespace, strings
// and numbers are written as JSON.stringify writes them (the same rules as RFC
// 8785 for the values we carry), and anything JSON cannot represent exactly
// is refused rather than silently changed.

export class CanonicalJsonError extends Error {
  override readonly name = "CanonicalJsonError";
}

/** Canonical JSON text of `value`; throws CanonicalJsonError for non-JSON input. */
export function canonicalJson(value: unknown): string {
  const parts: string[] = [];
  try {
    write(value, parts, new Set<object>(), "$");
  } catch (err) {
    if (err instanceof CanonicalJsonError) throw err;
    // A getter or proxy that throws, or nesting deep enough to exhaust the stack.
    throw new CanonicalJsonError(
      `protocol: value cannot be serialized: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
  return parts.join("");
}

/** Canonical JSON as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalJson(value));
}

function write(value: unknown, out: string[], ancestors: Set<object>, at: string): void {
  switch (typeof value) {
    case "string":
      out.push(JSON.stringify(value));
      return;
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "number":
      if (!Number.isFinite(value))
        throw new CanonicalJsonError(`protocol: ${at} is ${String(value)}, not a JSON number`);
      out.push(JSON.stringify(value)); // -0 is written as 0
      return;
    case "undefined":
      throw new CanonicalJsonError(`protocol: ${at} is undefined`);
    case "object":
      break;
    default:
      throw new CanonicalJsonError(`protocol: ${at} is a ${typeof value}, not a JSON value`);
  }
  if (value === null) {
    out.push("null");
    return;
  }
  if (ancestors.has(value)) throw new CanonicalJsonError(`protocol: ${at} is a circular reference`);
  ancestors.add(value);
  if (Array.isArray(value)) {
    out.push("[");
    value.forEach((item: unknown, i) => {
      if (i > 0) out.push(",");
      write(item, out, ancestors, `${at}[${i}]`);
    });
    out.push("]");
  } else {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new CanonicalJsonError(`protocol: ${at} is not a plain object`);
    }
    const record = value as Record<string, unknown>;
    // Default sort compares UTF-16 code units, as RFC 8785 requires.
    const keys = Object.keys(record).sort();
    out.push("{");
    keys.forEach((key, i) => {
      if (i > 0) out.push(",");
      out.push(JSON.stringify(key), ":");
      write(record[key], out, ancestors, `${at}.${key}`);
    });
    out.push("}");
  }
  ancestors.delete(value);
}

export interface SigningInput {
  readonly type: string;
  readonly subject: string;
  readonly payload: unknown;
  readonly nonce: string;
  readonly ts: number;
  readonly spiffe_id: string;
}

/** Domain tag inside the signed document, so these bytes are never valid for another purpose. */
export const SIGNING_CONTEXT = "beemesh/envelope/v1";

/**
 * The bytes an envelope's signature covers: canonical JSON of
 * `{ctx, nonce, payload, spiffe_id, subject, ts, type}`, UTF-8. The subject is
 * included so a signed message cannot be replayed onto another subject.
 */
export function signingBytes(input: SigningInput): Uint8Array {
  return canonicalBytes({
    ctx: SIGNING_CONTEXT,
    type: input.type,
    subject: input.subject,
    payload: input.payload,
    nonce: input.nonce,
    ts: input.ts,
    spiffe_id: input.spiffe_id,
  });
}
