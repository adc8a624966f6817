// The node agent's workload identity over real gRPC on real unix sockets: a
// deployed pod's socket serves exactly its SPIFFE ID (signed by the local CA
// with its kind's NATS role), removal withdraws it, and a restarted agent
// re-attaches the pods it adopts through list().
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, type CertificateAuthority } from "../../identity/ca.js";
import { verifySvidChain } from "../../identity/verify.js";
import { WorkloadApiClient } from "../../identity/workload-api/index.js";
import { FakeRuntime } from "../../controllers/scheduler-bidder/runtime/fake.js";
import type { DeploySpec, PodManifest } from "../../controllers/scheduler-bidder/runtime/types.js";
import {
  POD_ENV,
  WorkloadIdentities,
  localCaIssuer,
  withWorkloadIdentity,
} from "../../controllers/scheduler-bidder/workload-identity.js";

const TD = "beemesh.local";
let ca: CertificateAuthority;
let dir: string;
const closers: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD });
  dir = await mkdtemp(join(tmpdir(), "bm-wi-"));
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A FakeRuntime that keeps the manifests it was asked to run. */
class RecordingRuntime extends FakeRuntime {
  readonly manifests = new Map<string, PodManifest>();
  override async deploy(spec: DeploySpec): Promise<void> {
    this.manifests.set(spec.podName, spec.manifest);
    await super.deploy(spec);
  }
}

function identities(socketDir: string, nodeId = "node-1"): WorkloadIdentities {
  const ids = new WorkloadIdentities({
    nodeId,
    trustDomain: TD,
    socketDir,
    issue: localCaIssuer(ca, { ttlMs: 60_000 }),
    podAddressRange: "127.77.1.0/24",
  });
  closers.push(() => ids.close());
  return ids;
}

function spec(podName: string, kind: "Deployment" | "StatefulSet" = "Deployment"): DeploySpec {
  const sidecar = kind === "Deployment" ? "beemesh-watchdog" : "beemesh-raft";
  return {
    podName,
    identity: {
      taskId: "01JWI000000000000000000001",
      ns: "shop",
      parent: "web",
      kind,
      ...(kind === "StatefulSet" ? { ordinal: 0 } : {}),
      generation: 1,
      fencingToken: 7,
    },
    limits: { cpuMillis: 100, memoryBytes: 64 * 2 ** 20 },
    manifest: {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { annotations: { "beemesh.io/workload-api-volume": "beemesh-workload-api" } },
      spec: {
        hostNetwork: true,
        containers: [
          { name: "app", image: "localhost/beemesh/busybox:latest" },
          {
            name: sidecar,
            image: "localhost/beemesh/controllers:latest",
            volumeMounts: [{ name: "beemesh-workload-api", mountPath: "/run/beemesh/workload-api" }],
          },
        ],
        volumes: [{ name: "beemesh-workload-api", emptyDir: {} }],
      },
    },
  };
}

async function fetchId(socketPath: string): Promise<{ id: string; role: string }> {
  const client = new WorkloadApiClient({ socketPath });
  try {
    const ctx = await client.fetchX509Context({ timeoutMs: 10_000 });
    const entry = ctx.svids[0]!;
    const leaf = entry.chain[0]!;
    await verifySvidChain(new Uint8Array(leaf.rawData), ca.certPem, Date.now(), TD);
    return { id: entry.spiffeId.toString(), role: /OU=([^,]+)/.exec(leaf.subject)?.[1] ?? "" };
  } finally {
    client.close();
  }
}

test("a deployed pod's socket serves its own SPIFFE ID; remove withdraws it", async () => {
  const inner = new RecordingRuntime();
  const ids = identities(join(dir, "a"));
  const runtime = withWorkloadIdentity(inner, ids);

  await runtime.deploy(spec("web-x1"));
  await runtime.deploy(spec("db-0", "StatefulSet"));
  const web = ids.get("web-x1")!;
  expect(web.socketPath).toBe(join(dir, "a", "web-x1", "agent.sock"));
  expect((await stat(join(dir, "a"))).mode & 0o777).toBe(0o700);
  expect((await stat(web.socketPath)).isSocket()).toBe(true);
  expect(await fetchId(web.socketPath)).toEqual({
    id: "spiffe://beemesh.local/ns/shop/deployment/web/web-x1",
    role: "watchdog",
  });
  expect(await fetchId(ids.get("db-0")!.socketPath)).toEqual({
    id: "spiffe://beemesh.local/ns/shop/statefulset/web/db-0",
    role: "raft-member",
  });

  // What the inner runtime ran: the pod's own directory, the pod facts, distinct addresses.
  const ran = inner.manifests.get("web-x1")!;
  expect(ran.spec.volumes).toEqual([
    { name: "beemesh-workload-api", hostPath: { path: web.hostDir, type: "Directory" } },
  ]);
  const env = Object.fromEntries((ran.spec.containers[1]?.env ?? []).map((e) => [e.name, e.value]));
  expect(env).toMatchObject({
    [POD_ENV.podName]: "web-x1",
    [POD_ENV.nodeId]: "node-1",
    [POD_ENV.podIp]: web.podIp,
  });
  expect(web.podIp).toMatch(/^127\.77\.1\.\d+$/);
  expect(ids.get("db-0")!.podIp).not.toBe(web.podIp);

  expect(await runtime.remove("web-x1")).toBe(true);
  expect(ids.get("web-x1")).toBeUndefined();
  await expect(stat(web.hostDir)).rejects.toMatchObject({ code: "ENOENT" });
  expect(ids.attached().map((a) => a.podName)).toEqual(["db-0"]);
});

test("a failed deploy leaves no socket behind", async () => {
  const inner = new FakeRuntime({ failureRate: 1 });
  const ids = identities(join(dir, "b"));
  await expect(withWorkloadIdentity(inner, ids).deploy(spec("web-bad"))).rejects.toThrow();
  expect(ids.attached()).toEqual([]);
  await expect(stat(join(dir, "b", "web-bad"))).rejects.toMatchObject({ code: "ENOENT" });
});

test("a restarted agent re-attaches the pods it adopts through list()", async () => {
  const inner = new FakeRuntime();
  const socketDir = join(dir, "c");
  const first = identities(socketDir);
  await withWorkloadIdentity(inner, first).deploy(spec("web-y1"));
  const before = first.get("web-y1")!;
  await first.close(); // the agent dies; the pod keeps running in the runtime
  expect(first.attached()).toEqual([]);

  const second = identities(socketDir);
  const listing = await withWorkloadIdentity(inner, second).list();
  expect(listing.pods.map((p) => p.podName)).toEqual(["web-y1"]);
  const after = second.get("web-y1")!;
  expect(after.socketPath).toBe(before.socketPath);
  expect(after.podIp).toBe(before.podIp);
  expect((await fetchId(after.socketPath)).id).toBe("spiffe://beemesh.local/ns/shop/deployment/web/web-y1");
});
