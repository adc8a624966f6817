// meta.k8s.io/v1 Table rendering for `kubectl get` (it asks for
// `as=Table;v=v1;g=meta.k8s.io`): a Name column, then the kind's printer
// columns evaluated by their JSONPath, dates shown as ages. Pure.
import type { KubeObject } from "../store/index.js";
import type { PrinterColumn } from "./kinds.js";
import { isPlainObject } from "./patch.js";

export type IncludeObject = "None" | "Metadata" | "Object";

export interface TableColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export interface TableRow {
  cells: unknown[];
  object?: unknown;
}

export interface Table {
  kind: "Table";
  apiVersion: "meta.k8s.io/v1";
  metadata: { resourceVersion?: string; continue?: string };
  columnDefinitions: TableColumnDefinition[];
  rows: TableRow[];
}

/**
 * The simple JSONPath subset printer columns use: `.a.b`, `.a[0].b`,
 * `.a[*].b`, `.a['dotted.key']`. Returns every match (several for `[*]`).
 */
export function evalJsonPath(obj: unknown, path: string): unknown[] {
  const tokens: (string | number | "*")[] = [];
  const re = /\.([A-Za-z0-9_$-]+)|\[(\d+|\*)\]|\[['"]([^'"]+)['"]\]/gy;
  let text = path.trim();
  if (text.startsWith("{") && text.endsWith("}")) text = text.slice(1, -1);
  let m: RegExpExecArray | null;
  let pos = 0;
  while (pos < text.length && (m = re.exec(text))) {
    pos = re.lastIndex;
    if (m[1] !== undefined) tokens.push(m[1]);
    else if (m[2] !== undefined) tokens.push(m[2] === "*" ? "*" : Number(m[2]));
    else if (m[3] !== undefined) tokens.push(m[3]);
  }
  if (pos !== text.length) return [];
  let current: unknown[] = [obj];
  for (const t of tokens) {
    const next: unknown[] = [];
    for (const v of current) {
      if (t === "*") {
        if (Array.isArray(v)) next.push(...v);
      } else if (typeof t === "number") {
        if (Array.isArray(v) && t < v.length) next.push(v[t]);
      } else if (isPlainObject(v) && v[t] !== undefined) next.push(v[t]);
    }
    current = next;
  }
  return current;
}

/** Kubernetes' duration.HumanDuration: 45s, 5m12s, 3h, 2d4h, 400d, 3y90d. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 192)
    return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  const days = Math.floor(hours / 24);
  if (days < 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (years < 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

function cell(col: PrinterColumn, obj: KubeObject, now: Date): unknown {
  const values = evalJsonPath(obj, col.jsonPath);
  if (values.length === 0) return col.type === "date" ? "<unknown>" : null;
  const first = values[0];
  if (col.type === "date" && typeof first === "string") {
    const t = Date.parse(first);
    return Number.isNaN(t) ? "<invalid>" : humanDuration(now.getTime() - t);
  }
  if (values.length > 1)
    return values.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(",");
  if (col.type === "string" && typeof first === "object" && first !== null) return JSON.stringify(first);
  return first;
}

export function columnDefinitions(columns: readonly PrinterColumn[]): TableColumnDefinition[] {
  return [
    {
      name: "Name",
      type: "string",
      format: "name",
      description: "Name must be unique within a namespace.",
      priority: 0,
    },
    ...columns.map((c) => ({
      name: c.name,
      type: c.type === "date" ? "date" : c.type,
      format: c.format ?? "",
      description: c.description ?? "",
      priority: c.priority,
    })),
  ];
}

function rowObject(obj: KubeObject, include: IncludeObject): unknown {
  if (include === "None") return undefined;
  if (include === "Object") return obj;
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: obj.metadata };
}

export function toTable(
  items: readonly KubeObject[],
  columns: readonly PrinterColumn[],
  opts: {
    now: Date;
    include: IncludeObject;
    resourceVersion?: string;
    continueToken?: string;
    noHeaders?: boolean;
  },
): Table {
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: {
      ...(opts.resourceVersion !== undefined ? { resourceVersion: opts.resourceVersion } : {}),
      ...(opts.continueToken ? { continue: opts.continueToken } : {}),
    },
    columnDefinitions: opts.noHeaders ? [] : columnDefinitions(columns),
    rows: items.map((obj) => {
      const object = rowObject(obj, opts.include);
      return {
        cells: [obj.metadata.name, ...columns.map((c) => cell(c, obj, opts.now))],
        ...(object !== undefined ? { object } : {}),
      };
    }),
  };
}
