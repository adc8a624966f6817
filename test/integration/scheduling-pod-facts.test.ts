// The node agent completes a rendered pod at deploy time (DESIGN §3 step 4):
// the sidecar gets the facts only the node knows (its pod's name, the node,
// the task) even on a node without Workload API sockets (fake runtimes,
// simulations), and the renderer's emptyDir placeholder is left alone there.
// With sockets, see seams-workload-path.test.ts.
import { FakeRuntime, type DeploySpec } from "../../controllers/scheduler-bidder/runtime/index.js";
import { renderWorkload, WORKLOAD_API_VOLUME } from "../../controllers/dispatcher/fanout/render.js";
import { WATCHDOG_CONTAINER_NAME, parseBeemeshDeployment } from "../../protocol/index.js";
import { SchedulingMesh } from "../helpers/scheduling-mesh.js";

class RecordingRuntime extends FakeRuntime {
  readonly specs = new Map<string, DeploySpec>();
  override async deploy(spec: DeploySpec): Promise<void> {
    this.specs.set(spec.podName, spec);
    await super.deploy(spec);
  }
}

let mesh: SchedulingMesh;
const runtime = new RecordingRuntime();

beforeAll(async () => {
  mesh = await SchedulingMesh.start();
  await mesh.addKeeper("lk-1");
  await mesh.addAgent("node-a", { runtime });
}, 30_000);

afterAll(async () => {
  await mesh?.stop();
});

test("a deployed pod's sidecar knows its pod, node and task; nothing else changes", async () => {
  const parsed = parseBeemeshDeployment({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: "web", namespace: "default", uid: "uid-web", generation: 1 },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: {
          containers: [{ name: "app", image: "localhost/app:1", env: [{ name: "MODE", value: "x" }] }],
        },
      },
    },
  });
  if (!parsed.ok) throw parsed.error;
  const rendered = renderWorkload(parsed.value, { natsUrl: mesh.nats.url }).manifests[0]!;
  const ref = await mesh.putManifest(rendered.manifest);
  const task = await mesh.publish(mesh.task(ref, { parent: "web", parent_uid: "uid-web" }));
  const deployed = await mesh.waitForEvent(task.task_id, "deployed");

  const spec = runtime.specs.get(deployed.pod!)!;
  const sidecar = spec.manifest.spec.containers.find((c) => c.name === WATCHDOG_CONTAINER_NAME)!;
  const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e.value]));
  expect(env).toMatchObject({
    BEEMESH_POD_NAME: deployed.pod,
    BEEMESH_NODE_ID: "node-a",
    BEEMESH_TASK_ID: task.task_id,
    BEEMESH_PARENT: "web",
  });
  // The app keeps the user's env; no socket directory without workload identity.
  expect(spec.manifest.spec.containers.find((c) => c.name === "app")!.env).toEqual([
    { name: "MODE", value: "x" },
  ]);
  expect(spec.manifest.spec.volumes?.find((v) => v.name === WORKLOAD_API_VOLUME)).toEqual({
    name: WORKLOAD_API_VOLUME,
    emptyDir: {},
  });
}, 30_000);
