// What the API serves for one kind, read from its CustomResourceDefinition
// (names, schema, printer columns, subresources) plus the parser that
// validates it. The API code knows nothing about Beemesh's own kinds.
import type { KubeObject, ResourceRef } from "../store/index.js";

export type JsonSchema = Record<string, unknown>;

export interface FieldCause {
  field: string;
  reason: string;
  message: string;
}

export type ValidateResult = { ok: true; value: KubeObject } | { ok: false; causes: FieldCause[] };

export interface PrinterColumn {
  name: string;
  type: string;
  format?: string;
  description?: string;
  priority: number;
  jsonPath: string;
}

export interface ScaleSpec {
  specReplicasPath: string;
  statusReplicasPath: string;
  labelSelectorPath?: string;
}

export interface ResourceKind extends ResourceRef {
  readonly version: string;
  readonly kind: string;
  readonly listKind: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
  readonly categories: readonly string[];
  /** The CRD's openAPIV3Schema for this version (structural). */
  readonly schema: JsonSchema;
  readonly printerColumns: readonly PrinterColumn[];
  readonly hasStatus: boolean;
  readonly scale: ScaleSpec | undefined;
  /** Checks a whole object and returns it with defaults applied, or every cause. */
  validate(obj: unknown): ValidateResult;
  /** Server-maintained fields computed from the rest (e.g. status.selector from spec.selector). */
  derive?: (obj: KubeObject) => KubeObject;
}

export class KindDefinitionError extends Error {
  override name = "KindDefinitionError";
  constructor(message: string) {
    super(`dispatcher-api: ${message}`);
  }
}

interface CrdLike {
  spec?: {
    group?: string;
    scope?: string;
    names?: {
      kind?: string;
      listKind?: string;
      plural?: string;
      singular?: string;
      shortNames?: string[];
      categories?: string[];
    };
    versions?: {
      name?: string;
      served?: boolean;
      storage?: boolean;
      schema?: { openAPIV3Schema?: JsonSchema };
      subresources?: { status?: unknown; scale?: Partial<ScaleSpec> };
      additionalPrinterColumns?: Partial<PrinterColumn>[];
    }[];
  };
}

/** A kind as a CustomResourceDefinition (apiextensions.k8s.io/v1) describes it. */
export function kindFromCrd(
  crd: unknown,
  validate: (obj: unknown) => ValidateResult,
  opts: { version?: string; defaultColumns?: PrinterColumn[]; objectMetaSchema?: JsonSchema } = {},
): ResourceKind {
  const spec = (crd as CrdLike).spec;
  const names = spec?.names;
  if (!spec?.group || !names?.kind || !names.plural)
    throw new KindDefinitionError("CRD lacks group, kind or plural");
  if (spec.scope !== undefined && spec.scope !== "Namespaced") {
    throw new KindDefinitionError(`${names.kind}: only namespaced kinds are served`);
  }
  const version =
    spec.versions?.find((v) => (opts.version ? v.name === opts.version : v.storage)) ?? spec.versions?.[0];
  const crdSchema = version?.schema?.openAPIV3Schema;
  if (!version?.name || !crdSchema)
    throw new KindDefinitionError(`${names.kind}: CRD has no version with a schema`);
  // CRDs leave metadata to the server; the server knows ObjectMeta's fields.
  const schema: JsonSchema = opts.objectMetaSchema
    ? {
        ...crdSchema,
        properties: {
          ...((crdSchema.properties as JsonSchema | undefined) ?? {}),
          metadata: opts.objectMetaSchema,
        },
      }
    : crdSchema;
  const crdColumns = (version.additionalPrinterColumns ?? [])
    .filter((c): c is Partial<PrinterColumn> & { name: string; jsonPath: string } => !!c.name && !!c.jsonPath)
    .map((c) => ({
      name: c.name,
      type: c.type ?? "string",
      ...(c.format ? { format: c.format } : {}),
      ...(c.description ? { description: c.description } : {}),
      priority: c.priority ?? 0,
      jsonPath: c.jsonPath,
    }));
  const scale = version.subresources?.scale;
  return {
    group: spec.group,
    version: version.name,
    kind: names.kind,
    listKind: names.listKind ?? `${names.kind}List`,
    plural: names.plural,
    singular: names.singular ?? names.kind.toLowerCase(),
    shortNames: names.shortNames ?? [],
    categories: names.categories ?? [],
    schema,
    printerColumns: crdColumns.length > 0 ? crdColumns : (opts.defaultColumns ?? AGE_ONLY),
    hasStatus: version.subresources?.status !== undefined,
    scale:
      scale?.specReplicasPath && scale.statusReplicasPath
        ? {
            specReplicasPath: scale.specReplicasPath,
            statusReplicasPath: scale.statusReplicasPath,
            ...(scale.labelSelectorPath ? { labelSelectorPath: scale.labelSelectorPath } : {}),
          }
        : undefined,
    validate,
  };
}

/** What Kubernetes shows for a CRD without printer columns (after Name). */
const AGE_ONLY: PrinterColumn[] = [
  { name: "Age", type: "date", priority: 0, jsonPath: ".metadata.creationTimestamp" },
];

export function apiVersionOf(kind: ResourceKind): string {
  return `${kind.group}/${kind.version}`;
}

/** The kinds served, found by plural, kind, singular or short name. */
export class KindRegistry {
  readonly kinds: readonly ResourceKind[];
  private readonly byPlural = new Map<string, ResourceKind>();

  constructor(kinds: readonly ResourceKind[]) {
    this.kinds = kinds;
    for (const k of kinds) this.byPlural.set(`${k.group}/${k.version}/${k.plural}`, k);
  }

  byResource(group: string, version: string, plural: string): ResourceKind | undefined {
    return this.byPlural.get(`${group}/${version}/${plural}`);
  }

  byKind(apiVersion: string, kind: string): ResourceKind | undefined {
    return this.kinds.find((k) => apiVersionOf(k) === apiVersion && k.kind === kind);
  }

  groups(): { group: string; versions: string[] }[] {
    const out = new Map<string, Set<string>>();
    for (const k of this.kinds) {
      const set = out.get(k.group) ?? new Set<string>();
      set.add(k.version);
      out.set(k.group, set);
    }
    return [...out].map(([group, versions]) => ({ group, versions: [...versions] }));
  }

  inGroupVersion(group: string, version: string): ResourceKind[] {
    return this.kinds.filter((k) => k.group === group && k.version === version);
  }
}
