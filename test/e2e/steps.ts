// The end-to-end run as a list of steps, each bounded and timed: a
// BeemeshDeployment applied with kubectl, healed after its app container is
// removed and after a node dies, scaled 3 -> 5 -> 2, rolled to a new image
// and deleted. A StatefulSet run joins by adding its own list (same Step
// shape, same harness) to E2E_STEPS in mesh.e2e.test.ts.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { dump as dumpYaml } from "js-yaml";
import {
  E2eError,
  describePods,
  describeWorkload,
  listPods,
  poll,
  podRunning,
  run,
  workloadView,
  type Mesh,
  type PodView,
  type WorkloadView,
} from "./harness.js";

export interface StepContext {
  mesh: Mesh;
  log(line: string): void;
}

export interface Step {
  name: string;
  /** Expected bound; a success past it is reported as a warning (the step's own waits make it fail). */
  budgetMs: number;
  /** Returns one line saying what happened. */
  run(ctx: StepContext): Promise<string>;
}

export const APP_IMAGE = "localhost/beemesh/busybox:latest";
/** A second tag of the same image, so a rollout changes the template without a registry. */
export const APP_IMAGE_V2 = "localhost/beemesh/busybox:e2e-v2";
const TEMPLATE_HASH = "beemesh.io/template-hash";

export interface DeploymentSpec {
  name: string;
  ns: string;
  replicas: number;
  image: string;
}

/**
 * busybox httpd on the pod's own loopback address (BEEMESH_POD_IP, from its
 * node agent), so any number of replicas share the host network; no declared
 * port, so the host-port fit does not cap replicas per node. sh stays PID 1
 * and exits on SIGTERM, so removals do not wait for a kill timeout.
 */
export function deploymentManifest(d: DeploymentSpec): string {
  return dumpYaml({
    apiVersion: "beemesh.io/v1alpha1",
    kind: "BeemeshDeployment",
    metadata: { name: d.name, namespace: d.ns, labels: { app: d.name } },
    spec: {
      replicas: d.replicas,
      selector: { matchLabels: { app: d.name } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: d.name } },
        spec: {
          hostNetwork: true,
          restartPolicy: "Always",
          containers: [
            {
              name: "httpd",
              image: d.image,
              command: [
                "busybox",
                "sh",
                "-c",
                `trap 'exit 0' TERM; busybox httpd -f -p "\${BEEMESH_POD_IP:?no pod address}:8080" -h /www & wait`,
              ],
              resources: { requests: { cpu: "10m", memory: "8Mi" }, limits: { cpu: "100m", memory: "32Mi" } },
              readinessProbe: {
                httpGet: { path: "/index.html", port: 8080 },
                periodSeconds: 1,
                failureThreshold: 2,
              },
              livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1, failureThreshold: 2 },
            },
          ],
        },
      },
      watchdogSidecar: { image: "localhost/beemesh/controllers:latest", intervalSeconds: 1, ttlIntervals: 3 },
    },
  });
}

