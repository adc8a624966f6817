// Pure parts of the Kubernetes runtime, and the runtime itself over a stub
// CoreV1Api (no cluster can run on this machine, DESIGN §8).
import { ApiException, type V1Node, type V1Pod } from "@kubernetes/client-node";
import {
  KubernetesRuntime,
  kubernetesPodFor,
  listingFromKubernetes,
  nodeTotalFromKubernetes,
  podStatusFromKubernetes,
  splitLines,
  type PodApi,
} from "../../controllers/scheduler-bidder/runtime/kubernetes.js";
import { LABEL } from "../../controllers/scheduler-bidder/runtime/labels.js";
import {
  DeployFailedError,
  PodExistsError,
  PodNotFoundError,
  RuntimeUnavailableError,
  type DeploySpec,
} from "../../controllers/scheduler-bidder/runtime/types.js";

const spec: DeploySpec = {
  podName: "web-7f3k",
  identity: {
    taskId: "01J00000000000000000000000",
    ns: "shop",
    parent: "web",
    kind: "Deployment",
    generation: 5,
    fencingToken: 77,
  },
  limits: { cpuMillis: 300, memoryBytes: 128 * 2 ** 20 },
  manifest: {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { labels: { app: "web" }, annotations: { note: "kept" } },
    spec: {
      restartPolicy: "Always",
      containers: [
        { name: "app", image: "localhost/web:1", resources: { limits: { cpu: "250m", memory: "96Mi" } } },
        { name: "watchdog", image: "localhost/beemesh/watchdog:1" },
      ],
    },
  },
};

function podWith(status: V1Pod["status"], over: Partial<V1Pod> = {}): V1Pod {
  return { ...kubernetesPodFor(spec, { namespace: "beemesh", nodeName: "node-a" }), status, ...over };
}

describe("Pod construction", () => {
  test("bound to the node, in the namespace, labelled with the identity", () => {
    const pod = kubernetesPodFor(spec, { namespace: "beemesh", nodeName: "node-a" });
    expect(pod.metadata).toEqual({
      name: "web-7f3k",
      namespace: "beemesh",
      annotations: { note: "kept" },
      labels: {
        app: "web",
        [LABEL.taskId]: "01J00000000000000000000000",
        [LABEL.ns]: "shop",
        [LABEL.parent]: "web",
        [LABEL.kind]: "Deployment",
        [LABEL.generation]: "5",
        [LABEL.fencingToken]: "77",
        [LABEL.cpuMillis]: "300",
        [LABEL.memoryBytes]: String(128 * 2 ** 20),
        [LABEL.managedBy]: "beemesh",
      },
    });
    expect(pod.spec?.nodeName).toBe("node-a");
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(["app", "watchdog"]);
    expect(spec.manifest.spec.nodeName).toBeUndefined();
  });
});

