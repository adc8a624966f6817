// `beemeshctl nodes`: what every node agent last wrote about itself in the
// beemesh-nodes KV bucket (capacity, use, labels, when it was last seen).
import { Kvm } from "@nats-io/kv";
import { meshSubjects } from "../../identity/nats-config.js";
import { parseNodeStatus, type NodeStatus } from "../../protocol/index.js";
import { CliError, EXIT, outputOpt, type Command } from "./common.js";
import { NATS_OPTIONS, connectMesh, natsSettings } from "./nats-client.js";
import { formatBytes, formatCpu, formatTable, humanAge } from "./table.js";

export const NODE_HEADERS = ["NODE", "CPU", "MEMORY", "PODS", "LABELS", "LAST SEEN"] as const;
export const NODE_WIDE_HEADERS = [...NODE_HEADERS, "ALLOCATABLE", "TAINTS", "SHARDS"] as const;

const labelsText = (labels: Record<string, string>): string => {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? "<none>" : entries.map(([k, v]) => `${k}=${v}`).join(",");
};

/** One row (pure): each resource as used/capacity, the age of last_seen at `nowMs`. */
export function nodeRow(n: NodeStatus, nowMs: number, wide = false): string[] {
  const row = [
    n.node_id,
    `${formatCpu(n.used.cpu_millis)}/${formatCpu(n.capacity.cpu_millis)}`,
    `${formatBytes(n.used.memory_bytes)}/${formatBytes(n.capacity.memory_bytes)}`,
    `${n.used.pods}/${n.capacity.pods}`,
    labelsText(n.labels),
    `${humanAge(nowMs - n.last_seen)} ago`,
  ];
  if (!wide) return row;
  const a = n.allocatable;
  const taints =
    n.taints.map((t) => `${t.key}${t.value ? `=${t.value}` : ""}:${t.effect}`).join(",") || "<none>";
  return [
    ...row,
    `cpu=${formatCpu(a.cpu_millis)},memory=${formatBytes(a.memory_bytes)},pods=${a.pods}`,
    taints,
    String(n.shards.length),
  ];
}

export const nodes: Command = {
  path: ["nodes"],
  summary: "List node agents from the beemesh-nodes KV bucket",
  usage: "nodes [-o json|wide] --svid-dir DIR [--nats URL]",
  details: "CPU, MEMORY and PODS show used/capacity. Entries that do not parse are reported on stderr.",
  options: {
    output: { type: "string", short: "o", placeholder: "FORMAT", description: "json or wide" },
    ...NATS_OPTIONS,
  },
  async run({ values }, ctx) {
    const output = outputOpt(values, ["json", "wide"] as const);
    const settings = natsSettings(values, ctx);
    const bucket = meshSubjects(settings.prefix).buckets.nodes;
    const mesh = await connectMesh(settings, { reconnect: false });
    try {
      let kv;
      try {
        kv = await new Kvm(mesh.nc).open(bucket);
        await kv.status();
      } catch (err) {
        throw new CliError(`cannot open KV bucket ${bucket} (has the mesh been set up?)`, { cause: err });
      }
      const statuses: NodeStatus[] = [];
      const keys: string[] = [];
      for await (const k of await kv.keys()) keys.push(k);
      for (const key of keys.sort()) {
        const entry = await kv.get(key);
        if (!entry || entry.operation !== "PUT") continue;
        let raw: unknown;
        try {
          raw = entry.json();
        } catch {
          ctx.io.err(`warning: node ${key}: entry is not JSON\n`);
          continue;
        }
        const parsed = parseNodeStatus(raw);
        if (!parsed.ok) {
          ctx.io.err(`warning: node ${key}: ${parsed.error.message}\n`);
          continue;
        }
        statuses.push(parsed.value);
      }
      if (output === "json") {
        ctx.io.out(JSON.stringify(statuses, null, 2) + "\n");
      } else if (statuses.length === 0) {
        ctx.io.err("No nodes found.\n");
      } else {
        const wide = output === "wide";
        const now = ctx.now();
        ctx.io.out(
          formatTable(
            wide ? [...NODE_WIDE_HEADERS] : [...NODE_HEADERS],
            statuses.map((s) => nodeRow(s, now, wide)),
          ),
        );
      }
      return EXIT.ok;
    } finally {
      await mesh.close();
    }
  },
};
