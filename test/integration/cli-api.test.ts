// beemeshctl against the dispatcher's real API server (HTTPS, SVID client
// certificates, in-memory store): apply, get, delete, and rollout status
// following status updates the test writes.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, issueSvid, type CertificateAuthority } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { MemoryObjectStore } from "../../controllers/dispatcher/store/index.js";
import { startApiServer, type ApiServer } from "../../controllers/dispatcher/api/server.js";
import { beemeshRegistry, objectMetaSchema } from "../../controllers/dispatcher/api/beemesh-kinds.js";
import type { ResourceKind } from "../../controllers/dispatcher/api/kinds.js";
import { memoryLogger } from "../../controllers/common/log.js";
import { kubeconfigForSvid, writeKubeconfig } from "../../cli/kubeconfig.js";
import { killAllChildren, runCliChild, startCli } from "./cli-child.js";

let dir: string;
let ca: CertificateAuthority;
let store: MemoryObjectStore;
let api: ApiServer;
let bmdKind: ResourceKind;
let kubeconfig: string;

const BMD = { group: "beemesh.io", plural: "beemeshdeployments" };

function manifest(name: string, replicas: number, image = "localhost/busybox:latest"): string {
  return `apiVersion: beemesh.io/v1alpha1
kind: BeemeshDeployment
metadata:
  name: ${name}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      containers:
      - name: main
        image: ${image}
        command: ["sleep", "3600"]
`;
}

/** What the dispatcher's status writer would do: a status-subresource merge patch. */
async function setStatus(name: string, status: Record<string, number>): Promise<void> {
  await api.service.patch(
    bmdKind,
    "default",
    name,
    "merge",
    { status },
    { dryRun: false, fieldManager: "test-status", fieldValidation: "Strict", warnings: [], force: false },
    "status",
  );
}

const cli = (args: string[], opts: { timeoutMs?: number; input?: string } = {}) =>
  runCliChild([...args, "--kubeconfig", kubeconfig], opts);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "beemesh-cli-api-"));
  ca = await createCa();
  store = new MemoryObjectStore();
  const serverSvid = await issueSvid(ca, {
    id: spiffeId(ca.trustDomain, "controller", "dispatcher", "api-1"),
    role: "dispatcher",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  const kinds = beemeshRegistry();
  bmdKind = kinds.kinds.find((k) => k.kind === "BeemeshDeployment")!;
  api = await startApiServer({
    store,
    kinds,
    objectMetaSchema: objectMetaSchema(),
    port: 0,
    logger: memoryLogger("api"),
    tls: {
      certPem: serverSvid.chainPem,
      keyPem: serverSvid.keyPem,
      bundlePem: ca.certPem,
      trustDomain: ca.trustDomain,
    },
  });
  const alice = await issueSvid(ca, { id: spiffeId(ca.trustDomain, "user", "alice"), role: "user" });
  kubeconfig = join(dir, "alice.kubeconfig");
  await writeKubeconfig(kubeconfig, kubeconfigForSvid(alice, api.url));
});

