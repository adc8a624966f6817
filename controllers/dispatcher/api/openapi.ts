// OpenAPI v3 documents built from the kinds' CRD schemas: one per group
// version (what `kubectl explain` reads, and where kubectl looks for the
// `fieldValidation` parameter on PATCH to choose server-side validation),
// plus a small core/v1 one. Pure.
import { cloneJson } from "../store/common.js";
import { createHash } from "node:crypto";
import type { JsonSchema, KindRegistry, ResourceKind } from "./kinds.js";

const META = "io.k8s.apimachinery.pkg.apis.meta.v1";
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** io.beemesh.v1alpha1.BeemeshDeployment: the group reversed, as Kubernetes names CRD schemas. */
export function schemaName(k: ResourceKind, kind = k.kind): string {
  return `${k.group.split(".").reverse().join(".")}.${k.version}.${kind}`;
}

function gvk(group: string, version: string, kind: string) {
  return { group, version, kind };
}

const query = (name: string, description: string, schema: JsonSchema = { type: "string" }) => ({
  name,
  in: "query",
  description,
  schema,
  uniqueItems: true,
});

const WRITE_PARAMS = [
  query("dryRun", "When present, indicates that modifications should not be persisted. Valid value: All"),
  query(
    "fieldManager",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
  ),
  query(
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values: Ignore, Warn, Strict (default for kubectl).",
  ),
];
const LIST_PARAMS = [
  query("labelSelector", "A selector to restrict the list of returned objects by their labels."),
  query(
    "fieldSelector",
    "A selector to restrict the list of returned objects by their fields (metadata.name, metadata.namespace).",
  ),
  query("limit", "limit is a maximum number of responses to return for a list call.", { type: "integer" }),
  query("continue", "The continue option should be set when retrieving more results from the server."),
  query(
    "resourceVersion",
    "resourceVersion sets a constraint on what resource versions a request may be served from.",
  ),
  query(
    "watch",
    "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
    { type: "boolean" },
  ),
  query("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type BOOKMARK.", {
    type: "boolean",
  }),
  query("timeoutSeconds", "Timeout for the list/watch call.", { type: "integer" }),
];
const PATH_PARAMS = (withName: boolean) => [
  {
    name: "namespace",
    in: "path",
    required: true,
    description: "object name and auth scope",
    schema: { type: "string" },
  },
  ...(withName
    ? [
        {
          name: "name",
          in: "path",
          required: true,
          description: "name of the resource",
          schema: { type: "string" },
        },
      ]
    : []),
];

const JSON_TYPES = ["application/json", "application/yaml"];
const PATCH_TYPES = [
  "application/json-patch+json",
  "application/merge-patch+json",
  "application/strategic-merge-patch+json",
  "application/apply-patch+yaml",
];

function body(schemaRef: object, types = JSON_TYPES) {
  return { content: Object.fromEntries(types.map((t) => [t, { schema: schemaRef }])), required: true };
}

function ok(schemaRef: object, codes: string[] = ["200"]) {
  return Object.fromEntries([
    ...codes.map((c) => [
      c,
      { description: "OK", content: Object.fromEntries(JSON_TYPES.map((t) => [t, { schema: schemaRef }])) },
    ]),
    ["401", { description: "Unauthorized" }],
  ]);
}

function op(
  k: ResourceKind,
  action: string,
  operationId: string,
  extra: Record<string, unknown>,
  kindOf = gvk(k.group, k.version, k.kind),
) {
  return {
    tags: [`${k.group.replace(/\./g, "")}_${k.version}`],
    operationId,
    ...extra,
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": kindOf,
  };
}