async function applyDeployment(ctx: StepContext, d: DeploymentSpec): Promise<void> {
  const dir = join(ctx.mesh.state, "e2e");
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${d.name}.yaml`);
  await writeFile(file, deploymentManifest(d));
  const out = await ctx.mesh.kubectl(["apply", "-f", file]);
  ctx.log(out.stdout.trim());
}

interface Settled {
  view: WorkloadView;
  pods: PodView[];
}

/**
 * Waits until the API and podman agree that exactly `n` replicas run and are
 * ready at the object's current generation, and `extra` holds for the pods.
 */
async function settled(
  ctx: StepContext,
  name: string,
  n: number,
  timeoutMs: number,
  extra: (pods: PodView[]) => string | undefined = () => undefined,
  onSample?: (view: WorkloadView, pods: PodView[]) => void,
): Promise<Settled> {
  let last = "";
  return poll(
    `${name}: ${n}/${n} ready in the status and ${n} running pods`,
    timeoutMs,
    async () => {
      const [view, pods] = await Promise.all([workloadView(ctx.mesh, "bmd", name), listPods(ctx.mesh, name)]);
      onSample?.(view, pods);
      const running = pods.filter(podRunning);
      const problem = !view.exists
        ? "the object is gone"
        : view.observedGeneration !== view.generation
          ? `generation ${view.generation} not observed yet`
          : view.ready !== n || view.replicas !== n || view.updated !== n
            ? "status not converged"
            : running.length !== n || pods.length !== n
              ? `${running.length} running of ${pods.length} pods`
              : pods.some((p) => ctx.mesh.dead.has(p.node))
                ? "a pod is on a dead node"
                : extra(pods);
      last = `${describeWorkload(view)}; pods: ${describePods(pods)}${problem ? ` (${problem})` : ""}`;
      return problem === undefined ? { view, pods } : undefined;
    },
    () => last,
  );
}

/** The app answers HTTP on each pod's own address (read from its container's env). */
async function checkServing(ctx: StepContext, pods: readonly PodView[]): Promise<string[]> {
  const addresses: string[] = [];
  for (const p of pods) {
    const { stdout } = await ctx.mesh.podman(p.node, [
      "inspect",
      `${p.name}-httpd`,
      "--format",
      "{{range .Config.Env}}{{println .}}{{end}}",
    ]);
    const ip = /^BEEMESH_POD_IP=(.+)$/m.exec(stdout)?.[1]?.trim();
    if (ip === undefined)
      throw new E2eError(`${p.name} has no BEEMESH_POD_IP: its node agent did not attach it`);
    const res = await fetch(`http://${ip}:8080/index.html`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) throw new E2eError(`${p.name} on ${ip}:8080 answered HTTP ${res.status}`);
    addresses.push(`${p.name}=${ip}`);
  }
  return addresses;
}

const names = (pods: readonly PodView[]) => pods.map((p) => `${p.name}@${p.node}`).join(", ");