afterAll(async () => {
  killAllChildren();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

test("apply creates, then server-side-applies; get shows the table, one object as JSON", async () => {
  const file = join(dir, "web.yaml");
  await writeFile(file, manifest("web", 3));
  const created = await cli(["apply", "-f", file]);
  expect(created.stderr).toBe("");
  expect(created.code).toBe(0);
  expect(created.stdout).toBe("beemeshdeployment.beemesh.io/web created\n");
  const stored = await store.get(BMD, "default", "web");
  expect((stored?.spec as { replicas: number }).replicas).toBe(3);
  expect(stored?.metadata.managedFields?.[0]?.manager).toBe("beemeshctl");

  await writeFile(file, manifest("web", 4));
  const applied = await cli(["apply", "-f", "-"], { input: manifest("web", 4) });
  expect(applied.code).toBe(0);
  expect(applied.stdout).toBe("beemeshdeployment.beemesh.io/web serverside-applied\n");
  expect(((await store.get(BMD, "default", "web"))?.spec as { replicas: number }).replicas).toBe(4);

  const table = await cli(["get", "bmd"]);
  expect(table.code).toBe(0);
  const [header, row, ...rest] = table.stdout.trimEnd().split("\n");
  expect(header).toMatch(/^NAME\s+DESIRED\s+READY/);
  expect(row).toMatch(/^web\s+4\s/);
  expect(rest).toEqual([]);

  const json = await cli(["get", "bmd/web", "-o", "json"]);
  expect(json.code).toBe(0);
  const obj = JSON.parse(json.stdout) as { kind: string; metadata: { name: string; generation: number } };
  expect(obj.kind).toBe("BeemeshDeployment");
  expect(obj.metadata).toMatchObject({ name: "web", generation: 2 });
});

test("apply refuses an invalid manifest before sending it: exit 1, one line naming the field", async () => {
  const r = await cli(["apply", "-f", "-"], {
    input: manifest("bad", 1).replace("replicas: 1", "replicas: -1"),
  });
  expect(r.code).toBe(1);
  expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(r.stderr).toMatch(
    /^error: stdin \(document 1\): BeemeshDeployment "bad" is invalid: spec\.replicas/,
  );
  expect(await store.get(BMD, "default", "bad")).toBeUndefined();
});

test("rollout status prints progress as the status changes and exits 0 once rolled out", async () => {
  await writeFile(join(dir, "api.yaml"), manifest("api", 3));
  expect((await cli(["apply", "-f", join(dir, "api.yaml")])).code).toBe(0);
  const watch = startCli(["rollout", "status", "bmd/api", "--timeout", "40s", "--kubeconfig", kubeconfig]);
  await watch.waitForOutput(/Waiting for rollout spec update to be observed \(generation 1\)\.\.\.\n/);

  await setStatus("api", { observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 0 });
  await watch.waitForOutput(/1 out of 3 new replicas have been updated\.\.\.\n/);
  await setStatus("api", { observedGeneration: 1, replicas: 3, updatedReplicas: 3, readyReplicas: 2 });
  await watch.waitForOutput(/2 of 3 updated replicas are available\.\.\.\n/);
  await setStatus("api", { observedGeneration: 1, replicas: 3, updatedReplicas: 3, readyReplicas: 3 });

  const done = await watch.done;
  expect(done.stderr).toBe("");
  expect(done.code).toBe(0);
  expect(done.stdout).toBe(
    "Waiting for rollout spec update to be observed (generation 1)...\n" +
      "Waiting for rollout to finish: 1 out of 3 new replicas have been updated...\n" +
      "Waiting for rollout to finish: 2 of 3 updated replicas are available...\n" +
      'beemeshdeployment.beemesh.io "api" successfully rolled out\n',
  );

  // Already rolled out: one line, exit 0, no watch needed.
  const again = await cli(["rollout", "status", "bmd", "api"]);
  expect(again.code).toBe(0);
  expect(again.stdout).toBe('beemeshdeployment.beemesh.io "api" successfully rolled out\n');
});

test("rollout status gives up after --timeout with exit 1", async () => {
  await writeFile(join(dir, "slow.yaml"), manifest("slow", 2));
  expect((await cli(["apply", "-f", join(dir, "slow.yaml")])).code).toBe(0);
  await setStatus("slow", { observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 1 });
  const started = Date.now();
  // Long enough for the first GET on a loaded machine: the deadline runs from before it.
  const r = await cli(["rollout", "status", "bmd/slow", "--timeout", "4s"]);
  expect(r.code).toBe(1);
  expect(Date.now() - started).toBeGreaterThanOrEqual(4000);
  expect(r.stdout).toBe("Waiting for rollout to finish: 1 of 2 updated replicas are available...\n");
  expect(r.stderr).toBe(
    'error: timed out waiting for the rollout of beemeshdeployment.beemesh.io "slow" (4s)\n',
  );
});

test("rollout status of a missing object fails with the server's NotFound", async () => {
  const r = await cli(["rollout", "status", "bmd/nope", "--timeout", "5s"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(
    'error: Error from server (NotFound): beemeshdeployments.beemesh.io "nope" not found\n',
  );
});

test("delete removes the object; get then reports NotFound; --ignore-not-found is quiet", async () => {
  const r = await cli(["delete", "bmd", "web"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toBe('beemeshdeployment.beemesh.io "web" deleted\n');
  expect(await store.get(BMD, "default", "web")).toBeUndefined();

  const get = await cli(["get", "bmd", "web"]);
  expect(get.code).toBe(1);
  expect(get.stderr).toBe(
    'error: Error from server (NotFound): beemeshdeployments.beemesh.io "web" not found\n',
  );
  const quiet = await cli(["delete", "bmd/web", "--ignore-not-found"]);
  expect(quiet).toMatchObject({ code: 0, stdout: "", stderr: "" });
});

test("a client certificate from another CA is refused by the API (exit 1, one line)", async () => {
  const otherCa = await createCa();
  const mallory = await issueSvid(otherCa, {
    id: spiffeId(otherCa.trustDomain, "user", "mallory"),
    role: "user",
  });
  const file = join(dir, "mallory.kubeconfig");
  // The server is still trusted through the real bundle; only the client identity is foreign.
  await writeKubeconfig(file, kubeconfigForSvid({ ...mallory, bundlePem: ca.certPem }, api.url));
  const r = await runCliChild(["get", "bmd", "--kubeconfig", file]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^error: Error from server \(Unauthorized\): .+\n$/);
});
