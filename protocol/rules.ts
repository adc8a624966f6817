// Semantic rules JSON Schema cannot say (or cannot say readably). They run on
// the plain-JSON copy even when the schema already found problems, so one
// parse reports everything; every accessor therefore checks the shape it reads.
import type { CauseReason } from "./errors.js";
import type { JsonValue, PathCause, Segments } from "./json.js";
import {
  MAX_ANNOTATIONS_BYTES,
  isDns1123Label,
  labelValueProblems,
  qualifiedNameProblems,
} from "./labels.js";
import { compareQuantities, isQuantity } from "./quantity.js";
import { isEmptySelector, matchesSelector } from "./selector.js";
import type { LabelSelector } from "./schema/common.js";
import { RAFT_CONTAINER_NAME, WATCHDOG_CONTAINER_NAME } from "./schema/resources.js";
import { MAX_BATCH } from "./schema/messages.js";

type Obj = { [key: string]: JsonValue };

const isObj = (v: JsonValue | undefined): v is Obj =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: JsonValue | undefined): Obj | undefined => (isObj(v) ? v : undefined);
const arr = (v: JsonValue | undefined): JsonValue[] => (Array.isArray(v) ? v : []);
const str = (v: JsonValue | undefined): string | undefined => (typeof v === "string" ? v : undefined);
const num = (v: JsonValue | undefined): number | undefined => (typeof v === "number" ? v : undefined);
const has = (o: Obj | undefined, key: string): boolean =>
  o !== undefined && Object.prototype.hasOwnProperty.call(o, key) && o[key] !== null;

/** Collects causes under a path prefix. */
class Causes {
  readonly list: PathCause[] = [];
  add(path: Segments, reason: CauseReason, message: string): void {
    this.list.push({ path: [...path], reason, message });
  }
}

export type Rule = (value: JsonValue, out: Causes, base: Segments) => void;

// ---------------------------------------------------------------- shared ---

function stringMap(v: JsonValue | undefined): Record<string, string> | undefined {
  const o = obj(v);
  if (!o) return undefined;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(o)) if (typeof val === "string") out[k] = val;
  return out;
}

function checkLabels(v: JsonValue | undefined, path: Segments, out: Causes): void {
  const o = obj(v);
  if (!o) return;
  for (const [key, value] of Object.entries(o)) {
    for (const p of qualifiedNameProblems(key))
      out.add([...path, key], "FieldValueInvalid", `key ${JSON.stringify(key)}: ${p}`);
    if (typeof value === "string") {
      for (const p of labelValueProblems(value))
        out.add([...path, key], "FieldValueInvalid", `value ${JSON.stringify(value)}: ${p}`);
    }
  }
}

function checkAnnotations(v: JsonValue | undefined, path: Segments, out: Causes): void {
  const o = obj(v);
  if (!o) return;
  let size = 0;
  for (const [key, value] of Object.entries(o)) {
    for (const p of qualifiedNameProblems(key))
      out.add([...path, key], "FieldValueInvalid", `key ${JSON.stringify(key)}: ${p}`);
    size += key.length + (typeof value === "string" ? value.length : 0);
  }
  if (size > MAX_ANNOTATIONS_BYTES) {
    out.add(path, "FieldValueTooLong", `annotations may not exceed ${MAX_ANNOTATIONS_BYTES} bytes in total`);
  }
}

