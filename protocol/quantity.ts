// Kubernetes resource quantities ("500m", "1.5", "128Mi", "1e3") converted
// exactly (BigInt rationals) to the integers the wire carries: cpu in
// millicores, memory in bytes, both rounded up as Kubernetes rounds requests.
import { QUANTITY_PATTERN } from "./schema/common.js";

const QUANTITY = new RegExp(QUANTITY_PATTERN);

const BINARY: Record<string, bigint> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};
const DECIMAL_EXP: Record<string, number> = {
  n: -9,
  u: -6,
  m: -3,
  "": 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};

/** A quantity as numerator / denominator. */
interface Rational {
  num: bigint;
  den: bigint;
}

// Exponents beyond this cannot describe a real machine; refusing them keeps BigInt math small.
const MAX_EXPONENT = 30;

function toRational(quantity: string | number): Rational | undefined {
  const text =
    typeof quantity === "number"
      ? Number.isSafeInteger(quantity) && quantity >= 0
        ? String(quantity)
        : ""
      : quantity;
  if (!QUANTITY.test(text)) return undefined;
  const match = /^\+?([0-9]*)(?:\.([0-9]*))?(.*)$/.exec(text);
  if (!match) return undefined;
  const whole = match[1] ?? "";
  const frac = match[2] ?? "";
  const suffix = match[3] ?? "";
  let num =
    BigInt(whole === "" ? "0" : whole) * 10n ** BigInt(frac.length) + BigInt(frac === "" ? "0" : frac);
  let den = 10n ** BigInt(frac.length);
  let exp = 0;
  const binary = BINARY[suffix];
  if (binary !== undefined) {
    num *= binary;
  } else if (suffix in DECIMAL_EXP) {
    exp = DECIMAL_EXP[suffix] ?? 0;
  } else if (/^[eE]/.test(suffix)) {
    exp = Number(suffix.slice(1));
    if (!Number.isInteger(exp) || Math.abs(exp) > MAX_EXPONENT) return undefined;
  } else {
    return undefined;
  }
  if (exp >= 0) num *= 10n ** BigInt(exp);
  else den *= 10n ** BigInt(-exp);
  return { num, den };
}

function scaledCeil(quantity: string | number, scale: bigint): number | undefined {
  const r = toRational(quantity);
  if (!r) return undefined;
  const scaled = r.num * scale;
  const result = (scaled + r.den - 1n) / r.den;
  return result <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(result) : undefined;
}

export function isQuantity(quantity: string | number): boolean {
  return toRational(quantity) !== undefined;
}

/** CPU quantity in millicores, rounded up ("250m" -> 250, "1.5" -> 1500); undefined if invalid. */
export function quantityToMillis(quantity: string | number): number | undefined {
  return scaledCeil(quantity, 1000n);
}

/** Memory quantity in bytes, rounded up ("128Mi" -> 134217728); undefined if invalid. */
export function quantityToBytes(quantity: string | number): number | undefined {
  return scaledCeil(quantity, 1n);
}

/** Compares two valid quantities: negative, zero or positive; undefined if either is invalid. */
export function compareQuantities(a: string | number, b: string | number): number | undefined {
  const x = toRational(a);
  const y = toRational(b);
  if (!x || !y) return undefined;
  const diff = x.num * y.den - y.num * x.den;
  return diff < 0n ? -1 : diff > 0n ? 1 : 0;
}
