// What the watchdog reads from its Deployment object (DESIGN §4): the replica
// logic's spec (replicas, generation, template hash, surge/unavailability),
// the fields of a clone Task, and the app containers whose probes it runs.
// The Task comes from the dispatcher's renderer, so a clone names the very
// manifest key the dispatcher stored for the current generation.
import {
  WATCHDOG_CONTAINER_NAME,
  type BeemeshDeployment,
  type Container,
  type Task,
} from "../../protocol/index.js";
import { buildTask, renderWorkload, type RenderOptions } from "../dispatcher/fanout/render.js";
import type { WatchdogSpec } from "./logic/index.js";

/** The fields of a clone Task that come from the object (the driver adds id, origin, nonce, ts). */
export type CloneTaskTemplate = Omit<Task, "task_id" | "attempt" | "origin" | "nonce" | "ts">;

export interface DeploymentView {
  uid: string;
  spec: WatchdogSpec;
  task: CloneTaskTemplate;
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

// buildTask checks the Task by its schema; these stand in until the driver sets the real ones.
const PLACEHOLDER = { nonce: "placeholder-nonce-0000", ts: 0 };

/**
 * An interpreter rendering with the dispatcher's options: the manifest key is
 * the sha256 of the rendered pod, sidecar env included, so the options must be
 * the ones the dispatcher used (main.ts takes them from this pod's own env).
 */
export function deploymentInterpreter(render: RenderOptions): DeploymentInterpreter {
  return (obj) => {
    const rendered = renderWorkload(obj, render);
    const task = buildTask(rendered, 0, PLACEHOLDER);
    const { task_id: _id, attempt: _attempt, origin: _origin, nonce: _nonce, ts: _ts, ...template } = task;
    return {
      uid: rendered.uid,
      spec: watchdogSpecOf(obj, rendered.templateHash),
      task: template,
      appContainers: obj.spec.template.spec.containers.filter((c) => c.name !== WATCHDOG_CONTAINER_NAME),
    };
  };
}
