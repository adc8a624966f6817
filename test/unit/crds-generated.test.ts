// The committed CRDs are exactly what the schemas generate, are accepted by a
// validator we did not write (kubernetes-models), and are structural.
import { readFileSync } from "node:fs";
import { load } from "js-yaml";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition";
import { buildCrds, crdFileName } from "../../protocol/index.js";
import { crdToYaml } from "../../protocol/crd-yaml.js";
import type { CustomResourceDefinition as Crd } from "../../protocol/index.js";

const crdsDir = new URL("../../crds/", import.meta.url);
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** Keywords JSONSchemaProps (apiextensions v1) knows and a structural schema may use. */
const ALLOWED = new Set([
  "type",
  "description",
  "default",
  "properties",
  "required",
  "items",
  "additionalProperties",
  "enum",
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
  "anyOf",
  "nullable",
  "x-kubernetes-int-or-string",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-embedded-resource",
]);

type Node = Record<string, unknown>;

/** Problems that make a schema non-structural (Kubernetes' rules, checked independently of crd.ts). */
function structuralProblems(node: Node, at: string, out: string[] = []): string[] {
  if (Object.getOwnPropertySymbols(node).length > 0) out.push(`${at}: carries symbols (TypeBox Kind)`);
  for (const key of Object.keys(node))
    if (!ALLOWED.has(key)) out.push(`${at}: keyword ${key} is not allowed`);
  const intOrString = node["x-kubernetes-int-or-string"] === true;
  const preserve = node["x-kubernetes-preserve-unknown-fields"] === true;
  if (typeof node.type !== "string" || node.type === "") {
    if (!intOrString && !preserve) out.push(`${at}: has no type`);
  }
  if (intOrString) {
    if (node.type !== undefined) out.push(`${at}: int-or-string with a type`);
    if (
      node.anyOf !== undefined &&
      JSON.stringify(node.anyOf) !== JSON.stringify([{ type: "integer" }, { type: "string" }])
    ) {
      out.push(`${at}: int-or-string anyOf must be exactly integer|string`);
    }
  } else if (node.anyOf !== undefined) {
    out.push(`${at}: anyOf outside int-or-string`);
  }
  if (node.additionalProperties !== undefined && node.properties !== undefined) {
    out.push(`${at}: additionalProperties beside properties`);
  }
  if (node.additionalProperties === false) out.push(`${at}: additionalProperties: false`);
  if (node.type === "array" && typeof node.items !== "object") out.push(`${at}: array without items`);
  for (const [name, child] of Object.entries((node.properties as Record<string, Node> | undefined) ?? {})) {
    structuralProblems(child, `${at}.${name}`, out);
  }
  if (typeof node.items === "object" && node.items !== null)
    structuralProblems(node.items as Node, `${at}[]`, out);
  if (typeof node.additionalProperties === "object" && node.additionalProperties !== null) {
    structuralProblems(node.additionalProperties as Node, `${at}{}`, out);
  }
  return out;
}

function rootSchema(crd: Crd): Node {
  const version = crd.spec.versions[0];
  if (!version) throw new Error("CRD without versions");
  return version.schema.openAPIV3Schema;
}

describe("generated CRDs", () => {
  const built = buildCrds();

  test("there is one CRD per kind, with the agreed names", () => {
    expect(built.map((c) => c.metadata.name)).toEqual([
      "beemeshdeployments.beemesh.io",
      "beemeshstatefulsets.beemesh.io",
    ]);
    expect(built.map((c) => c.spec.names.shortNames)).toEqual([["bmd"], ["bmss"]]);
    for (const crd of built) {
      expect(crd.spec.names.categories).toEqual(["beemesh"]);
      expect(crd.spec.scope).toBe("Namespaced");
      const v = crd.spec.versions[0];
      expect(v?.name).toBe("v1alpha1");
      expect(v?.subresources).toEqual({
        status: {},
        scale: {
          specReplicasPath: ".spec.replicas",
          statusReplicasPath: ".status.replicas",
          labelSelectorPath: ".status.selector",
        },
      });
      expect(v?.additionalPrinterColumns.map((c) => [c.name, c.type, c.jsonPath])).toEqual([
        ["Desired", "integer", ".spec.replicas"],
        ["Ready", "integer", ".status.readyReplicas"],
        ["Age", "date", ".metadata.creationTimestamp"],
      ]);
      const status = (rootSchema(crd).properties as Record<string, Node>).status as Node;
      expect((status.properties as Record<string, Node>).selector).toMatchObject({ type: "string" });
    }
  });

  test.each(buildCrds().map((c) => [crdFileName(c), c] as const))("crds/%s is up to date", (file, crd) => {
    const committed = load(readFileSync(new URL(file, crdsDir), "utf8"));
    expect(committed).toEqual(plain(crd));
    // Byte equality too, so a hand edit that parses the same is still noticed.
    expect(readFileSync(new URL(file, crdsDir), "utf8")).toBe(crdToYaml(crd));
  });

  test.each(buildCrds().map((c) => [c.metadata.name, c] as const))(
    "%s passes kubernetes-models validation",
    (_name, crd) => {
      expect(() => new CustomResourceDefinition(plain(crd) as never).validate()).not.toThrow();
    },
  );

  test("kubernetes-models does refuse a broken CRD (the check above can fail)", () => {
    const broken = plain(built[0]) as unknown as {
      spec: { scope: unknown; versions: { served: unknown }[] };
    };
    broken.spec.scope = 7;
    expect(() => new CustomResourceDefinition(broken as never).validate()).toThrow();
  });

  test.each(buildCrds().map((c) => [c.metadata.name, c] as const))(
    "%s has a structural schema",
    (_name, crd) => {
      const root = rootSchema(plain(crd));
      expect(structuralProblems(root, "")).toEqual([]);
      // Root metadata may carry nothing but its type (Kubernetes owns ObjectMeta).
      expect((root.properties as Record<string, Node>).metadata).toEqual({ type: "object" });
      expect(root.type).toBe("object");
    },
  );

  test("the built objects carry no TypeBox symbols even before serialization", () => {
    for (const crd of built) expect(structuralProblems(rootSchema(crd), "")).toEqual([]);
  });

  test("the structural check finds the problems it is meant to find", () => {
    const bad: Node = {
      type: "object",
      additionalProperties: false,
      properties: {
        a: { description: "no type" },
        b: { type: "string", const: "x" },
        c: { anyOf: [{ type: "integer" }, { type: "string" }] },
        d: { type: "object", properties: {}, additionalProperties: { type: "string" } },
      },
    };
    const problems = structuralProblems(bad, "");
    expect(problems).toEqual(
      expect.arrayContaining([
        ".a: has no type",
        ".b: keyword const is not allowed",
        ".c: has no type",
        ".c: anyOf outside int-or-string",
        ".d: additionalProperties beside properties",
        ": additionalProperties: false",
      ]),
    );
  });
});
