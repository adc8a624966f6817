// What the watchdog reads from its Deployment object (DESIGN §4): the replica
// logic's spec (replicas, generation, template hash, surge/unavailability) and
// the app containers whose probes it runs. A clone Task does not come from
// here: the watchdog copies the manifest ref and placement the dispatcher
// recorded for the generation (clone-task.ts), so it renders nothing.
import { WATCHDOG_CONTAINER_NAME, type BeemeshDeployment, type Container } from "../../protocol/index.js";
import { templateHash } from "../dispatcher/fanout/render.js";
import type { WatchdogSpec } from "./logic/index.js";

export interface DeploymentView {
  uid: string;
  spec: WatchdogSpec;
  /** The user's containers (the injected watchdog excluded); the first is the app the probes watch. */
  appContainers: Container[];
}

export type DeploymentInterpreter = (obj: BeemeshDeployment) => DeploymentView;

export class DeploymentSpecError extends Error {
  override name = "DeploymentSpecError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`watchdog: deployment spec: ${message}`, options);
  }
}

/**
 * An int-or-percent of `replicas` as Kubernetes resolves it: surge rounds up,
 * unavailability rounds down.
 */
export function resolveIntOrPercent(
  value: number | string | undefined,
  replicas: number,
  fallback: number,
  roundUp: boolean,
): number {
  if (value === undefined) return fallback;
  if (typeof value === "number") return Math.max(0, Math.floor(value));
  const m = /^(\d{1,3})%$/.exec(value);
  if (!m || m[1] === undefined)
    throw new DeploymentSpecError(`${JSON.stringify(value)} is neither a count nor a percentage`);
  const exact = (Number(m[1]) * replicas) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

export function watchdogSpecOf(obj: BeemeshDeployment, templateHash: string): WatchdogSpec {
  const replicas = obj.spec.replicas ?? 1;
  const rolling = obj.spec.strategy?.rollingUpdate;
  return {
    replicas,
    generation: obj.metadata.generation ?? 1,
    template_hash: templateHash,
    max_surge: resolveIntOrPercent(rolling?.maxSurge, replicas, 1, true),
    max_unavailable: resolveIntOrPercent(rolling?.maxUnavailable, replicas, 0, false),
  };
}

/**
 * The view of an object: its template hash is the one the dispatcher's
 * renderer stamps on the pods (a pure function of the object), so a pod's
 * BEEMESH_TEMPLATE_HASH compares to it directly.
 */
export const deploymentInterpreter: DeploymentInterpreter = (obj) => ({
  uid: obj.metadata.uid ?? "",
  spec: watchdogSpecOf(obj, templateHash(obj)),
  appContainers: obj.spec.template.spec.containers.filter((c) => c.name !== WATCHDOG_CONTAINER_NAME),
});
