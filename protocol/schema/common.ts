// Building blocks shared by the wire messages and the resources. Every schema
// here is plain JSON Schema (TypeBox) so the CRD generator can reuse it; the
// optional `errorMessage` keyword is ours (turned into readable causes by the
// parser, stripped by the CRD generator).
import { FormatRegistry, Type } from "@sinclair/typebox";
import type {
  IntegerOptions,
  SchemaOptions,
  Static,
  StringOptions,
  TLiteral,
  TUnion,
} from "@sinclair/typebox";

/** RFC 3339 date-time, as Kubernetes writes metav1.Time. */
export const RFC3339_PATTERN =
  "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";
const rfc3339 = new RegExp(RFC3339_PATTERN);

// TypeBox refuses unknown formats; `date-time` is the only one we use.
if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", (value) => rfc3339.test(value));

export const DNS1123_LABEL_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
export const DNS1123_SUBDOMAIN_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
export const ULID_PATTERN = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$";
export const SHA256_HEX_PATTERN = "^[0-9a-f]{64}$";
export const BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";
/** Characters NATS KV accepts in a key (tokens separated by single dots). */
export const KV_KEY_PATTERN = "^[-/_=a-zA-Z0-9]+(\\.[-/_=a-zA-Z0-9]+)*$";
export const PERCENT_PATTERN = "^(100|[1-9]?[0-9])%$";
/** A non-negative Kubernetes quantity ("500m", "128Mi", "1e3", "0.5"). */
export const QUANTITY_PATTERN =
  "^\\+?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$";

export const INT32_MAX = 2147483647;
export const INT32_MIN = -2147483648;

/** A string enum as a union of literals (the CRD generator turns it into `enum`). */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: SchemaOptions = {},
): TUnion<TLiteral<T[number]>[]> {
  return Type.Union(
    values.map((v: T[number]) => Type.Literal(v)),
    options,
  );
}

export const Dns1123Label = (options: SchemaOptions = {}) =>
  Type.String({
    minLength: 1,
    maxLength: 63,
    pattern: DNS1123_LABEL_PATTERN,
    errorMessage:
      "must be a DNS-1123 label: at most 63 lower case alphanumeric characters or '-', starting and ending with an alphanumeric character",
    ...options,
  });

export const Dns1123Subdomain = (options: SchemaOptions = {}) =>
  Type.String({
    minLength: 1,
    maxLength: 253,
    pattern: DNS1123_SUBDOMAIN_PATTERN,
    errorMessage:
      "must be a DNS-1123 subdomain: at most 253 lower case alphanumeric characters, '-' or '.', each part starting and ending with an alphanumeric character",
    ...options,
  });

export const Ulid = (options: SchemaOptions = {}) =>
  Type.String({
    minLength: 26,
    maxLength: 26,
    pattern: ULID_PATTERN,
    errorMessage: "must be a ULID: 26 characters of Crockford base32 (0-9, A-Z without I, L, O, U)",
    ...options,
  });

export const Sha256Hex = (options: SchemaOptions = {}) =>
  Type.String({
    minLength: 64,
    maxLength: 64,
    pattern: SHA256_HEX_PATTERN,
    errorMessage: "must be a sha256 digest: 64 lower case hexadecimal characters",
    ...options,
  });

export const Base64 = (maxLength: number, options: SchemaOptions = {}) =>
  Type.String({
    minLength: 4,
    maxLength,
    pattern: BASE64_PATTERN,
    errorMessage: "must be standard base64 with padding",
    ...options,
  });

export const KvKey = (options: SchemaOptions = {}) =>
  Type.String({
    minLength: 1,
    maxLength: 1024,
    pattern: KV_KEY_PATTERN,
    errorMessage: "must be a NATS KV key: tokens of [-/_=a-zA-Z0-9] separated by single dots",
    ...options,
  });