function paths(k: ResourceKind): Record<string, unknown> {
  const base = `/apis/${k.group}/${k.version}`;
  const one = ref(schemaName(k));
  const list = ref(schemaName(k, k.listKind));
  const scale = ref("io.k8s.api.autoscaling.v1.Scale");
  const K = k.kind;
  const out: Record<string, unknown> = {
    [`${base}/${k.plural}`]: {
      get: op(k, "list", `list${K}ForAllNamespaces`, { parameters: LIST_PARAMS, responses: ok(list) }),
    },
    [`${base}/namespaces/{namespace}/${k.plural}`]: {
      parameters: PATH_PARAMS(false),
      get: op(k, "list", `listNamespaced${K}`, { parameters: LIST_PARAMS, responses: ok(list) }),
      post: op(k, "post", `createNamespaced${K}`, {
        parameters: WRITE_PARAMS,
        requestBody: body(one),
        responses: ok(one, ["200", "201", "202"]),
      }),
      delete: op(k, "deletecollection", `deleteCollectionNamespaced${K}`, {
        parameters: LIST_PARAMS,
        responses: ok(ref(`${META}.Status`)),
      }),
    },
    [`${base}/namespaces/{namespace}/${k.plural}/{name}`]: {
      parameters: PATH_PARAMS(true),
      get: op(k, "get", `readNamespaced${K}`, { responses: ok(one) }),
      put: op(k, "put", `replaceNamespaced${K}`, {
        parameters: WRITE_PARAMS,
        requestBody: body(one),
        responses: ok(one, ["200", "201"]),
      }),
      patch: op(k, "patch", `patchNamespaced${K}`, {
        parameters: [
          ...WRITE_PARAMS,
          query("force", 'Force is going to "force" Apply requests.', { type: "boolean" }),
        ],
        requestBody: body(ref(`${META}.Patch`), PATCH_TYPES),
        responses: ok(one, ["200", "201"]),
      }),
      delete: op(k, "delete", `deleteNamespaced${K}`, {
        parameters: [query("dryRun", "When present, indicates that modifications should not be persisted.")],
        requestBody: { content: { "application/json": { schema: ref(`${META}.DeleteOptions`) } } },
        responses: ok(ref(`${META}.Status`), ["200", "202"]),
      }),
    },
  };
  if (k.hasStatus) {
    out[`${base}/namespaces/{namespace}/${k.plural}/{name}/status`] = {
      parameters: PATH_PARAMS(true),
      get: op(k, "get", `readNamespaced${K}Status`, { responses: ok(one) }),
      put: op(k, "put", `replaceNamespaced${K}Status`, {
        parameters: WRITE_PARAMS,
        requestBody: body(one),
        responses: ok(one, ["200", "201"]),
      }),
      patch: op(k, "patch", `patchNamespaced${K}Status`, {
        parameters: [
          ...WRITE_PARAMS,
          query("force", 'Force is going to "force" Apply requests.', { type: "boolean" }),
        ],
        requestBody: body(ref(`${META}.Patch`), PATCH_TYPES),
        responses: ok(one),
      }),
    };
  }
  if (k.scale) {
    const scaleKind = gvk("autoscaling", "v1", "Scale");
    out[`${base}/namespaces/{namespace}/${k.plural}/{name}/scale`] = {
      parameters: PATH_PARAMS(true),
      get: op(k, "get", `readNamespaced${K}Scale`, { responses: ok(scale) }, scaleKind),
      put: op(
        k,
        "put",
        `replaceNamespaced${K}Scale`,
        { parameters: WRITE_PARAMS, requestBody: body(scale), responses: ok(scale) },
        scaleKind,
      ),
      patch: op(
        k,
        "patch",
        `patchNamespaced${K}Scale`,
        {
          parameters: [
            ...WRITE_PARAMS,
            query("force", 'Force is going to "force" Apply requests.', { type: "boolean" }),
          ],
          requestBody: body(ref(`${META}.Patch`), PATCH_TYPES),
          responses: ok(scale),
        },
        scaleKind,
      ),
    };
  }
  return out;
}

