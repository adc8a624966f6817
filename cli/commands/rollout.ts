// `beemeshctl rollout status`: watches one workload through the API and
// prints kubectl-style progress until the dispatcher's status says the
// current generation is observed and every replica is updated and ready.
import { GROUP } from "../../protocol/index.js";
import { API_OPTIONS, NAMESPACE_OPTION, statusObjectError } from "./api-client.js";
import { CliError, EXIT, UsageError, durationOpt, formatDuration, type Command } from "./common.js";
import { apiSession, collectionPath, itemPath, parseResourceArgs, type ResourceType } from "./resources.js";

export interface RolloutView {
  done: boolean;
  message: string;
}

const int = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isInteger(v) ? v : undefined;

function field(obj: unknown, key: string): Record<string, unknown> {
  const v = typeof obj === "object" && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
  return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
}

/**
 * Where a rollout stands, from the object alone (pure). The order follows
 * kubectl's deployment status viewer: the spec must be observed first, then
 * every replica updated, old ones gone, and all of them ready.
 */
export function rolloutStatus(obj: unknown, type: Pick<ResourceType, "singular">): RolloutView {
  const meta = field(obj, "metadata");
  const spec = field(obj, "spec");
  const status = field(obj, "status");
  const name = typeof meta["name"] === "string" ? meta["name"] : "?";
  const generation = int(meta["generation"]) ?? 0;
  const observed = int(status["observedGeneration"]);
  const desired = int(spec["replicas"]) ?? 1;
  const updated = int(status["updatedReplicas"]) ?? 0;
  const ready = int(status["readyReplicas"]) ?? 0;
  const current = int(status["replicas"]) ?? updated;
  if (observed === undefined || observed < generation) {
    return {
      done: false,
      message: `Waiting for rollout spec update to be observed (generation ${generation})...`,
    };
  }
  if (updated < desired) {
    return {
      done: false,
      message: `Waiting for rollout to finish: ${updated} out of ${desired} new replicas have been updated...`,
    };
  }
  if (current > updated || current > desired) {
    const old = current - Math.min(updated, desired);
    return {
      done: false,
      message: `Waiting for rollout to finish: ${old} old replicas are pending termination...`,
    };
  }
  if (ready < desired) {
    return {
      done: false,
      message: `Waiting for rollout to finish: ${ready} of ${desired} updated replicas are available...`,
    };
  }
  return { done: true, message: `${type.singular}.${GROUP} "${name}" successfully rolled out` };
}

/** A watch that ends quickly and empty this many times in a row means the server is refusing it. */
const MAX_EMPTY_WATCHES = 20;

export const rolloutStatusCommand: Command = {
  path: ["rollout", "status"],
  summary: "Watch a rollout until every replica of the current generation is ready",
  usage: "rollout status bmd/NAME|bmss/NAME [-n NS] [--timeout 5m]",
  details: "Exit codes: 0 rolled out; 1 timed out, deleted, or refused by the server.",
  positionals: "TYPE/NAME | TYPE NAME",
  options: {
    namespace: NAMESPACE_OPTION,
    timeout: {
      type: "string",
      placeholder: "DURATION",
      default: "5m",
      description: "give up after this long",
    },
    ...API_OPTIONS,
  },
  async run({ values, positionals }, ctx) {
    const refs = parseResourceArgs(positionals);
    if (refs.length !== 1 || refs[0]!.name === undefined)
      throw new UsageError("name one object: rollout status bmd/NAME");
    const { type, name } = refs[0]! as { type: ResourceType; name: string };
    const timeoutMs = durationOpt(values, "timeout", "5m");
    const { client, namespace } = await apiSession(values, ctx);

    const deadlineAt = ctx.now() + timeoutMs;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    const stop = AbortSignal.any([deadline.signal, ctx.signal]);
    let last = "";
    const show = (obj: unknown): boolean => {
      const view = rolloutStatus(obj, type);
      if (view.message !== last) ctx.io.out(view.message + "\n");
      last = view.message;
      return view.done;
    };
    try {
      let empty = 0;
      // Re-read and re-watch until done: a watch ends when the server closes it, or expires (410).
      while (!stop.aborted) {
        const obj = (await client.json("GET", itemPath(type, namespace, name), { signal: stop })) as {
          metadata?: { resourceVersion?: string };
        };
        if (show(obj)) return EXIT.ok;
        let rv = obj.metadata?.resourceVersion ?? "";
        let expired = false;
        while (!stop.aborted && !expired) {
          const remaining = Math.max(1, Math.ceil((deadlineAt - ctx.now()) / 1000));
          const query = new URLSearchParams({
            watch: "1",
            fieldSelector: `metadata.name=${name}`,
            resourceVersion: rv,
            timeoutSeconds: String(remaining),
          });
          let events = 0;
          for await (const ev of client.watch(`${collectionPath(type, namespace)}?${query}`, stop)) {
            events++;
            if (ev.type === "ERROR") {
              const err = statusObjectError(ev.object);
              if (err.code === 410) {
                expired = true;
                break;
              }
              throw err;
            }
            if (ev.type === "DELETED") throw new CliError(`${type.singular}.${GROUP} "${name}" was deleted`);
            const evRv = (ev.object["metadata"] as { resourceVersion?: unknown } | undefined)
              ?.resourceVersion;
            if (typeof evRv === "string") rv = evRv;
            if (ev.type === "BOOKMARK") continue;
            if (show(ev.object)) return EXIT.ok;
          }
          if (events === 0 && ++empty >= MAX_EMPTY_WATCHES)
            throw new CliError("the server keeps closing the watch");
          if (events > 0) empty = 0;
        }
      }
      if (ctx.signal.aborted) return EXIT.failure;
      throw new CliError(
        `timed out waiting for the rollout of ${type.singular}.${GROUP} "${name}" (${formatDuration(timeoutMs)})`,
      );
    } catch (err) {
      if (ctx.signal.aborted) return EXIT.failure;
      if (deadline.signal.aborted) {
        throw new CliError(
          `timed out waiting for the rollout of ${type.singular}.${GROUP} "${name}" (${formatDuration(timeoutMs)})`,
        );
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  },
};