/** A random token against replays: 16 to 128 URL-safe characters. */
export const Nonce = (options: SchemaOptions = {}) =>
  Type.String({
    minLength: 16,
    maxLength: 128,
    pattern: "^[A-Za-z0-9_-]+$",
    errorMessage: "must be 16 to 128 characters of [A-Za-z0-9_-]",
    ...options,
  });

/** Milliseconds since the Unix epoch (wire messages carry time as numbers). */
export const TimestampMs = (options: SchemaOptions = {}) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, ...options });

/** A non-negative integer that stays exact in JavaScript. */
export const NonNegativeInt = (options: SchemaOptions = {}) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, format: "int64", ...options });

export const Int32 = (options: SchemaOptions = {}) =>
  Type.Integer({ minimum: INT32_MIN, maximum: INT32_MAX, format: "int32", ...options });

export const NonNegativeInt32 = (options: SchemaOptions = {}) =>
  Type.Integer({ minimum: 0, maximum: INT32_MAX, format: "int32", ...options });

export const PortNumber = (options: SchemaOptions = {}) =>
  Type.Integer({ minimum: 1, maximum: 65535, format: "int32", ...options });

export const DateTime = (options: SchemaOptions = {}) =>
  Type.String({ format: "date-time", errorMessage: "must be an RFC 3339 date-time", ...options });

/**
 * Kubernetes IntOrString (ports by number or name, percentages, quantities).
 * Constraints go on the members; the CRD generator hoists them to the node
 * because structural schemas allow only bare `type`s inside this anyOf.
 */
export const IntOrString = (
  options: SchemaOptions = {},
  members: { integer?: IntegerOptions; string?: StringOptions } = {},
) =>
  Type.Union([Type.Integer(members.integer ?? {}), Type.String(members.string ?? {})], {
    "x-kubernetes-int-or-string": true,
    ...options,
  });
export type IntOrString = number | string;

/** map[string]string (labels, annotations, node selectors, hints). */
export const StringMap = (options: SchemaOptions = {}) => Type.Record(Type.String(), Type.String(), options);
export type StringMap = Record<string, string>;

/** An object kept as given (k8s `x-kubernetes-preserve-unknown-fields`). */
export const OpenObject = (options: SchemaOptions = {}) =>
  Type.Record(Type.String(), Type.Unknown(), { "x-kubernetes-preserve-unknown-fields": true, ...options });

export const LabelSelectorOperator = StringEnum(["In", "NotIn", "Exists", "DoesNotExist"] as const);

export const LabelSelectorRequirement = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 317 }),
    operator: LabelSelectorOperator,
    values: Type.Optional(Type.Array(Type.String({ maxLength: 63 }))),
  },
  { additionalProperties: false },
);
export type LabelSelectorRequirement = Static<typeof LabelSelectorRequirement>;

/** metav1.LabelSelector: the terms are ANDed; an empty selector matches everything. */
export const LabelSelector = (options: SchemaOptions = {}) =>
  Type.Object(
    {
      matchLabels: Type.Optional(StringMap()),
      matchExpressions: Type.Optional(Type.Array(LabelSelectorRequirement)),
    },
    { additionalProperties: false, ...options },
  );
export type LabelSelector = Static<ReturnType<typeof LabelSelector>>;

export const TaintEffect = StringEnum(["NoSchedule", "PreferNoSchedule", "NoExecute"] as const);

export const Toleration = Type.Object(
  {
    key: Type.Optional(Type.String({ maxLength: 317 })),
    // Absent operator means Equal, as in Kubernetes.
    operator: Type.Optional(StringEnum(["Exists", "Equal"] as const)),
    value: Type.Optional(Type.String({ maxLength: 63 })),
    effect: Type.Optional(TaintEffect),
    tolerationSeconds: Type.Optional(Type.Integer({ format: "int64" })),
  },
  { additionalProperties: false },
);
export type Toleration = Static<typeof Toleration>;

export const Taint = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 317 }),
    value: Type.Optional(Type.String({ maxLength: 63 })),
    effect: TaintEffect,
  },
  { additionalProperties: false },
);
export type Taint = Static<typeof Taint>;
