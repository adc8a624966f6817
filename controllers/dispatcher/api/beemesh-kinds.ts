// The kinds this API serves, taken from the protocol's single schema source:
// the generated CRDs (names, structural schema, printer columns, scale paths)
// and the parsers (validation with field paths, defaults).
import {
  buildCrds,
  parseBeemeshDeployment,
  parseBeemeshStatefulSet,
  structuralSchema,
  ObjectMeta,
  selectorToString,
  type LabelSelector,
  type Result,
} from "../../../protocol/index.js";
import type { KubeObject } from "../store/index.js";
import {
  kindFromCrd,
  KindRegistry,
  type PrinterColumn,
  type ResourceKind,
  type ValidateResult,
} from "./kinds.js";

function adapt(parse: (input: unknown) => Result<unknown>): (obj: unknown) => ValidateResult {
  return (obj) => {
    const r = parse(obj);
    return r.ok ? { ok: true, value: r.value as KubeObject } : { ok: false, causes: r.error.statusCauses() };
  };
}

const IMAGES_COLUMN: PrinterColumn = {
  name: "Images",
  type: "string",
  priority: 1,
  jsonPath: ".spec.template.spec.containers[*].image",
  description: "container images",
};

const SELECTOR_COLUMN: PrinterColumn = {
  name: "Selector",
  type: "string",
  priority: 1,
  jsonPath: ".status.selector",
  description: "pods of this workload",
};

/** Shown by `kubectl get -o wide` when the CRD defines no priority-1 columns itself. */
const WIDE_COLUMNS: Record<string, PrinterColumn[]> = {
  BeemeshDeployment: [
    {
      name: "Up-to-date",
      type: "integer",
      priority: 1,
      jsonPath: ".status.updatedReplicas",
      description: "replicas of the current generation",
    },
    IMAGES_COLUMN,
    SELECTOR_COLUMN,
  ],
  BeemeshStatefulSet: [
    {
      name: "Service",
      type: "string",
      priority: 1,
      jsonPath: ".spec.serviceName",
      description: "network identity of the members",
    },
    IMAGES_COLUMN,
    SELECTOR_COLUMN,
  ],
};

const PARSERS: Record<string, (input: unknown) => Result<unknown>> = {
  BeemeshDeployment: parseBeemeshDeployment,
  BeemeshStatefulSet: parseBeemeshStatefulSet,
};

/** status.selector mirrors spec.selector, so the scale subresource and `-o wide` can show it at once. */
function deriveSelector(obj: KubeObject): KubeObject {
  const spec = obj.spec as { selector?: unknown } | undefined;
  const selector = spec?.selector;
  if (typeof selector !== "object" || selector === null || Array.isArray(selector)) return obj;
  let text: string;
  try {
    text = selectorToString(selector as LabelSelector);
  } catch {
    return obj; // a malformed selector is for validation to report
  }
  const status = (obj.status ?? {}) as Record<string, unknown>;
  if (status.selector === text) return obj;
  return { ...obj, status: { ...status, selector: text } };
}

/** The structural ObjectMeta the API walks for unknown fields and publishes in OpenAPI. */
export function objectMetaSchema(): Record<string, unknown> {
  return structuralSchema(ObjectMeta);
}

export function beemeshKinds(): ResourceKind[] {
  const meta = objectMetaSchema();
  return buildCrds().map((crd) => {
    const parse = PARSERS[crd.spec.names.kind];
    if (!parse) throw new Error(`dispatcher-api: no parser for ${crd.spec.names.kind}`);
    const kind = kindFromCrd(crd, adapt(parse), { objectMetaSchema: meta });
    const hasWide = kind.printerColumns.some((c) => c.priority > 0);
    const printerColumns = hasWide
      ? kind.printerColumns
      : [...kind.printerColumns, ...(WIDE_COLUMNS[kind.kind] ?? [])];
    return { ...kind, printerColumns, derive: deriveSelector };
  });
}

export function beemeshRegistry(): KindRegistry {
  return new KindRegistry(beemeshKinds());
}
