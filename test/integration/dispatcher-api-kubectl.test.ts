// The stock kubectl against the dispatcher's API (DESIGN §6, §8): TLS with a
// user SVID in a generated kubeconfig, objects in the real NATS KV bucket,
// every command checked by reading the effect back, not by its exit code alone.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { issueSvid, createCa, CA_CERT_FILE, CA_KEY_FILE, type Svid } from "../../identity/ca.js";
import { exportPkcs8Pem } from "../../identity/crypto.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { KvObjectStore, type KubeObject } from "../../controllers/dispatcher/store/index.js";
import {
  startApiServer,
  ApiServerConfigError,
  type ApiServer,
} from "../../controllers/dispatcher/api/server.js";
import { beemeshRegistry, objectMetaSchema } from "../../controllers/dispatcher/api/beemesh-kinds.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { buildKubeconfig, kubeconfigForSvid, writeKubeconfig } from "../../cli/kubeconfig.js";

const KUBECTL = process.env["KUBECTL"] ?? "/usr/bin/kubectl";
// DESIGN §8: kubectl 1.32 is on these machines. Without it the kubectl blocks are skipped, saying so.
const HAVE_KUBECTL = existsSync(KUBECTL);
if (!HAVE_KUBECTL)
  process.stderr.write(`dispatcher-api-kubectl: ${KUBECTL} not found; kubectl tests skipped\n`);
const withKubectl = HAVE_KUBECTL ? describe : describe.skip;
const testKubectl = HAVE_KUBECTL ? test : test.skip;
const SDK_BIN = "/usr/lib/google-cloud-sdk/bin";
const BMD = { group: "beemesh.io", plural: "beemeshdeployments" };