/** The kind's CRD schema, with metadata pointing at ObjectMeta as kube-apiserver publishes it. */
function kindSchema(k: ResourceKind): JsonSchema {
  const schema = cloneJson(k.schema);
  const props = { ...((schema.properties as JsonSchema | undefined) ?? {}) };
  props.metadata = {
    description:
      "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    allOf: [ref(`${META}.ObjectMeta`)],
  };
  return {
    ...schema,
    properties: props,
    "x-kubernetes-group-version-kind": [gvk(k.group, k.version, k.kind)],
  };
}

function listSchema(k: ResourceKind): JsonSchema {
  return {
    description: `${k.listKind} is a list of ${k.kind}`,
    type: "object",
    required: ["items"],
    properties: {
      apiVersion: {
        type: "string",
        description: "APIVersion defines the versioned schema of this representation of an object.",
      },
      kind: {
        type: "string",
        description: "Kind is a string value representing the REST resource this object represents.",
      },
      items: { type: "array", description: `List of ${k.plural}.`, items: ref(schemaName(k)) },
      metadata: { description: "Standard list metadata.", allOf: [ref(`${META}.ListMeta`)] },
    },
    "x-kubernetes-group-version-kind": [gvk(k.group, k.version, k.listKind)],
  };
}

const str = (description: string) => ({ type: "string", description });
const int = (description: string) => ({ type: "integer", format: "int64", description });

/** The metav1 and autoscaling/v1 schemas the documents refer to. */
function commonSchemas(objectMeta: JsonSchema | undefined): Record<string, JsonSchema> {
  return {
    [`${META}.ObjectMeta`]: objectMeta ?? {
      description: "ObjectMeta is metadata that all persisted resources must have.",
      type: "object",
      properties: {
        name: str("Name must be unique within a namespace."),
        namespace: str("Namespace defines the space within which each name must be unique."),
        labels: {
          type: "object",
          additionalProperties: { type: "string" },
          description: "Map of string keys and values.",
        },
        annotations: {
          type: "object",
          additionalProperties: { type: "string" },
          description: "Annotations is an unstructured key value map.",
        },
        uid: str("UID is the unique in time and space value for this object."),
        resourceVersion: str("An opaque value that represents the internal version of this object."),
        generation: int("A sequence number representing a specific generation of the desired state."),
        creationTimestamp: {
          type: "string",
          format: "date-time",
          description:
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        },
      },
    },
    [`${META}.ListMeta`]: {
      description: "ListMeta describes metadata that synthetic resources must have.",
      type: "object",
      properties: {
        continue: str("continue may be set if the user set a limit on the number of items returned."),
        remainingItemCount: int("remainingItemCount is the number of subsequent items in the list."),
        resourceVersion: str("String that identifies the server's internal version of this object."),
        selfLink: str("Deprecated."),
      },
    },
    [`${META}.Status`]: {
      description: "Status is a return value for calls that don't return other objects.",
      type: "object",
      properties: {
        apiVersion: str("APIVersion defines the versioned schema of this representation of an object."),
        kind: str("Kind is a string value representing the REST resource this object represents."),
        code: {
          type: "integer",
          format: "int32",
          description: "Suggested HTTP return code for this status.",
        },
        details: {
          type: "object",
          description: "Extended data associated with the reason.",
          "x-kubernetes-preserve-unknown-fields": true,
        },
        message: str("A human-readable description of the status of this operation."),
        metadata: { description: "Standard list metadata.", allOf: [ref(`${META}.ListMeta`)] },
        reason: str("A machine-readable description of why this operation is in the Failure status."),
        status: str('Status of the operation. One of: "Success" or "Failure".'),
      },
      "x-kubernetes-group-version-kind": [gvk("", "v1", "Status")],
    },
    [`${META}.DeleteOptions`]: {
      description: "DeleteOptions may be provided when deleting an API object.",
      type: "object",
      properties: {
        apiVersion: str("APIVersion defines the versioned schema of this representation of an object."),
        kind: str("Kind is a string value representing the REST resource this object represents."),
        dryRun: {
          type: "array",
          items: { type: "string" },
          description: "When present, indicates that modifications should not be persisted.",
        },
        gracePeriodSeconds: int("The duration in seconds before the object should be deleted."),
        preconditions: {
          type: "object",
          description: "Must be fulfilled before a deletion is carried out.",
          properties: {
            resourceVersion: str("Specifies the target ResourceVersion"),
            uid: str("Specifies the target UID."),
          },
        },
        propagationPolicy: str("Whether and how garbage collection will be performed."),
      },
      "x-kubernetes-group-version-kind": [
        gvk("", "v1", "DeleteOptions"),
        gvk("meta.k8s.io", "v1", "DeleteOptions"),
      ],
    },
    [`${META}.Patch`]: {
      description: "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
      type: "object",
    },
    "io.k8s.api.autoscaling.v1.Scale": {
      description: "Scale represents a scaling request for a resource.",
      type: "object",
      properties: {
        apiVersion: str("APIVersion defines the versioned schema of this representation of an object."),
        kind: str("Kind is a string value representing the REST resource this object represents."),
        metadata: { description: "Standard object metadata.", allOf: [ref(`${META}.ObjectMeta`)] },
        spec: {
          description: "ScaleSpec describes the attributes of a scale subresource.",
          type: "object",
          properties: {
            replicas: {
              type: "integer",
              format: "int32",
              description: "desired number of instances for the scaled object.",
            },
          },
        },
        status: {
          description: "ScaleStatus represents the current status of a scale subresource.",
          type: "object",
          required: ["replicas"],
          properties: {
            replicas: {
              type: "integer",
              format: "int32",
              description: "actual number of observed instances of the scaled object.",
            },
            selector: str("label query over pods that should match the replicas count."),
          },
        },
      },
      "x-kubernetes-group-version-kind": [gvk("autoscaling", "v1", "Scale")],
    },
  };
}

