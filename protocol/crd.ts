// apiextensions.k8s.io/v1 CustomResourceDefinitions generated from the TypeBox
// schemas, so the wire/API validation and the cluster's validation cannot
// drift. The output is a structural schema: every node has a type (or is
// int-or-string / preserve-unknown-fields), no TypeBox-only keywords, no
// patternProperties/const, and no `additionalProperties: false` (Kubernetes
// forbids it beside `properties`; closed objects are enforced there by
// pruning and by kubectl's strict field validation, and here by parse.ts).
import type { TSchema } from "@sinclair/typebox";
import { BeemeshDeployment, BeemeshStatefulSet, GROUP, VERSION } from "./schema/resources.js";

export type JSONSchemaProps = { [key: string]: unknown };

export interface CustomResourceDefinition {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: "Namespaced";
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: JSONSchemaProps };
      subresources: {
        status: Record<string, never>;
        scale: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath: string };
      };
      additionalPrinterColumns: { name: string; type: string; jsonPath: string; description?: string }[];
    }[];
  };
}

export class CrdSchemaError extends Error {
  override readonly name = "CrdSchemaError";
}

/** Keywords copied as they are (all valid in JSONSchemaProps). */
const PASSTHROUGH = [
  "description",
  "default",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "pattern",
  "format",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
] as const;

const INT_OR_STRING_HOISTED = ["minimum", "maximum", "minLength", "maxLength", "pattern"] as const;

type Node = Record<string, unknown>;

function copyKeywords(from: Node, to: Node, keys: readonly string[]): void {
  for (const k of keys) if (from[k] !== undefined) to[k] = cloneJson(from[k]);
}

// Plain literals, not structuredClone: its objects may come from another realm
// (Jest's vm), which YAML dumpers refuse as "not a plain object".
function cloneJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(cloneJson);
  if (typeof value === "object" && value !== null) {
    const out: Node = {};
    for (const [k, v] of Object.entries(value)) out[k] = cloneJson(v);
    return out;
  }
  return value;
}

function isLiteral(node: Node): boolean {
  return "const" in node;
}

/**
 * A structural JSONSchemaProps for one TypeBox schema node. `at` names the node
 * in errors ("spec.template...").
 */
export function structuralSchema(schema: TSchema, at = ""): JSONSchemaProps {
  const node = schema as unknown as Node;
  const out: Node = {};
  if (node["x-kubernetes-int-or-string"] === true) {
    const members = Array.isArray(node.anyOf) ? (node.anyOf as Node[]) : [];
    out["x-kubernetes-int-or-string"] = true;
    out.anyOf = [{ type: "integer" }, { type: "string" }];
    for (const m of members) copyKeywords(m, out, INT_OR_STRING_HOISTED);
    copyKeywords(node, out, ["description", "default"]);
    return out;
  }
  if (Array.isArray(node.anyOf)) {
    const members = node.anyOf as Node[];
    if (members.length > 0 && members.every(isLiteral) && members.every((m) => typeof m.const === "string")) {
      out.type = "string";
      out.enum = members.map((m) => m.const);
      copyKeywords(node, out, ["description", "default"]);
      return out;
    }
    throw new CrdSchemaError(
      `protocol: ${at || "<root>"}: unions other than string enums and int-or-string have no structural form`,
    );
  }
  if (isLiteral(node)) {
    out.type = typeof node.const;
    out.enum = [node.const];
    copyKeywords(node, out, ["description", "default"]);
    return out;
  }
  switch (node.type) {
    case "object": {
      out.type = "object";
      copyKeywords(node, out, PASSTHROUGH);
      const preserve = node["x-kubernetes-preserve-unknown-fields"] === true;
      const props = node.properties as Record<string, TSchema> | undefined;
      if (props) {
        const converted: Node = {};
        for (const [name, child] of Object.entries(props)) {
          converted[name] = structuralSchema(child, at ? `${at}.${name}` : name);
        }
        out.properties = converted;
        const required = Array.isArray(node.required) ? (node.required as string[]) : [];
        if (required.length > 0) out.required = [...required];
      }
      const pattern = node.patternProperties as Record<string, TSchema> | undefined;
      if (pattern && !preserve) {
        const values = Object.values(pattern);
        if (values.length !== 1 || props) {
          throw new CrdSchemaError(
            `protocol: ${at}: only single-pattern records without properties map to additionalProperties`,
          );
        }
        out.additionalProperties = structuralSchema(values[0] as TSchema, `${at}[*]`);
      }
      if (preserve) out["x-kubernetes-preserve-unknown-fields"] = true;
      return out;
    }
    case "array":
      out.type = "array";
      copyKeywords(node, out, PASSTHROUGH);
      out.items = structuralSchema(node.items as TSchema, `${at}[*]`);
      return out;
    case "string":
    case "integer":
    case "number":
    case "boolean":
      out.type = node.type;
      copyKeywords(node, out, PASSTHROUGH);
      if (Array.isArray(node.enum)) out.enum = [...(node.enum as unknown[])];
      return out;
    default:
      throw new CrdSchemaError(`protocol: ${at || "<root>"}: schema without a structural type`);
  }
}

/** The root schema of a resource: metadata is left to the API server, as Kubernetes requires. */
function resourceSchema(schema: TSchema): JSONSchemaProps {
  const root = structuralSchema(schema) as Node;
  const props = root.properties as Node;
  props.apiVersion = {
    type: "string",
    description: "APIVersion defines the versioned schema of this representation of an object.",
  };
  props.kind = {
    type: "string",
    description: "Kind is a string value representing the REST resource this object represents.",
  };
  props.metadata = { type: "object" };
  root.required = ["spec"];
  return root;
}

interface ResourceInfo {
  kind: string;
  plural: string;
  singular: string;
  shortName: string;
  schema: TSchema;
}

export const RESOURCES: readonly ResourceInfo[] = [
  {
    kind: "BeemeshDeployment",
    plural: "beemeshdeployments",
    singular: "beemeshdeployment",
    shortName: "bmd",
    schema: BeemeshDeployment,
  },
  {
    kind: "BeemeshStatefulSet",
    plural: "beemeshstatefulsets",
    singular: "beemeshstatefulset",
    shortName: "bmss",
    schema: BeemeshStatefulSet,
  },
];

export const CRD_CATEGORY = "beemesh";

function buildCrd(info: ResourceInfo): CustomResourceDefinition {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${info.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: info.kind,
        listKind: `${info.kind}List`,
        plural: info.plural,
        singular: info.singular,
        shortNames: [info.shortName],
        categories: [CRD_CATEGORY],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: resourceSchema(info.schema) },
          subresources: {
            status: {},
            scale: {
              specReplicasPath: ".spec.replicas",
              statusReplicasPath: ".status.replicas",
              labelSelectorPath: ".status.selector",
            },
          },
          additionalPrinterColumns: [
            { name: "Desired", type: "integer", jsonPath: ".spec.replicas", description: "desired replicas" },
            {
              name: "Ready",
              type: "integer",
              jsonPath: ".status.readyReplicas",
              description: "ready replicas",
            },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
        },
      ],
    },
  };
}

/** Both CRDs, BeemeshDeployment first. */
export function buildCrds(): CustomResourceDefinition[] {
  return RESOURCES.map(buildCrd);
}

/** File name under crds/, as controller-gen names them. */
export function crdFileName(crd: CustomResourceDefinition): string {
  return `${crd.spec.group}_${crd.spec.names.plural}.yaml`;
}