/** A selector's own syntax; returns the typed selector when it is well formed. */
function checkSelector(v: JsonValue | undefined, path: Segments, out: Causes): LabelSelector | undefined {
  const o = obj(v);
  if (!o) return undefined;
  let wellFormed = true;
  const matchLabels = obj(o.matchLabels);
  if (o.matchLabels !== undefined && !matchLabels) wellFormed = false;
  checkLabels(o.matchLabels, [...path, "matchLabels"], out);
  const expressions: NonNullable<LabelSelector["matchExpressions"]> = [];
  if (o.matchExpressions !== undefined && !Array.isArray(o.matchExpressions)) wellFormed = false;
  arr(o.matchExpressions).forEach((item, i) => {
    const at = [...path, "matchExpressions", i];
    const e = obj(item);
    const key = str(e?.key);
    const op = str(e?.operator);
    const valuesRaw = e?.values;
    const values = arr(valuesRaw).filter((x): x is string => typeof x === "string");
    if (
      !e ||
      key === undefined ||
      op === undefined ||
      (valuesRaw !== undefined && !Array.isArray(valuesRaw))
    ) {
      wellFormed = false;
      return;
    }
    for (const p of qualifiedNameProblems(key)) out.add([...at, "key"], "FieldValueInvalid", p);
    if ((op === "In" || op === "NotIn") && values.length === 0) {
      out.add(
        [...at, "values"],
        "FieldValueRequired",
        "must be specified when `operator` is 'In' or 'NotIn'",
      );
    }
    if ((op === "Exists" || op === "DoesNotExist") && values.length > 0) {
      out.add(
        [...at, "values"],
        "FieldValueForbidden",
        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
      );
    }
    values.forEach((val, j) => {
      for (const p of labelValueProblems(val)) out.add([...at, "values", j], "FieldValueInvalid", p);
    });
    if (op === "In" || op === "NotIn" || op === "Exists" || op === "DoesNotExist") {
      expressions.push({ key, operator: op, values });
    } else {
      wellFormed = false;
    }
  });
  if (!wellFormed) return undefined;
  const selector: LabelSelector = {};
  if (matchLabels) selector.matchLabels = stringMap(matchLabels) ?? {};
  if (expressions.length > 0) selector.matchExpressions = expressions;
  return selector;
}

function checkTolerations(v: JsonValue | undefined, path: Segments, out: Causes): void {
  arr(v).forEach((item, i) => {
    const t = obj(item);
    if (!t) return;
    const op = str(t.operator) ?? "Equal";
    const key = str(t.key) ?? "";
    if (key !== "")
      for (const p of qualifiedNameProblems(key)) out.add([...path, i, "key"], "FieldValueInvalid", p);
    if (key === "" && op !== "Exists") {
      out.add([...path, i, "operator"], "FieldValueInvalid", "operator must be Exists when `key` is empty");
    }
    if (op === "Exists" && (str(t.value) ?? "") !== "") {
      out.add([...path, i, "value"], "FieldValueInvalid", "value must be empty when `operator` is 'Exists'");
    }
    if (has(t, "tolerationSeconds") && str(t.effect) !== "NoExecute") {
      out.add(
        [...path, i, "tolerationSeconds"],
        "FieldValueForbidden",
        "may only be set when `effect` is 'NoExecute'",
      );
    }
  });
}

// ------------------------------------------------------------- resources ---

function checkObjectMeta(v: JsonValue | undefined, path: Segments, out: Causes): void {
  const m = obj(v);
  if (!m) return;
  if (!has(m, "name") && !has(m, "generateName")) {
    out.add([...path, "name"], "FieldValueRequired", "name or generateName is required");
  }
  checkLabels(m.labels, [...path, "labels"], out);
  checkAnnotations(m.annotations, [...path, "annotations"], out);
}

const PROBES = ["livenessProbe", "readinessProbe", "startupProbe"] as const;
const HANDLERS = ["httpGet", "tcpSocket", "exec", "grpc"] as const;

