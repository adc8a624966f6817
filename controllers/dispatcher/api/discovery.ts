// API discovery documents: the legacy lists (/api, /apis, /apis/<g>,
// /apis/<g>/<v>) and the aggregated form (apidiscovery.k8s.io/v2 and v2beta1)
// that kubectl asks for first. Pure.
import type { KindRegistry, ResourceKind } from "./kinds.js";

export const RESOURCE_VERBS = [
  "create",
  "delete",
  "deletecollection",
  "get",
  "list",
  "patch",
  "update",
  "watch",
];
export const SUBRESOURCE_VERBS = ["get", "patch", "update"];

/** What the server serves of core/v1: enough for kubectl's namespace and event lookups. */
export const CORE_RESOURCES = [
  {
    name: "namespaces",
    singularName: "namespace",
    namespaced: false,
    kind: "Namespace",
    verbs: ["get", "list"],
    shortNames: ["ns"],
  },
  {
    name: "events",
    singularName: "event",
    namespaced: true,
    kind: "Event",
    verbs: ["list"],
    shortNames: ["ev"],
  },
];

function resourceEntries(k: ResourceKind): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [
    {
      name: k.plural,
      singularName: k.singular,
      namespaced: true,
      kind: k.kind,
      verbs: RESOURCE_VERBS,
      ...(k.shortNames.length ? { shortNames: [...k.shortNames] } : {}),
      ...(k.categories.length ? { categories: [...k.categories] } : {}),
    },
  ];
  if (k.hasStatus) {
    out.push({
      name: `${k.plural}/status`,
      singularName: "",
      namespaced: true,
      kind: k.kind,
      verbs: SUBRESOURCE_VERBS,
    });
  }
  if (k.scale) {
    out.push({
      name: `${k.plural}/scale`,
      singularName: "",
      namespaced: true,
      group: "autoscaling",
      version: "v1",
      kind: "Scale",
      verbs: SUBRESOURCE_VERBS,
    });
  }
  return out;
}

export function apiResourceList(
  registry: KindRegistry,
  group: string,
  version: string,
): Record<string, unknown> {
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: `${group}/${version}`,
    resources: registry.inGroupVersion(group, version).flatMap(resourceEntries),
  };
}

export function coreResourceList(): Record<string, unknown> {
  return { kind: "APIResourceList", groupVersion: "v1", resources: CORE_RESOURCES };
}

export function apiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: "APIVersions",
    versions: ["v1"],
    serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
  };
}

function apiGroup(group: string, versions: string[]): Record<string, unknown> {
  const gvs = versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v }));
  return { name: group, versions: gvs, preferredVersion: gvs[0] };
}

export function apiGroupList(registry: KindRegistry): Record<string, unknown> {
  return {
    kind: "APIGroupList",
    apiVersion: "v1",
    groups: registry.groups().map((g) => apiGroup(g.group, g.versions)),
  };
}

export function apiGroupDoc(registry: KindRegistry, group: string): Record<string, unknown> | undefined {
  const g = registry.groups().find((x) => x.group === group);
  return g ? { kind: "APIGroup", apiVersion: "v1", ...apiGroup(g.group, g.versions) } : undefined;
}

// ------------------------------------------------------------ aggregated ---

export type AggregatedVersion = "v2" | "v2beta1";

function discoveryResource(k: ResourceKind): Record<string, unknown> {
  const subresources: Record<string, unknown>[] = [];
  if (k.hasStatus) {
    subresources.push({
      subresource: "status",
      responseKind: { group: k.group, version: k.version, kind: k.kind },
      verbs: SUBRESOURCE_VERBS,
    });
  }
  if (k.scale) {
    subresources.push({
      subresource: "scale",
      responseKind: { group: "autoscaling", version: "v1", kind: "Scale" },
      verbs: SUBRESOURCE_VERBS,
    });
  }
  return {
    resource: k.plural,
    responseKind: { group: k.group, version: k.version, kind: k.kind },
    scope: "Namespaced",
    singularResource: k.singular,
    verbs: RESOURCE_VERBS,
    ...(k.shortNames.length ? { shortNames: [...k.shortNames] } : {}),
    ...(k.categories.length ? { categories: [...k.categories] } : {}),
    ...(subresources.length ? { subresources } : {}),
  };
}

export function aggregatedApis(registry: KindRegistry, v: AggregatedVersion): Record<string, unknown> {
  return {
    kind: "APIGroupDiscoveryList",
    apiVersion: `apidiscovery.k8s.io/${v}`,
    metadata: {},
    items: registry.groups().map((g) => ({
      metadata: { name: g.group, creationTimestamp: null },
      versions: g.versions.map((version) => ({
        version,
        resources: registry.inGroupVersion(g.group, version).map(discoveryResource),
        freshness: "Current",
      })),
    })),
  };
}

export function aggregatedCore(v: AggregatedVersion): Record<string, unknown> {
  return {
    kind: "APIGroupDiscoveryList",
    apiVersion: `apidiscovery.k8s.io/${v}`,
    metadata: {},
    items: [
      {
        metadata: { name: "", creationTimestamp: null },
        versions: [
          {
            version: "v1",
            resources: CORE_RESOURCES.map((r) => ({
              resource: r.name,
              responseKind: { group: "", version: "v1", kind: r.kind },
              scope: r.namespaced ? "Namespaced" : "Cluster",
              singularResource: r.singularName,
              verbs: r.verbs,
              shortNames: r.shortNames,
            })),
            freshness: "Current",
          },
        ],
      },
    ],
  };
}

export function versionInfo(now: Date): Record<string, unknown> {
  return {
    major: "1",
    minor: "32",
    gitVersion: "v1.32.0-beemesh",
    gitCommit: "",
    gitTreeState: "clean",
    buildDate: now.toISOString().replace(/\.\d{3}Z$/, "Z"),
    goVersion: "",
    compiler: "node",
    platform: `${process.platform}/${process.arch === "x64" ? "amd64" : process.arch}`,
  };
}