describe("status mapping", () => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  const t1 = new Date("2026-01-01T00:00:05Z");
  const base = { image: "i", imageID: "", ready: false, restartCount: 0 };

  test.each<[string, V1Pod["status"], string]>([
    ["just created", { phase: "Pending" }, "pending"],
    [
      "both running",
      {
        phase: "Running",
        containerStatuses: [
          { ...base, name: "app", state: { running: { startedAt: t0 } } },
          { ...base, name: "watchdog", state: { running: { startedAt: t0 } } },
        ],
      },
      "running",
    ],
    [
      "app died, sidecar up",
      {
        phase: "Running",
        containerStatuses: [
          { ...base, name: "app", state: { terminated: { exitCode: 2, startedAt: t0, finishedAt: t1 } } },
          { ...base, name: "watchdog", state: { running: { startedAt: t0 } } },
        ],
      },
      "failed",
    ],
    [
      "crash loop",
      {
        phase: "Running",
        containerStatuses: [
          { ...base, name: "app", restartCount: 4, state: { waiting: { reason: "CrashLoopBackOff" } } },
          { ...base, name: "watchdog", state: { running: {} } },
        ],
      },
      "failed",
    ],
    [
      "image missing",
      {
        phase: "Pending",
        containerStatuses: [{ ...base, name: "app", state: { waiting: { reason: "ErrImagePull" } } }],
      },
      "failed",
    ],
    ["succeeded", { phase: "Succeeded" }, "exited"],
    ["failed (evicted)", { phase: "Failed", reason: "Evicted" }, "failed"],
    ["node lost", { phase: "Unknown" }, "unknown"],
  ])("%s", (_what, status, phase) => {
    expect(podStatusFromKubernetes(podWith(status)).phase).toBe(phase);
  });

  test("per-container details: exit code, reason, times, restarts; unreported containers wait", () => {
    const status = podStatusFromKubernetes(
      podWith({
        phase: "Running",
        containerStatuses: [
          {
            ...base,
            name: "app",
            restartCount: 3,
            state: { terminated: { exitCode: 137, reason: "OOMKilled", startedAt: t0, finishedAt: t1 } },
          },
        ],
      }),
    );
    expect(status).toEqual({
      podName: "web-7f3k",
      phase: "failed",
      containers: [
        {
          name: "app",
          state: "exited",
          exitCode: 137,
          reason: "OOMKilled",
          startedAt: t0.getTime(),
          finishedAt: t1.getTime(),
          restarts: 3,
        },
        { name: "watchdog", state: "waiting", reason: "ContainerCreating" },
      ],
    });
  });

  test("listing parses labels back and reports the foreign ones", () => {
    const foreign: V1Pod = {
      metadata: { name: "hand-made", labels: { [LABEL.taskId]: "x" } },
      spec: { containers: [] },
    };
    const listing = listingFromKubernetes([podWith({ phase: "Succeeded" }), foreign]);
    expect(listing.pods).toEqual([
      { podName: "web-7f3k", identity: spec.identity, limits: spec.limits, phase: "exited" },
    ]);
    expect(listing.unparsable).toEqual([{ podName: "hand-made", reason: expect.stringMatching(/missing/) }]);
  });

  test("node allocatable", () => {
    const node: V1Node = { status: { allocatable: { cpu: "3800m", memory: "16303908Ki", pods: "110" } } };
    expect(nodeTotalFromKubernetes(node)).toEqual({
      cpuMillis: 3800,
      memoryBytes: 16303908 * 1024,
      pods: 110,
    });
    expect(nodeTotalFromKubernetes({})).toEqual({ cpuMillis: 0, memoryBytes: 0, pods: 0 });
  });

  test("log text to lines", () => {
    expect(splitLines("")).toEqual([]);
    expect(splitLines("a\nb\n")).toEqual(["a", "b"]);
    expect(splitLines("a\n\nb")).toEqual(["a", "", "b"]);
  });
});

// ---------------------------------------------------------------------------

type Call = { method: string; param: Record<string, unknown> };

function apiError(code: number): ApiException<string> {
  return new ApiException(code, `HTTP ${code}`, "{}", {});
}

/** An in-memory API server with just enough behaviour for the runtime. */
function stubApi(options: { failCreate?: unknown } = {}) {
  const pods = new Map<string, V1Pod>();
  const calls: Call[] = [];
  let uid = 0;
  const key = (ns: unknown, name: unknown) => `${String(ns)}/${String(name)}`;
  const api: PodApi = {
    createNamespacedPod: async (param) => {
      calls.push({ method: "create", param: { ...param } });
      if (options.failCreate) throw options.failCreate;
      const k = key(param.namespace, param.body.metadata?.name);
      if (pods.has(k)) throw apiError(409);
      const pod = { ...param.body, metadata: { ...param.body.metadata, uid: `uid-${++uid}` } };
      pods.set(k, pod);
      return pod;
    },
    readNamespacedPod: async (param) => {
      calls.push({ method: "read", param: { ...param } });
      const pod = pods.get(key(param.namespace, param.name));
      if (!pod) throw apiError(404);
      return pod;
    },
    deleteNamespacedPod: async (param) => {
      calls.push({ method: "delete", param: { ...param } });
      const k = key(param.namespace, param.name);
      const pod = pods.get(k);
      if (!pod) throw apiError(404);
      if (param.body?.preconditions?.uid !== pod.metadata?.uid) throw apiError(409);
      pods.delete(k);
      return pod;
    },
    listNamespacedPod: async (param) => {
      calls.push({ method: "list", param: { ...param } });
      const node = param.fieldSelector?.replace("spec.nodeName=", "");
      const items = [...pods.values()].filter(
        (p) =>
          p.metadata?.namespace === param.namespace &&
          p.spec?.nodeName === node &&
          p.metadata?.labels?.[LABEL.taskId],
      );
      return { items };
    },
    readNamespacedPodLog: async (param) => {
      calls.push({ method: "log", param: { ...param } });
      if (param.container === "watchdog") throw apiError(400);
      return "line 1\nline 2\n";
    },
    readNode: async (param) => {
      calls.push({ method: "node", param: { ...param } });
      return {
        metadata: { name: param.name },
        status: { allocatable: { cpu: "2", memory: "4Gi", pods: "50" } },
      };
    },
  };
  return { api, pods, calls };
}

