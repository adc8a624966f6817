// The whole scheduling path with the real podman runtime (DESIGN §7, §8): a
// task for a busybox httpd pod is bid for, leased and deployed as a real pod
// on 127.0.0.1 (hostNetwork), then removed by a signed remove request. Uses
// its own podman store so it never touches other pods; skips, saying why,
// when podman cannot run pods here.
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PodmanRuntime } from "../../controllers/scheduler-bidder/runtime/index.js";
import { requestRemove } from "../../controllers/scheduler-bidder/node-api.js";
import { BUSYBOX_IMAGE, SchedulingMesh } from "../helpers/scheduling-mesh.js";
import { busAs, type TestBus } from "../helpers/bus.js";
import { freePort } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const execFileP = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const store = path.join(os.tmpdir(), "beemesh-scheduling-podman-test");
const globalArgs = ["--root", `${store}/root`, "--runroot", `${store}/run`, "--tmpdir", `${store}/tmp`];

async function podmanProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "not running as root (podman pods need root here, DESIGN §8)";
  try {
    await execFileP("podman", ["--version"], { timeout: 10_000 });
  } catch {
    return "podman is not installed";
  }
  for (const dir of ["root", "run", "tmp"]) mkdirSync(path.join(store, dir), { recursive: true });
  try {
    await execFileP(path.join(repo, "hack/build-test-images.sh"), ["--", ...globalArgs], { timeout: 90_000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    return `hack/build-test-images.sh failed: ${stderr.trim().split("\n").slice(-2).join(" ")}`;
  }
  return undefined;
}

const problem = await podmanProblem();
if (problem !== undefined) console.warn(`scheduling-podman.test: skipped: ${problem}`);
const describePodman = problem === undefined ? describe : describe.skip;

describePodman("scheduling with the podman runtime", () => {
  let mesh: SchedulingMesh;
  let runtime: PodmanRuntime;
  let user: TestBus;

  beforeAll(async () => {
    runtime = new PodmanRuntime({ globalArgs, stopTimeoutSeconds: 0, commandTimeoutMs: 45_000 });
    for (const pod of (await runtime.list()).pods) await runtime.remove(pod.podName); // an interrupted run's leftovers
    mesh = await SchedulingMesh.start();
    await mesh.addKeeper("lk-1");
    await mesh.addAgent("podman-1", { runtime });
    user = await busAs(mesh.nats, "user", ["user", "operator"]);
  }, 60_000);

  afterAll(async () => {
    await user?.bus.close();
    await mesh?.stop();
    if (runtime)
      for (const pod of (await runtime.list()).pods) await runtime.remove(pod.podName).catch(() => undefined);
  });

  test("bid, lease, deploy a real busybox pod, then remove it on a signed request", async () => {
    const port = await freePort();
    const ref = await mesh.putManifest({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { labels: { app: "httpd", "beemesh.io/parent": "httpd" } },
      spec: {
        hostNetwork: true,
        restartPolicy: "Never",
        containers: [
          {
            name: "httpd",
            image: BUSYBOX_IMAGE,
            imagePullPolicy: "Never",
            command: ["/bin/httpd", "-f", "-v", "-p", `127.0.0.1:${port}`, "-h", "/www"],
            resources: { limits: { cpu: "100m", memory: "32Mi" } },
          },
        ],
      },
    });
    const task = await mesh.publish(
      mesh.task(ref, {
        parent: "httpd",
        reqs: { cpu_millis: 100, memory_bytes: 32 * 2 ** 20, ports: [{ port, protocol: "TCP" }] },
      }),
    );
    const leased = await mesh.waitForEvent(task.task_id, "leased");
    expect(leased.node_id).toBe("podman-1");
    const deployed = await mesh.waitForEvent(task.task_id, "deployed", 45_000);
    expect(deployed.fencing_token).toBe(leased.fencing_token);

    // A real pod serves on the host network, labelled with the task and its fencing token.
    const body = await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${port}/`);
        return res.ok ? res.text() : undefined;
      },
      { timeoutMs: 15_000, what: "httpd to answer" },
    );
    expect(body).toMatch(/beemesh busybox test image/);
    const listed = (await runtime.list()).pods.find((p) => p.podName === deployed.pod);
    expect(listed?.identity).toEqual(
      expect.objectContaining({ taskId: task.task_id, fencingToken: deployed.fencing_token }),
    );

    const reply = await requestRemove(user.bus, "podman-1", {
      ns: "default",
      kind: "Deployment",
      parent: "httpd",
      pod: deployed.pod!,
      reason: "delete",
      ts: Date.now(),
    });
    expect(reply).toEqual(expect.objectContaining({ ok: true, removed: true }));
    await mesh.waitForEvent(task.task_id, "removed");
    expect((await runtime.list()).pods.find((p) => p.podName === deployed.pod)).toBeUndefined();
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  }, 60_000);
});