let nats: NatsFixture;
let dir: string;
let store: KvObjectStore;
let store2: KvObjectStore;
let api: ApiServer;
let api2: ApiServer;
let alice: Svid;
let kubeconfig: string;
let kubeconfig2: string;
const connections: NatsConnection[] = [];
const children = new Set<ChildProcess>();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function kubectl(args: string[], opts: { bin?: string; config?: string; input?: string } = {}): Promise<Run> {
  const bin = opts.bin ?? KUBECTL;
  const full = [
    "--kubeconfig",
    opts.config ?? kubeconfig,
    "--cache-dir",
    join(dir, "cache", bin.replace(/\W/g, "_")),
    ...args,
  ];
  return new Promise((resolve) => {
    const child = execFile(
      bin,
      full,
      { timeout: 20_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === "number"
            ? (err as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

function manifest(
  name: string,
  opts: { replicas?: number | string; image?: string | null; kind?: string; extra?: string } = {},
): string {
  const image = opts.image === null ? "" : `\n        image: ${opts.image ?? "localhost/busybox:latest"}`;
  return `apiVersion: beemesh.io/v1alpha1
kind: ${opts.kind ?? "BeemeshDeployment"}
metadata:
  name: ${name}
  labels: {app: ${name.toLowerCase().replace(/[^a-z0-9-]/g, "x")}}
spec:
  replicas: ${opts.replicas ?? 2}${opts.extra ?? ""}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main${image}
        command: ["sleep", "3600"]
`;
}

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

const stored = (name: string, ns = "default") => store.get(BMD, ns, name);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "beemesh-kubectl-"));
  nats = await startNats();
  const nc1 = await nats.connectAs(await nats.issue("dispatcher"));
  const nc2 = await nats.connectAs(await nats.issue("dispatcher"));
  connections.push(nc1, nc2);
  store = await KvObjectStore.open({ nc: nc1 });
  store2 = await KvObjectStore.open({ nc: nc2 });
  const serverSvid = await issueSvid(nats.ca, {
    id: spiffeId(nats.trustDomain, "controller", "dispatcher", "api-1"),
    role: "dispatcher",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const tls = {
    certPem: serverSvid.chainPem,
    keyPem: serverSvid.keyPem,
    bundlePem: nats.ca.certPem,
    trustDomain: nats.trustDomain,
  };
  const common = { kinds: beemeshRegistry(), objectMetaSchema: objectMetaSchema(), port: 0, tls };
  api = await startApiServer({ ...common, store, logger: memoryLogger("api-1") });
  api2 = await startApiServer({ ...common, store: store2, logger: memoryLogger("api-2") });
  alice = await nats.issue("user", "user", "alice");
  kubeconfig = join(dir, "alice.kubeconfig");
  kubeconfig2 = join(dir, "alice-2.kubeconfig");
  await writeKubeconfig(kubeconfig, kubeconfigForSvid(alice, api.url));
  await writeKubeconfig(kubeconfig2, kubeconfigForSvid(alice, api2.url));
}, 30_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await api?.close();
  await api2?.close();
  for (const nc of connections) await nc.close().catch(() => undefined);
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

withKubectl("kubectl over TLS with a user SVID, objects in NATS KV", () => {
  test("apply -f creates; applying a changed field bumps the generation to 2", async () => {
    const path = await file("web.yaml", manifest("web"));
    const first = await kubectl(["apply", "-f", path]);
    expect(first).toMatchObject({ code: 0, stdout: "beemeshdeployment.beemesh.io/web created\n" });
    const created = await stored("web");
    expect(created).toMatchObject({ metadata: { generation: 1 }, spec: { replicas: 2 } });
    expect(created?.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created?.metadata.managedFields?.[0]?.manager).toBe("kubectl-client-side-apply");

    const again = await kubectl(["apply", "-f", path]);
    expect(again.stdout).toBe("beemeshdeployment.beemesh.io/web unchanged\n");
    expect((await stored("web"))?.metadata.resourceVersion).toBe(created?.metadata.resourceVersion);

    await writeFile(path, manifest("web", { replicas: 3 }));
    const changed = await kubectl(["apply", "-f", path]);
    expect(changed).toMatchObject({ code: 0, stdout: "beemeshdeployment.beemesh.io/web configured\n" });
    expect(await stored("web")).toMatchObject({ metadata: { generation: 2 }, spec: { replicas: 3 } });
  });

  test("get -o json, -o yaml and -o wide show the stored object", async () => {
    const json = await kubectl(["get", "bmd", "web", "-o", "json"]);
    expect(json.code).toBe(0);
    const obj = JSON.parse(json.stdout) as KubeObject;
    const truth = await stored("web");
    expect(obj.metadata.resourceVersion).toBe(truth?.metadata.resourceVersion);
    expect(obj.spec).toEqual(truth?.spec);

    const yaml = await kubectl(["get", "beemeshdeployment", "web", "-o", "yaml"]);
    expect(yaml.stdout).toContain("kind: BeemeshDeployment");
    expect(yaml.stdout).toContain(`uid: ${truth?.metadata.uid}`);

    const wide = await kubectl(["get", "bmd", "-o", "wide"]);
    const [header, row] = wide.stdout.trim().split("\n");
    expect(header!.split(/\s{2,}/)).toEqual([
      "NAME",
      "DESIRED",
      "READY",
      "AGE",
      "UP-TO-DATE",
      "IMAGES",
      "SELECTOR",
    ]);
    expect(row).toMatch(/^web\s+3\s+.*localhost\/busybox:latest\s+app=web$/);

    const list = await kubectl(["get", "beemesh", "-A"]);
    expect(list.stdout).toMatch(/default\s+beemeshdeployment\.beemesh\.io\/web\s+3/);
  });

  test("get -w through a second API server sees a change made through the first", async () => {
    const child = spawn(
      KUBECTL,
      ["--kubeconfig", kubeconfig2, "--cache-dir", join(dir, "cache", "w"), "get", "bmd", "-w"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    children.add(child);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => /^web\s+3\s/m.test(out), {
        timeoutMs: 10_000,
        what: "the initial row of kubectl get -w",
      });
      const patched = await kubectl([
        "patch",
        "bmd",
        "web",
        "--type",
        "merge",
        "-p",
        '{"spec":{"replicas":4}}',
      ]);
      expect(patched.code).toBe(0);
      await waitFor(() => /^web\s+4\s/m.test(out), {
        timeoutMs: 10_000,
        what: "the watched row with 4 replicas",
      });
    } finally {
      child.kill("SIGTERM");
      children.delete(child);
    }
    expect(await stored("web")).toMatchObject({ spec: { replicas: 4 } });
  });

  test("describe shows the object's fields", async () => {
    const out = await kubectl(["describe", "bmd", "web"]);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^Name:\s+web$/m);
    expect(out.stdout).toMatch(/^Kind:\s+BeemeshDeployment$/m);
    expect(out.stdout).toMatch(/Replicas:\s+4/);
  });

  test("explain beemeshdeployment.spec reads the OpenAPI v3 schema", async () => {
    const out = await kubectl(["explain", "beemeshdeployment.spec"]);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/KIND:\s+BeemeshDeployment/);
    expect(out.stdout).toMatch(/replicas\s+<integer>/);
    expect(out.stdout).toContain("desired number of pods");
    expect(out.stdout).toMatch(/template\s+<Object> -required-/);
  });

  test("scale --replicas=5 goes through the scale subresource and bumps the generation", async () => {
    const before = await stored("web");
    const out = await kubectl(["scale", "bmd", "web", "--replicas=5"]);
    expect(out).toMatchObject({ code: 0, stdout: "beemeshdeployment.beemesh.io/web scaled\n" });
    const after = await stored("web");
    expect(after?.spec).toMatchObject({ replicas: 5 });
    expect(after?.metadata.generation).toBe((before?.metadata.generation ?? 0) + 1);
  });

  test("patch --type merge changes one field; a label change keeps the generation", async () => {
    const before = await stored("web");
    const out = await kubectl([
      "patch",
      "bmd",
      "web",
      "--type",
      "merge",
      "-p",
      '{"metadata":{"labels":{"team":"a"}}}',
    ]);
    expect(out.code).toBe(0);
    const after = await stored("web");
    expect(after?.metadata.labels).toMatchObject({ team: "a" });
    expect(after?.metadata.generation).toBe(before?.metadata.generation);
    expect(after?.metadata.managedFields?.some((m) => m.manager === "kubectl-patch")).toBe(true);
  });

  test("apply --server-side creates and updates; another manager's change is a conflict unless forced", async () => {
    const path = await file("ssa.yaml", manifest("ssa", { replicas: 2 }));
    const created = await kubectl(["apply", "--server-side", "--field-manager=alice", "-f", path]);
    expect(created).toMatchObject({
      code: 0,
      stdout: "beemeshdeployment.beemesh.io/ssa serverside-applied\n",
    });
    const obj = await stored("ssa");
    expect(obj?.metadata.managedFields).toEqual([
      expect.objectContaining({ manager: "alice", operation: "Apply" }),
    ]);

    await writeFile(path, manifest("ssa", { replicas: 3 }));
    const conflict = await kubectl(["apply", "--server-side", "--field-manager=bob", "-f", path]);
    expect(conflict.code).not.toBe(0);
    expect(conflict.stderr).toContain(
      'Apply failed with 1 conflict: conflict with "alice" using beemesh.io/v1alpha1: .spec.replicas',
    );
    expect((await stored("ssa"))?.spec).toMatchObject({ replicas: 2 });

    const forced = await kubectl([
      "apply",
      "--server-side",
      "--field-manager=bob",
      "--force-conflicts",
      "-f",
      path,
    ]);
    expect(forced.code).toBe(0);
    const after = await stored("ssa");
    expect(after?.spec).toMatchObject({ replicas: 3 });
    expect(after?.metadata.generation).toBe(2);
    const bob = after?.metadata.managedFields?.find((m) => m.manager === "bob");
    expect(JSON.stringify(bob?.fieldsV1)).toContain('"f:replicas"');
    const aliceFields = after?.metadata.managedFields?.find((m) => m.manager === "alice");
    expect(JSON.stringify(aliceFields?.fieldsV1 ?? {})).not.toContain('"f:replicas"');
  });

  test("client-side, then server-side apply: kubectl moves ownership over, later changes apply cleanly", async () => {
    const path = await file("mig.yaml", manifest("mig"));
    expect((await kubectl(["apply", "-f", path])).code).toBe(0);
    const migrated = await kubectl(["apply", "--server-side", "-f", path]);
    expect(migrated).toMatchObject({
      code: 0,
      stdout: "beemeshdeployment.beemesh.io/mig serverside-applied\n",
    });
    const managers = (await stored("mig"))?.metadata.managedFields?.map((m) => `${m.manager}/${m.operation}`);
    expect(managers).toContain("kubectl/Apply");
    expect(managers).not.toContain("kubectl-client-side-apply/Update");
    await writeFile(path, manifest("mig", { replicas: 4 }));
    expect((await kubectl(["apply", "--server-side", "-f", path])).code).toBe(0);
    expect((await stored("mig"))?.spec).toMatchObject({ replicas: 4 });
  });

  test("delete removes the object and waits until it is gone", async () => {
    const out = await kubectl(["delete", "bmd", "ssa"]);
    expect(out).toMatchObject({ code: 0, stdout: 'beemeshdeployment.beemesh.io "ssa" deleted\n' });
    expect(await stored("ssa")).toBeUndefined();
    const again = await kubectl(["get", "bmd", "ssa"]);
    expect(again.stderr).toContain('beemeshdeployments.beemesh.io "ssa" not found');
  });
});

withKubectl("bad input is refused with the field named, and nothing is stored", () => {
  const refused = async (name: string, text: string, ...expected: (string | RegExp)[]) => {
    const path = await file(`${name}.yaml`, text);
    const out = await kubectl(["apply", "-f", path]);
    expect(out.code).not.toBe(0);
    for (const e of expected) expect(out.stderr).toMatch(e);
    return out;
  };

  test("an unknown kind", async () => {
    await refused(
      "kind",
      manifest("thing", { kind: "BeemeshThing" }),
      'no matches for kind "BeemeshThing" in version "beemesh.io/v1alpha1"',
    );
  });

  test("invalid replicas", async () => {
    await refused("neg", manifest("neg", { replicas: -1 }), /spec\.replicas: .*greater than or equal to 0/);
    await refused("str", manifest("str", { replicas: '"many"' }), /spec\.replicas/);
    expect(await stored("neg")).toBeUndefined();
    expect(await stored("str")).toBeUndefined();
  });

  test("a container without an image", async () => {
    await refused(
      "noimage",
      manifest("noimage", { image: null }),
      /spec\.template\.spec\.containers\[0\]\.image/,
    );
    expect(await stored("noimage")).toBeUndefined();
  });

  test("bad names and namespaces", async () => {
    await refused("badname", manifest("Web_Bad"), /metadata\.name: .*DNS-1123 subdomain/);
    const ns = await kubectl(["apply", "-n", "Bad_NS", "-f", await file("ok.yaml", manifest("ok"))]);
    expect(ns.code).not.toBe(0);
    expect(ns.stderr).toMatch(/namespace "Bad_NS" is not a DNS-1123 label|Bad_NS/);
    expect((await store.list(BMD)).items.map((o) => o.metadata.name)).not.toContain("ok");
  });

  test("an unknown field is refused under kubectl's strict validation", async () => {
    await refused(
      "typo",
      manifest("typo", { extra: "\n  replica: 3" }),
      'strict decoding error: unknown field "spec.replica"',
    );
    expect(await stored("typo")).toBeUndefined();
  });

  test("invalid YAML: kubectl refuses it, and so does the server when sent raw", async () => {
    await refused(
      "broken",
      "apiVersion: beemesh.io/v1alpha1\nkind: BeemeshDeployment\nmetadata:\n  name: x\n spec: [\n",
      /yaml/i,
    );
    const raw = await call(
      api.url,
      "POST",
      "/apis/beemesh.io/v1alpha1/namespaces/default/beemeshdeployments",
      {
        svid: alice,
        body: "kind: BeemeshDeployment\nmetadata: {name: [\n",
        contentType: "application/yaml",
      },
    );
    expect(raw.status).toBe(400);
    expect(raw.json).toMatchObject({ kind: "Status", reason: "BadRequest" });
    expect(String(raw.json?.message)).toContain("error converting YAML to JSON");
  });

  test("a body over 1 MiB is refused as too large", async () => {
    const big = manifest("big").replace(
      "  labels:",
      `  annotations: {blob: "${"x".repeat(1100 * 1024)}"}\n  labels:`,
    );
    const out = await kubectl(["create", "-f", await file("big.yaml", big)]);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain("Error from server (RequestEntityTooLarge)");
    expect(await stored("big")).toBeUndefined();
  });

  test("a stale resourceVersion is a conflict and changes nothing", async () => {
    const live = await kubectl(["get", "bmd", "web", "-o", "yaml"]);
    const path = await file("stale.yaml", live.stdout.replace(/replicas: 5/, "replicas: 9"));
    expect(live.stdout).toContain("replicas: 5");
    await kubectl(["scale", "bmd", "web", "--replicas=6"]);
    const out = await kubectl(["replace", "-f", path]);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain("Error from server (Conflict)");
    expect(out.stderr).toContain("the object has been modified");
    expect((await stored("web"))?.spec).toMatchObject({ replicas: 6 });
  });
});

interface CallResult {
  status: number;
  json: Record<string, unknown> | undefined;
}

function call(
  base: string,
  method: string,
  path: string,
  opts: { svid?: Svid; ca?: string; body?: string; contentType?: string } = {},
): Promise<CallResult> {
  const url = new URL(path, base);
  const isHttps = url.protocol === "https:";
  const doRequest = isHttps ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = doRequest(
      url,
      {
        method,
        headers: {
          accept: "application/json",
          ...(opts.contentType ? { "content-type": opts.contentType } : {}),
        },
        ...(isHttps
          ? {
              ca: opts.ca ?? nats.ca.certPem,
              ...(opts.svid ? { cert: opts.svid.certPem, key: opts.svid.keyPem } : {}),
            }
          : {}),
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => {
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

describe("who may call", () => {
  test("no client certificate: 401 Unauthorized as a Status", async () => {
    const out = await call(api.url, "GET", "/apis/beemesh.io/v1alpha1/namespaces/default/beemeshdeployments");
    expect(out.status).toBe(401);
    expect(out.json).toMatchObject({ kind: "Status", status: "Failure", reason: "Unauthorized", code: 401 });
  });

  test("a certificate from another CA: 401; a node's SVID: 403", async () => {
    const other = await createCa({ trustDomain: nats.trustDomain });
    const stranger = await issueSvid(other, {
      id: spiffeId(nats.trustDomain, "user", "alice"),
      role: "user",
    });
    const out = await call(api.url, "GET", "/version", { svid: stranger });
    expect(out).toMatchObject({ status: 401, json: { reason: "Unauthorized" } });
    const node = await nats.issue("scheduler-bidder", "node", "n1");
    const asNode = await call(api.url, "GET", "/version", { svid: node });
    expect(asNode).toMatchObject({ status: 403, json: { reason: "Forbidden" } });
  });

  testKubectl("kubectl with a stranger's kubeconfig is told it is not logged in", async () => {
    const other = await createCa({ trustDomain: nats.trustDomain });
    const stranger = await issueSvid(other, {
      id: spiffeId(nats.trustDomain, "user", "mallory"),
      role: "user",
    });
    const cfg = join(dir, "mallory.kubeconfig");
    await writeKubeconfig(
      cfg,
      buildKubeconfig({
        server: api.url,
        caPem: nats.ca.certPem,
        certPem: stranger.certPem,
        keyPem: stranger.keyPem,
      }),
    );
    const out = await kubectl(["get", "bmd"], { config: cfg });
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain("You must be logged in to the server (Unauthorized");
  });
});

withKubectl("the kubeconfig CLI", () => {
  test("issues a user SVID from the CA directory and writes a kubeconfig kubectl can use", async () => {
    const caDir = join(dir, "ca");
    await mkdir(caDir, { mode: 0o700 });
    await writeFile(join(caDir, CA_CERT_FILE), nats.ca.certPem);
    await writeFile(join(caDir, CA_KEY_FILE), await exportPkcs8Pem(nats.ca.privateKey), { mode: 0o600 });
    const out = join(dir, "carol.kubeconfig");
    const cli = await new Promise<Run>((resolve) => {
      execFile(
        process.execPath,
        [
          "--import",
          "tsx",
          "cli/kubeconfig.ts",
          "--ca-dir",
          caDir,
          "--user",
          "carol",
          "--server",
          api.url,
          "--out",
          out,
        ],
        { cwd: process.cwd(), timeout: 20_000 },
        (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
      );
    });
    expect(cli).toMatchObject({ code: 0, stderr: "" });
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const got = await kubectl(["get", "bmd", "web", "-o", "name"], { config: out });
    expect(got).toMatchObject({ code: 0, stdout: "beemeshdeployment.beemesh.io/web\n" });
  });
});

describe("the first prototype's endpoints and --dev-insecure", () => {
  test("POST /v1/deployments with a YAML body answers 202 with name, namespace and uid", async () => {
    const out = await call(api.url, "POST", "/v1/deployments", {
      svid: alice,
      body: manifest("proto").replace("apiVersion: beemesh.io/v1alpha1\nkind: BeemeshDeployment\n", ""),
      contentType: "application/json",
    });
    expect(out.status).toBe(202);
    const obj = await stored("proto");
    expect(out.json).toEqual({ name: "proto", namespace: "default", uid: obj?.metadata.uid });
    const bad = await call(api.url, "POST", "/v1/statefulsets", {
      svid: alice,
      body: manifest("p2"),
      contentType: "application/yaml",
    });
    expect(bad).toMatchObject({ status: 400, json: { reason: "BadRequest" } });
  });

  testKubectl(
    "--dev-insecure serves plain HTTP on 127.0.0.1 to kubectl, and refuses other hosts",
    async () => {
      await expect(
        startApiServer({
          store,
          kinds: beemeshRegistry(),
          port: 0,
          host: "0.0.0.0",
          devInsecure: true,
          logger: memoryLogger(),
        }),
      ).rejects.toBeInstanceOf(ApiServerConfigError);
      const dev = await startApiServer({
        store,
        kinds: beemeshRegistry(),
        objectMetaSchema: objectMetaSchema(),
        port: 0,
        devInsecure: true,
        logger: memoryLogger(),
      });
      try {
        expect(dev.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
        const cfg = join(dir, "dev.kubeconfig");
        await writeKubeconfig(cfg, buildKubeconfig({ server: dev.url }));
        const applied = await kubectl(["apply", "-f", await file("dev.yaml", manifest("dev"))], {
          config: cfg,
        });
        expect(applied).toMatchObject({ code: 0, stdout: "beemeshdeployment.beemesh.io/dev created\n" });
        expect(await stored("dev")).toMatchObject({ spec: { replicas: 2 } });
        const got = await kubectl(
          ["get", "bmd", "dev", "-o", "jsonpath={.metadata.managedFields[0].manager}"],
          { config: cfg },
        );
        expect(got.stdout).toBe("kubectl-client-side-apply");
      } finally {
        await dev.close();
      }
    },
  );
});

withKubectl("other kubectl versions", () => {
  test("apply and get work with every kubectl in the gcloud SDK", async () => {
    const bins = existsSync(SDK_BIN)
      ? (await readdir(SDK_BIN))
          .filter((f) => /^kubectl\.1\.\d+$/.test(f))
          .sort((a, b) => Number(a.split(".")[2]) - Number(b.split(".")[2]))
      : [];
    if (bins.length === 0) {
      process.stderr.write(
        `dispatcher-api-kubectl: no versioned kubectl in ${SDK_BIN}; only ${KUBECTL} was exercised\n`,
      );
      return;
    }
    const ran: string[] = [];
    await Promise.all(
      bins.map(async (b) => {
        const bin = join(SDK_BIN, b);
        const name = `v${b.slice("kubectl.".length).replace(".", "-")}`;
        const path = await file(`${name}.yaml`, manifest(name, { replicas: 1 }));
        const applied = await kubectl(["apply", "-f", path], { bin });
        expect({ bin: b, ...applied }).toMatchObject({
          code: 0,
          stdout: `beemeshdeployment.beemesh.io/${name} created\n`,
        });
        await writeFile(path, manifest(name, { replicas: 2 }));
        expect((await kubectl(["apply", "-f", path], { bin })).code).toBe(0);
        const got = await kubectl(["get", "bmd", name, "--no-headers"], { bin });
        expect(got.stdout).toMatch(new RegExp(`^${name}\\s+2\\s`));
        expect(await stored(name)).toMatchObject({ metadata: { generation: 2 }, spec: { replicas: 2 } });
        ran.push(b);
      }),
    );
    process.stderr.write(`dispatcher-api-kubectl: apply/get passed with ${ran.sort().join(", ")}\n`);
    expect(ran).toHaveLength(bins.length);
  });
});