/** The Deployment steps of the e2e run, for one workload name. */
export function deploymentSteps(opts: { name?: string; ns?: string } = {}): Step[] {
  const name = opts.name ?? "e2e-web";
  const ns = opts.ns ?? "default";
  const spec: DeploymentSpec = { name, ns, replicas: 3, image: APP_IMAGE };
  return [
    {
      name: `apply BeemeshDeployment ${name} (3 replicas) and wait for 3/3 ready`,
      budgetMs: 90_000,
      async run(ctx) {
        await applyDeployment(ctx, spec);
        const s = await settled(ctx, name, 3, 85_000);
        const serving = await checkServing(ctx, s.pods);
        return `3/3 ready: ${names(s.pods)}; HTTP on ${serving.join(", ")}`;
      },
    },
    {
      name: "remove an app container (podman rm -f) -> healed",
      budgetMs: 75_000,
      async run(ctx) {
        const pods = await listPods(ctx.mesh, name);
        const victim = pods[0];
        if (victim === undefined) throw new E2eError("no pod to remove");
        await ctx.mesh.podman(victim.node, ["rm", "--force", "--time", "0", `${victim.name}-httpd`]);
        ctx.log(`removed container ${victim.name}-httpd on ${victim.node}`);
        const s = await settled(ctx, name, 3, 70_000, (now) =>
          now.some((p) => p.name === victim.name) ? `${victim.name} still there` : undefined,
        );
        return `${victim.name}@${victim.node} replaced; now ${names(s.pods)}`;
      },
    },
    {
      name: "node failure: SIGKILL a node agent (its pods die with its machine) -> replicas re-placed elsewhere",
      budgetMs: 90_000,
      async run(ctx) {
        const pods = await listPods(ctx.mesh, name);
        // The node with the most replicas: the failure that moves the most.
        const counts = new Map<string, number>();
        for (const p of pods) counts.set(p.node, (counts.get(p.node) ?? 0) + 1);
        const node = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0];
        if (node === undefined) throw new E2eError("no pods to fail");
        const victims = pods.filter((p) => p.node === node);
        const pid = await ctx.mesh.pid(node);
        process.kill(pid, "SIGKILL");
        ctx.mesh.dead.add(node);
        // A dead machine takes its containers along; an agent crash alone leaves them running (and adopted on restart).
        await ctx.mesh.podman(node, ["pod", "rm", "--force", "--time", "0", "--all"]);
        ctx.log(`killed ${node} (pid ${pid}) and its pods ${victims.map((p) => p.name).join(", ")}`);
        const t = Date.now();
        // When podman first shows 3 running replicas again, and when the API's status agrees.
        let podsBackMs: number | undefined;
        const s = await settled(
          ctx,
          name,
          3,
          70_000,
          (now) =>
            now.some((p) => victims.some((v) => v.name === p.name))
              ? "a pod of the dead node is listed"
              : undefined,
          (_view, now) => {
            if (podsBackMs === undefined && now.filter(podRunning).length === 3) podsBackMs = Date.now() - t;
          },
        );
        const healedMs = Date.now() - t;
        // The machine comes back empty: its agent rejoins for the steps after this one.
        const newPid = await ctx.mesh.restart(node);
        await ctx.mesh.waitReady(node, 20_000);
        ctx.mesh.dead.delete(node);
        const podsBack =
          podsBackMs !== undefined ? `, 3 pods running after ${(podsBackMs / 1000).toFixed(1)} s` : "";
        return `${victims.length} replicas of ${node} re-placed (status 3/3 after ${(healedMs / 1000).toFixed(1)} s${podsBack}): ${names(s.pods)}; ${node} back (pid ${newPid})`;
      },
    },
    {
      name: "scale 3 -> 5",
      budgetMs: 75_000,
      async run(ctx) {
        await applyDeployment(ctx, { ...spec, replicas: 5 });
        const s = await settled(ctx, name, 5, 70_000);
        return `5/5 ready: ${names(s.pods)}`;
      },
    },
    {
      name: "scale 5 -> 2",
      budgetMs: 60_000,
      async run(ctx) {
        await applyDeployment(ctx, { ...spec, replicas: 2 });
        const s = await settled(ctx, name, 2, 55_000);
        return `2/2 ready: ${names(s.pods)}`;
      },
    },
    {
      name: `update the image to ${APP_IMAGE_V2} -> rolling update completes`,
      budgetMs: 100_000,
      async run(ctx) {
        const before = await listPods(ctx.mesh, name);
        const oldHashes = new Set(before.map((p) => p.labels[TEMPLATE_HASH]));
        // A second tag in the host's store, which every node store reads.
        await run("podman", ["tag", APP_IMAGE, APP_IMAGE_V2], {
          env: { ...process.env, CONTAINERS_CONF: `${ctx.mesh.repo}/hack/podman/containers.conf` },
        });
        await applyDeployment(ctx, { ...spec, replicas: 2, image: APP_IMAGE_V2 });
        // maxSurge 1 / maxUnavailable 0 would keep at most 3 pods running and 2 ready: sampled and printed.
        let maxRunning = 0;
        let minReady = Number.POSITIVE_INFINITY;
        const s = await settled(
          ctx,
          name,
          2,
          95_000,
          (pods) => {
            const stale = pods.filter(
              (p) =>
                oldHashes.has(p.labels[TEMPLATE_HASH]) ||
                p.containers.find((c) => c.name === "httpd")?.image !== APP_IMAGE_V2,
            );
            return stale.length > 0 ? `${stale.length} pods of the old template` : undefined;
          },
          (view, pods) => {
            maxRunning = Math.max(maxRunning, pods.filter(podRunning).length);
            if (view.exists) minReady = Math.min(minReady, view.ready);
          },
        );
        const detail = `at most ${maxRunning} pods running, at least ${minReady} ready in the status`;
        // Reported, not failed: the brief asks that the rollout completes; the surge is the watchdogs' to tighten.
        if (maxRunning > 3) ctx.log(`WARNING: the rollout went beyond maxSurge 1 (${detail})`);
        return `rolled: ${names(before)} -> ${names(s.pods)} (template ${s.pods[0]?.labels[TEMPLATE_HASH]}; ${detail})`;
      },
    },
    {
      name: `kubectl delete bmd ${name} -> 0 pods`,
      budgetMs: 45_000,
      async run(ctx) {
        await ctx.mesh.kubectl(["-n", ns, "delete", "bmd", name, "--wait=false"]);
        let last = "";
        await poll(
          `${name} gone with no pods left`,
          40_000,
          async () => {
            const [view, pods] = await Promise.all([
              workloadView(ctx.mesh, "bmd", name, ns),
              listPods(ctx.mesh, name),
            ]);
            last = `${describeWorkload(view)}; pods: ${describePods(pods)}`;
            return !view.exists && pods.length === 0 ? true : undefined;
          },
          () => last,
        );
        return "object gone, 0 pods on every node";
      },
    },
  ];
}