export function groupVersionDocument(
  registry: KindRegistry,
  group: string,
  version: string,
  objectMeta?: JsonSchema,
): Record<string, unknown> | undefined {
  const kinds = registry.inGroupVersion(group, version);
  if (kinds.length === 0) return undefined;
  const schemas: Record<string, JsonSchema> = commonSchemas(objectMeta);
  for (const k of kinds) {
    schemas[schemaName(k)] = kindSchema(k);
    schemas[schemaName(k, k.listKind)] = listSchema(k);
  }
  return {
    openapi: "3.0.0",
    info: { title: "Beemesh", version: `${group}/${version}` },
    paths: Object.assign({}, ...kinds.map(paths)),
    components: { schemas },
  };
}

/** core/v1 as far as this server serves it (namespaces, events). */
export function coreDocument(objectMeta?: JsonSchema): Record<string, unknown> {
  const schemas = commonSchemas(objectMeta);
  schemas["io.k8s.api.core.v1.Namespace"] = {
    description:
      "Namespace provides a scope for Names. Any DNS-1123 label is a namespace here; none need creating.",
    type: "object",
    properties: {
      apiVersion: str("APIVersion defines the versioned schema of this representation of an object."),
      kind: str("Kind is a string value representing the REST resource this object represents."),
      metadata: { allOf: [ref(`${META}.ObjectMeta`)], description: "Standard object's metadata." },
      status: {
        type: "object",
        properties: { phase: str("Phase is the current lifecycle phase of the namespace.") },
      },
    },
    "x-kubernetes-group-version-kind": [gvk("", "v1", "Namespace")],
  };
  return {
    openapi: "3.0.0",
    info: { title: "Beemesh", version: "v1" },
    paths: {
      "/api/v1/namespaces/{name}": {
        get: {
          operationId: "readNamespace",
          responses: ok(ref("io.k8s.api.core.v1.Namespace")),
          "x-kubernetes-action": "get",
          "x-kubernetes-group-version-kind": gvk("", "v1", "Namespace"),
        },
      },
    },
    components: { schemas },
  };
}

export function documentHash(doc: unknown): string {
  return createHash("sha512").update(JSON.stringify(doc)).digest("hex").toUpperCase();
}
