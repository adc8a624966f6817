// The bus's Prometheus metrics, registered once per registry (several buses
// in one process, as in tests and simulations, share the counters).
import { Counter, type Registry } from "./prom-core.js";
import { REJECT_REASONS } from "./envelope.js";

export interface BusMetrics {
  rejected: Counter<"reason">;
  accepted: Counter<"type">;
  published: Counter<"type">;
}

function counter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

export function busMetrics(registry: Registry): BusMetrics {
  const rejected = counter(
    registry,
    "beemesh_messages_rejected_total",
    "Bus messages dropped by verification",
    ["reason"],
  );
  // Every reason shows up at 0, so dashboards and tests can read any of them.
  for (const reason of REJECT_REASONS) rejected.inc({ reason }, 0);
  return {
    rejected,
    accepted: counter(registry, "beemesh_messages_accepted_total", "Bus messages that passed verification", [
      "type",
    ]),
    published: counter(registry, "beemesh_messages_published_total", "Signed bus messages published", [
      "type",
    ]),
  };
}

/** Current value of one labelled counter series (0 when absent). */
export async function counterValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const match = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return match?.value ?? 0;
}