function checkContainer(
  c: Obj,
  path: Segments,
  volumes: Set<string> | undefined,
  hostNetwork: boolean,
  out: Causes,
): void {
  const image = str(c.image);
  if (image !== undefined && image.trim() !== image) {
    out.add([...path, "image"], "FieldValueInvalid", "must not have leading or trailing whitespace");
  }
  if (image !== undefined && image.trim() === "") {
    out.add([...path, "image"], "FieldValueRequired", "every container needs an image");
  }
  for (const probeName of PROBES) {
    const probe = obj(c[probeName]);
    if (!probe) continue;
    const handlers = HANDLERS.filter((h) => has(probe, h));
    if (handlers.length === 0) {
      out.add(
        [...path, probeName],
        "FieldValueRequired",
        "must specify a handler type (httpGet, tcpSocket, exec or grpc)",
      );
    } else if (handlers.length > 1) {
      out.add(
        [...path, probeName, handlers[1] ?? ""],
        "FieldValueForbidden",
        "may not specify more than 1 handler type",
      );
    }
  }
  const portNames = new Set<string>();
  arr(c.ports).forEach((item, i) => {
    const p = obj(item);
    if (!p) return;
    const name = str(p.name);
    if (name !== undefined) {
      if (portNames.has(name))
        out.add(
          [...path, "ports", i, "name"],
          "FieldValueDuplicate",
          `duplicate port name ${JSON.stringify(name)}`,
        );
      portNames.add(name);
    }
    const containerPort = num(p.containerPort);
    const hostPort = num(p.hostPort);
    if (hostNetwork && hostPort !== undefined && containerPort !== undefined && hostPort !== containerPort) {
      out.add(
        [...path, "ports", i, "hostPort"],
        "FieldValueInvalid",
        "must match `containerPort` when `hostNetwork` is true",
      );
    }
  });
  arr(c.volumeMounts).forEach((item, i) => {
    const name = str(obj(item)?.name);
    if (name !== undefined && volumes !== undefined && !volumes.has(name)) {
      out.add(
        [...path, "volumeMounts", i, "name"],
        "FieldValueNotFound",
        `no volume named ${JSON.stringify(name)}`,
      );
    }
  });
  const resources = obj(c.resources);
  const limits = obj(resources?.limits);
  const requests = obj(resources?.requests);
  for (const [which, list] of [
    ["limits", limits],
    ["requests", requests],
  ] as const) {
    for (const [name, q] of Object.entries(list ?? {})) {
      if ((typeof q === "string" || typeof q === "number") && !isQuantity(q)) {
        out.add([...path, "resources", which, name], "FieldValueInvalid", "must be a valid quantity");
      }
    }
  }
  for (const [name, q] of Object.entries(requests ?? {})) {
    const limit = limits?.[name];
    if (
      (typeof q !== "string" && typeof q !== "number") ||
      (typeof limit !== "string" && typeof limit !== "number")
    )
      continue;
    const cmp = compareQuantities(q, limit);
    if (cmp !== undefined && cmp > 0) {
      out.add(
        [...path, "resources", "requests", name],
        "FieldValueInvalid",
        `must be less than or equal to ${name} limit`,
      );
    }
  }
}

function checkPodTemplate(
  v: JsonValue | undefined,
  path: Segments,
  sidecarPort: number | undefined,
  out: Causes,
): void {
  const template = obj(v);
  if (!template) return;
  const meta = obj(template.metadata);
  if (meta) {
    checkLabels(meta.labels, [...path, "metadata", "labels"], out);
    checkAnnotations(meta.annotations, [...path, "metadata", "annotations"], out);
  }
  const spec = obj(template.spec);
  if (!spec) return;
  const specPath = [...path, "spec"];
  const volumes = new Set<string>();
  let volumesReadable = spec.volumes === undefined || Array.isArray(spec.volumes);
  arr(spec.volumes).forEach((item, i) => {
    const name = str(obj(item)?.name);
    if (name === undefined) {
      volumesReadable = false;
      return;
    }
    if (volumes.has(name))
      out.add(
        [...specPath, "volumes", i, "name"],
        "FieldValueDuplicate",
        `duplicate volume name ${JSON.stringify(name)}`,
      );
    volumes.add(name);
  });
  const hostNetwork = spec.hostNetwork === true;
  const names = new Set<string>();
  for (const list of ["initContainers", "containers"] as const) {
    arr(spec[list]).forEach((item, i) => {
      const c = obj(item);
      if (!c) return;
      const at = [...specPath, list, i];
      const name = str(c.name);
      if (name !== undefined) {
        if (names.has(name))
          out.add([...at, "name"], "FieldValueDuplicate", `duplicate container name ${JSON.stringify(name)}`);
        names.add(name);
        if (name === WATCHDOG_CONTAINER_NAME || name === RAFT_CONTAINER_NAME) {
          out.add(
            [...at, "name"],
            "FieldValueForbidden",
            `${JSON.stringify(name)} is reserved for the injected sidecar`,
          );
        }
      }
      if (!has(c, "image")) out.add([...at, "image"], "FieldValueRequired", "every container needs an image");
      checkContainer(c, at, volumesReadable ? volumes : undefined, hostNetwork, out);
      if (sidecarPort !== undefined && list === "containers") {
        arr(c.ports).forEach((p, j) => {
          if (num(obj(p)?.containerPort) === sidecarPort) {
            out.add(
              [...at, "ports", j, "containerPort"],
              "FieldValueDuplicate",
              `port ${sidecarPort} is taken by the raft sidecar`,
            );
          }
        });
      }
    });
  }
  checkLabels(spec.nodeSelector, [...specPath, "nodeSelector"], out);
  checkTolerations(spec.tolerations, [...specPath, "tolerations"], out);
}

