// deploy/examples are valid twice over: by our parsers and by the generated
// CRD schema read with a small OpenAPI walker (the cluster's view).
import { readdirSync, readFileSync } from "node:fs";
import { load } from "js-yaml";
import { buildCrds, parseWorkload } from "../../protocol/index.js";
import type { Workload } from "../../protocol/index.js";

const examplesDir = new URL("../../deploy/examples/", import.meta.url);
const files = readdirSync(examplesDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

function readExample(file: string): unknown {
  return load(readFileSync(new URL(file, examplesDir), "utf8"));
}

type Node = Record<string, unknown>;

/** The subset of OpenAPI v3 validation a structural CRD schema uses. */
function crdProblems(schema: Node, value: unknown, at: string, out: string[] = []): string[] {
  if (schema["x-kubernetes-int-or-string"] === true) {
    if (!(Number.isInteger(value) || typeof value === "string")) out.push(`${at}: not int-or-string`);
    if (
      typeof value === "string" &&
      typeof schema.pattern === "string" &&
      !new RegExp(schema.pattern).test(value)
    ) {
      out.push(`${at}: pattern`);
    }
    return out;
  }
  const type = schema.type;
  const isObj = typeof value === "object" && value !== null && !Array.isArray(value);
  if (type === "object" && !isObj) return [...out, `${at}: not an object`];
  if (type === "array" && !Array.isArray(value)) return [...out, `${at}: not an array`];
  if (type === "string" && typeof value !== "string") return [...out, `${at}: not a string`];
  if (type === "integer" && !Number.isInteger(value)) return [...out, `${at}: not an integer`];
  if (type === "boolean" && typeof value !== "boolean") return [...out, `${at}: not a boolean`];
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) out.push(`${at}: not in enum`);
  if (typeof value === "string") {
    if (typeof schema.pattern === "string" && !new RegExp(schema.pattern).test(value))
      out.push(`${at}: pattern`);
    if (typeof schema.maxLength === "number" && value.length > schema.maxLength) out.push(`${at}: too long`);
    if (typeof schema.minLength === "number" && value.length < schema.minLength) out.push(`${at}: too short`);
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) out.push(`${at}: below minimum`);
    if (typeof schema.maximum === "number" && value > schema.maximum) out.push(`${at}: above maximum`);
  }
  if (isObj) {
    const obj = value as Record<string, unknown>;
    for (const req of (schema.required as string[] | undefined) ?? [])
      if (!(req in obj)) out.push(`${at}.${req}: required`);
    const props = schema.properties as Record<string, Node> | undefined;
    for (const [k, v] of Object.entries(obj)) {
      if (at === "" && k === "metadata") continue; // ObjectMeta is the API server's, never pruned
      const child = props?.[k] ?? (schema.additionalProperties as Node | undefined);
      if (child) crdProblems(child, v, `${at}.${k}`, out);
      else if (schema["x-kubernetes-preserve-unknown-fields"] !== true)
        out.push(`${at}.${k}: would be pruned`);
    }
  }
  if (Array.isArray(value))
    value.forEach((item, i) => crdProblems(schema.items as Node, item, `${at}[${i}]`, out));
  return out;
}

const schemas: Record<string, Node> = Object.fromEntries(
  buildCrds().map((c) => [c.spec.names.kind, c.spec.versions[0]?.schema.openAPIV3Schema as Node]),
);

describe("deploy/examples", () => {
  test("holds the three agreed examples", () => {
    expect(files).toEqual(["my-raft-cluster.yaml", "my-web-app.yaml", "web.yaml"]);
  });

  test.each(files)("%s is accepted by parseWorkload", (file) => {
    const r = parseWorkload(readExample(file));
    if (!r.ok) throw r.error;
  });

  test.each(files)("%s is valid against its generated CRD schema", (file) => {
    const doc = readExample(file) as { kind: string };
    const schema = schemas[doc.kind];
    expect(schema).toBeDefined();
    expect(crdProblems(schema as Node, doc, "")).toEqual([]);
  });

  test("the CRD walker can fail", () => {
    const doc = readExample("web.yaml") as { spec: Record<string, unknown> };
    doc.spec.replicas = -1;
    doc.spec.bogus = 1;
    expect(crdProblems(schemas.BeemeshDeployment as Node, doc, "")).toEqual([
      ".spec.replicas: below minimum",
      ".spec.bogus: would be pruned",
    ]);
  });

  test("the vision-document workloads keep their shape", () => {
    const web = parseWorkload(readExample("my-web-app.yaml"));
    const raft = parseWorkload(readExample("my-raft-cluster.yaml"));
    if (!web.ok) throw web.error;
    if (!raft.ok) throw raft.error;
    expect(web.value).toMatchObject({
      kind: "BeemeshDeployment",
      metadata: { name: "my-web-app" },
      spec: { replicas: 3 },
    });
    expect(web.value.spec.template.spec.containers[0]).toMatchObject({
      name: "main-app",
      image: "nginx:latest",
    });
    expect(raft.value).toMatchObject({
      kind: "BeemeshStatefulSet",
      metadata: { name: "my-raft-cluster" },
      spec: { replicas: 3, serviceName: "my-raft-service", raftSidecar: { port: 7000 } },
    });
  });

  test("web.yaml is the 3-replica busybox httpd on the host network", () => {
    const r = parseWorkload(readExample("web.yaml"));
    if (!r.ok) throw r.error;
    const w: Workload = r.value;
    if (w.kind !== "BeemeshDeployment") throw new Error("web.yaml must be a BeemeshDeployment");
    const spec = w.spec.template.spec;
    const httpd = spec.containers[0];
    expect(w.spec.replicas).toBe(3);
    expect(spec.hostNetwork).toBe(true);
    expect(httpd?.image).toBe("localhost/beemesh/busybox:latest");
    expect(httpd?.command?.join(" ")).toContain("busybox httpd");
    expect(httpd?.readinessProbe?.httpGet?.port).toBe(8080);
    expect(httpd?.livenessProbe?.tcpSocket?.port).toBe(8080);
    expect(w.spec.watchdogSidecar?.image).toBe("localhost/beemesh/controllers:latest");
  });
});