describe("KubernetesRuntime over a stub API", () => {
  test("deploy, status, logs, list, capacity, remove", async () => {
    const { api, pods, calls } = stubApi();
    const rt = new KubernetesRuntime({ api, nodeName: "node-a", namespace: "beemesh" });
    await rt.deploy(spec);
    expect(calls[0]).toMatchObject({ method: "create", param: { namespace: "beemesh" } });
    expect(pods.get("beemesh/web-7f3k")?.spec?.nodeName).toBe("node-a");

    await expect(rt.deploy(spec)).rejects.toBeInstanceOf(PodExistsError);
    expect((await rt.status("web-7f3k")).phase).toBe("pending");

    expect(await rt.logs("web-7f3k", { tail: 5 })).toEqual({
      podName: "web-7f3k",
      containers: [
        { name: "app", lines: ["line 1", "line 2"] },
        { name: "watchdog", lines: [] },
      ],
    });
    expect(calls.find((c) => c.method === "log")?.param).toMatchObject({ container: "app", tailLines: 5 });

    const listing = await rt.list();
    expect(listing.pods.map((p) => p.identity)).toEqual([spec.identity]);
    expect(calls.find((c) => c.method === "list")?.param).toMatchObject({
      labelSelector: LABEL.taskId,
      fieldSelector: "spec.nodeName=node-a",
    });

    expect(await rt.capacity()).toEqual({
      total: { cpuMillis: 2000, memoryBytes: 4 * 2 ** 30, pods: 50 },
      used: { cpuMillis: 300, memoryBytes: 128 * 2 ** 20, pods: 1 },
    });

    await expect(rt.remove("web-7f3k")).resolves.toBe(true);
    expect(calls.find((c) => c.method === "delete")?.param).toMatchObject({
      gracePeriodSeconds: 5,
      body: { preconditions: { uid: "uid-1" } },
    });
    await expect(rt.remove("web-7f3k")).resolves.toBe(false);
    await expect(rt.status("web-7f3k")).rejects.toBeInstanceOf(PodNotFoundError);
  });

  test("a same-named pod on another node is not ours", async () => {
    const { api } = stubApi();
    await new KubernetesRuntime({ api, nodeName: "node-b" }).deploy(spec);
    const mine = new KubernetesRuntime({ api, nodeName: "node-a" });
    await expect(mine.status("web-7f3k")).rejects.toBeInstanceOf(PodNotFoundError);
    await expect(mine.remove("web-7f3k")).resolves.toBe(false);
    expect((await mine.list()).pods).toEqual([]);
  });

  test("API errors map to typed errors", async () => {
    const refused = new KubernetesRuntime({ api: stubApi({ failCreate: apiError(422) }).api, nodeName: "n" });
    await expect(refused.deploy(spec)).rejects.toBeInstanceOf(DeployFailedError);
    const down = new KubernetesRuntime({
      api: stubApi({ failCreate: new Error("ECONNREFUSED") }).api,
      nodeName: "n",
    });
    await expect(down.deploy(spec)).rejects.toBeInstanceOf(RuntimeUnavailableError);
    const invalid = new KubernetesRuntime({ api: stubApi().api, nodeName: "n" });
    await expect(invalid.status("Not_A_Name")).rejects.toBeInstanceOf(PodNotFoundError);
  });
});