/** Rules shared by both workload kinds; returns nothing, adds causes. */
function checkWorkload(
  value: JsonValue,
  out: Causes,
  base: Segments,
  kind: "Deployment" | "StatefulSet",
): void {
  const root = obj(value);
  if (!root) return;
  checkObjectMeta(root.metadata, [...base, "metadata"], out);
  const spec = obj(root.spec);
  if (!spec) return;
  const specPath = [...base, "spec"];
  const selector = checkSelector(spec.selector, [...specPath, "selector"], out);
  if (selector && isEmptySelector(selector)) {
    out.add([...specPath, "selector"], "FieldValueInvalid", "empty selector is invalid for a workload");
  }
  const template = obj(spec.template);
  const templateLabels = stringMap(obj(template?.metadata)?.labels);
  if (selector && !isEmptySelector(selector) && template && !matchesSelector(templateLabels, selector)) {
    out.add(
      [...specPath, "template", "metadata", "labels"],
      "FieldValueInvalid",
      "`selector` does not match template `labels`",
    );
  }
  let sidecarPort: number | undefined;
  if (kind === "StatefulSet") {
    const raft = obj(spec.raftSidecar);
    sidecarPort = num(raft?.port);
    const election = num(raft?.electionTimeoutMs);
    const heartbeat = num(raft?.heartbeatIntervalMs);
    if (election !== undefined && heartbeat !== undefined && heartbeat * 2 > election) {
      out.add(
        [...specPath, "raftSidecar", "heartbeatIntervalMs"],
        "FieldValueInvalid",
        "must be at most half of `electionTimeoutMs`, or followers start elections while the leader is alive",
      );
    }
  } else {
    const rolling = obj(obj(spec.strategy)?.rollingUpdate);
    if (rolling && isZero(rolling.maxSurge) && isZero(rolling.maxUnavailable)) {
      out.add(
        [...specPath, "strategy", "rollingUpdate", "maxUnavailable"],
        "FieldValueInvalid",
        "may not be 0 when `maxSurge` is 0",
      );
    }
  }
  checkPodTemplate(spec.template, [...specPath, "template"], sidecarPort, out);
}

const isZero = (v: JsonValue | undefined): boolean => v === 0 || v === "0%";

export const deploymentRules: Rule = (value, out, base) => checkWorkload(value, out, base, "Deployment");
export const statefulSetRules: Rule = (value, out, base) => checkWorkload(value, out, base, "StatefulSet");

export function listRules(itemRules: Rule): Rule {
  return (value, out, base) => {
    arr(obj(value)?.items).forEach((item, i) => itemRules(item, out, [...base, "items", i]));
  };
}

// -------------------------------------------------------------- messages ---

export const taskRules: Rule = (value, out, base) => {
  const t = obj(value);
  if (!t) return;
  const kind = str(t.kind);
  const hasOrdinal = has(t, "ordinal");
  const hasOrdinals = has(t, "ordinals");
  if (hasOrdinal && hasOrdinals) {
    out.add([...base, "ordinals"], "FieldValueForbidden", "may not be set together with `ordinal`");
  }
  if (kind === "StatefulSet" && !hasOrdinal && !hasOrdinals) {
    out.add(
      [...base, "ordinal"],
      "FieldValueRequired",
      "a StatefulSet task names its ordinal (or `ordinals` for a batch)",
    );
  }
  if (kind === "Deployment") {
    if (hasOrdinal)
      out.add([...base, "ordinal"], "FieldValueForbidden", "Deployment replicas have no ordinals");
    if (hasOrdinals)
      out.add([...base, "ordinals"], "FieldValueForbidden", "Deployment replicas have no ordinals");
  }
  const count = num(t.count);
  if (hasOrdinals && Array.isArray(t.ordinals) && count !== undefined && count !== t.ordinals.length) {
    out.add([...base, "count"], "FieldValueInvalid", "must equal the number of `ordinals`");
  }
  if (hasOrdinal && count !== undefined && count !== 1) {
    out.add([...base, "count"], "FieldValueInvalid", "must be 1 when `ordinal` is set");
  }
  const seen = new Set<string>();
  arr(obj(t.reqs)?.ports).forEach((item, i) => {
    const p = obj(item);
    const port = num(p?.port);
    if (port === undefined) return;
    const key = `${port}/${str(p?.protocol) ?? ""}`;
    if (seen.has(key))
      out.add([...base, "reqs", "ports", i], "FieldValueDuplicate", `port ${key} listed twice`);
    seen.add(key);
  });
  checkSelector(t.affinity, [...base, "affinity"], out);
  checkSelector(t.anti_affinity, [...base, "anti_affinity"], out);
  checkLabels(t.node_selector, [...base, "node_selector"], out);
  checkTolerations(t.tolerations, [...base, "tolerations"], out);
};

