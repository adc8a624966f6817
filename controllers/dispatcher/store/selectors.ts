// Kubernetes label and field selectors: parsing of the query-string syntax
// (`app=web,tier in (a,b),!canary`, `metadata.name=x`) and matching. Pure.

export class SelectorError extends Error {
  override name = "SelectorError";
  constructor(message: string) {
    super(message);
  }
}

export type LabelOperator = "=" | "!=" | "in" | "notin" | "exists" | "!" | "gt" | "lt";

export interface LabelRequirement {
  key: string;
  op: LabelOperator;
  values: string[];
}

export interface LabelSelector {
  requirements: LabelRequirement[];
}

export interface FieldRequirement {
  field: string;
  op: "=" | "!=";
  value: string;
}

export interface FieldSelector {
  requirements: FieldRequirement[];
}

const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf("/");
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (slash !== -1) {
    const prefix = key.slice(0, slash);
    if (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)) {
      return `prefix part of ${JSON.stringify(key)} must be a DNS-1123 subdomain`;
    }
  }
  if (name.length === 0 || name.length > 63 || !NAME_PART.test(name)) {
    return `name part of ${JSON.stringify(key)} must consist of at most 63 alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`;
  }
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 63 || !NAME_PART.test(value)) {
    return `label value ${JSON.stringify(value)} must be 63 characters or less, and consist of alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character`;
  }
  return undefined;
}

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === "(") depth++;
    else if (ch === ")") depth--;
    else if (ch === "," && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

function checkKey(key: string): string {
  const problem = labelKeyProblem(key);
  if (problem) throw new SelectorError(`unable to parse requirement: ${problem}`);
  return key;
}

function checkValues(values: string[]): string[] {
  for (const v of values) {
    const problem = labelValueProblem(v);
    if (problem) throw new SelectorError(`unable to parse requirement: ${problem}`);
  }
  return values;
}

function parseRequirement(raw: string): LabelRequirement {
  const text = raw.trim();
  if (text === "") throw new SelectorError("unable to parse requirement: empty requirement");
  if (text.startsWith("!")) return { key: checkKey(text.slice(1).trim()), op: "!", values: [] };
  const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(text);
  if (set) {
    const values = set[3]!.split(",").map((v) => v.trim());
    if (values.length === 1 && values[0] === "") {
      throw new SelectorError(
        `unable to parse requirement: for 'in', 'notin' operators, values set can't be empty`,
      );
    }
    return { key: checkKey(set[1]!), op: set[2] as "in" | "notin", values: checkValues(values) };
  }
  const cmp = /^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*)$/.exec(text);
  if (cmp) {
    const key = checkKey(cmp[1]!);
    const value = cmp[3]!.trim();
    const sym = cmp[2]!;
    if (sym === ">" || sym === "<") {
      if (!/^-?\d+$/.test(value)) {
        throw new SelectorError(
          `unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer`,
        );
      }
      return { key, op: sym === ">" ? "gt" : "lt", values: [value] };
    }
    return { key, op: sym === "!=" ? "!=" : "=", values: checkValues([value]) };
  }
  if (/^\S+$/.test(text)) return { key: checkKey(text), op: "exists", values: [] };
  throw new SelectorError(`unable to parse requirement: ${JSON.stringify(text)}`);
}

/** Parses a label selector string; "" selects everything. Throws SelectorError. */
export function parseLabelSelector(text: string): LabelSelector {
  if (text.trim() === "") return { requirements: [] };
  return { requirements: splitTopLevel(text).map(parseRequirement) };
}

export function matchesLabels(
  selector: LabelSelector | undefined,
  labels: Record<string, string> | undefined,
): boolean {
  if (!selector) return true;
  const l = labels ?? {};
  return selector.requirements.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case "=":
        return has && v === r.values[0];
      case "!=":
        return !has || v !== r.values[0];
      case "in":
        return has && r.values.includes(v!);
      case "notin":
        return !has || !r.values.includes(v!);
      case "exists":
        return has;
      case "!":
        return !has;
      case "gt":
      case "lt": {
        if (!has || !/^-?\d+$/.test(v!)) return false;
        const n = Number(v);
        const bound = Number(r.values[0]);
        return r.op === "gt" ? n > bound : n < bound;
      }
    }
  });
}

/** Field paths the store can select on (CRDs support these two). */
export const SELECTABLE_FIELDS = ["metadata.name", "metadata.namespace"] as const;

/** Splits on unescaped `sep`; `\` escapes `\`, `,` and `=` as in Kubernetes' field selectors. */
function splitEscaped(text: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "\\" && i + 1 < text.length) {
      cur += ch + text[i + 1];
      i++;
    } else if (ch === sep) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function unescape(text: string): string {
  return text.replace(/\\(.)/g, "$1");
}

/** Parses a field selector; only SELECTABLE_FIELDS are accepted. Throws SelectorError. */
export function parseFieldSelector(text: string): FieldSelector {
  if (text.trim() === "") return { requirements: [] };
  const requirements: FieldRequirement[] = [];
  for (const part of splitEscaped(text, ",")) {
    const m = /^(.*?)(==|!=|=)(.*)$/.exec(part);
    if (!m) throw new SelectorError(`invalid selector: '${text}'; can't understand '${part}'`);
    const field = unescape(m[1]!.trim());
    if (!(SELECTABLE_FIELDS as readonly string[]).includes(field)) {
      throw new SelectorError(
        `field label not supported: ${field} (supported: ${SELECTABLE_FIELDS.join(", ")})`,
      );
    }
    requirements.push({ field, op: m[2] === "!=" ? "!=" : "=", value: unescape(m[3]!) });
  }
  return { requirements };
}

export function matchesFields(selector: FieldSelector | undefined, fields: Record<string, string>): boolean {
  if (!selector) return true;
  return selector.requirements.every((r) =>
    r.op === "=" ? fields[r.field] === r.value : fields[r.field] !== r.value,
  );
}

/** The single namespace a field selector pins, if any (lets a list narrow its scan). */
export function pinnedValue(selector: FieldSelector | undefined, field: string): string | undefined {
  return selector?.requirements.find((r) => r.field === field && r.op === "=")?.value;
}