/**
 * Three kinds of bid: fits (`fit` true, no victims, offers >= 1); fits only by
 * preemption (`fit` false with the victims it would evict, offers >= 1); does
 * not fit (`fit` false, no victims, offers 0).
 */
export const bidRules: Rule = (value, out, base) => {
  const b = obj(value);
  if (!b) return;
  const offered = num(b.offered);
  const preempting = has(b, "victims");
  if (b.fit === true && preempting)
    out.add(
      [...base, "victims"],
      "FieldValueForbidden",
      "a bid that fits evicts nobody; a preempting bid has `fit` false",
    );
  if (b.fit === false && !preempting && offered !== undefined && offered !== 0)
    out.add(
      [...base, "offered"],
      "FieldValueInvalid",
      "must be 0 when `fit` is false and no victims are named",
    );
  if ((b.fit === true || preempting) && offered === 0) {
    out.add([...base, "offered"], "FieldValueInvalid", "must be at least 1 when the bid fits or preempts");
  }
};

export const leaseRules: Rule = (value, out, base) => {
  const l = obj(value);
  if (!l) return;
  const task = has(l, "task_id");
  const identity = has(l, "identity");
  if (task === identity) {
    out.add(
      [...base, task ? "identity" : "task_id"],
      task ? "FieldValueForbidden" : "FieldValueRequired",
      "exactly one of `task_id` and `identity` must be set",
    );
  }
  const winner = str(l.winner_id);
  if (task && !identity && winner !== undefined && !isDns1123Label(winner)) {
    out.add(
      [...base, "winner_id"],
      "FieldValueInvalid",
      "the winner of a task lease is a node id (a DNS-1123 label)",
    );
  }
  if (identity && has(l, "first"))
    out.add([...base, "first"], "FieldValueForbidden", "only a task lease grants a share of a batch");
  const first = num(l.first);
  const granted = num(l.granted);
  if (first !== undefined && granted !== undefined && first + granted > MAX_BATCH)
    out.add([...base, "granted"], "FieldValueInvalid", `the share ends past replica ${MAX_BATCH - 1}`);
};

const EVENTS_WITH_NODE = new Set(["leased", "deployed", "failed", "preempted", "removed"]);

export const eventRules: Rule = (value, out, base) => {
  const e = obj(value);
  if (!e) return;
  const status = str(e.status);
  if (status !== undefined && EVENTS_WITH_NODE.has(status) && !has(e, "node_id")) {
    out.add([...base, "node_id"], "FieldValueRequired", `a ${status} event names its node`);
  }
};

export const nodeStatusRules: Rule = (value, out, base) => {
  const n = obj(value);
  if (!n) return;
  checkLabels(n.labels, [...base, "labels"], out);
  const capacity = obj(n.capacity);
  const allocatable = obj(n.allocatable);
  for (const key of ["cpu_millis", "memory_bytes", "pods"]) {
    const cap = num(capacity?.[key]);
    const alloc = num(allocatable?.[key]);
    if (cap !== undefined && alloc !== undefined && alloc > cap) {
      out.add([...base, "allocatable", key], "FieldValueInvalid", "may not exceed capacity");
    }
  }
};

export const noRules: Rule = () => undefined;

/** Runs a rule; a bug in a rule becomes a cause rather than an exception. */
export function runRule(rule: Rule, value: JsonValue): PathCause[] {
  const out = new Causes();
  try {
    rule(value, out, []);
  } catch (err) {
    out.add(
      ["<internal>"],
      "FieldValueInvalid",
      `validation rule failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return out.list;
}
