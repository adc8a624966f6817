// The NATS side of beemeshctl (events, nodes): mutual TLS with an SVID from
// a directory (svid.crt, svid.key, bundle.crt), as every controller connects.
import { resolve } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Svid } from "../../identity/ca.js";
import { loadSvidDir } from "../../controllers/common/svid-dir.js";
import { prefixProblem } from "../../protocol/subjects.js";
import { CliError, UsageError, stringOpt, type CliContext, type ParsedValues } from "./common.js";

export const DEFAULT_NATS_URL = "tls://127.0.0.1:4222";

export const NATS_OPTIONS = {
  nats: {
    type: "string",
    placeholder: "URL[,URL]",
    description: `NATS servers (default $BEEMESH_NATS_URL, then ${DEFAULT_NATS_URL})`,
  },
  "svid-dir": {
    type: "string",
    placeholder: "DIR",
    description: "SVID directory: svid.crt, svid.key, bundle.crt (default $BEEMESH_SVID_DIR)",
  },
  prefix: {
    type: "string",
    placeholder: "PREFIX",
    default: "beemesh",
    description: "subject prefix of the mesh",
  },
} as const;

export interface MeshConnection {
  nc: NatsConnection;
  svid: Svid;
  prefix: string;
  close(): Promise<void>;
}

export interface NatsSettings {
  servers: string[];
  svidDir: string;
  prefix: string;
}

/** Flags first, then the environment; pure. */
export function natsSettings(values: ParsedValues, ctx: Pick<CliContext, "env" | "cwd">): NatsSettings {
  const serversText = stringOpt(values, "nats") ?? ctx.env["BEEMESH_NATS_URL"] ?? DEFAULT_NATS_URL;
  const servers = serversText
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (servers.length === 0) throw new UsageError("--nats names no server");
  const dir = stringOpt(values, "svid-dir") ?? ctx.env["BEEMESH_SVID_DIR"];
  if (!dir) throw new UsageError("--svid-dir (or BEEMESH_SVID_DIR) is required");
  const prefix = stringOpt(values, "prefix") ?? "beemesh";
  const problem = prefixProblem(prefix);
  if (problem !== undefined) throw new UsageError(`--prefix ${problem}`);
  return { servers, svidDir: resolve(ctx.cwd, dir), prefix };
}

export async function connectMesh(
  settings: NatsSettings,
  opts: { reconnect: boolean },
): Promise<MeshConnection> {
  const svid = await loadSvidDir(settings.svidDir);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: settings.servers,
      tls: { cert: svid.chainPem, key: svid.keyPem, ca: svid.bundlePem },
      name: `beemeshctl ${svid.spiffeId}`,
      timeout: 5_000,
      maxReconnectAttempts: opts.reconnect ? -1 : 0,
    });
  } catch (err) {
    // nats-server ends the TLS handshake of a client certificate it does not trust without a
    // word, so the client only sees a timeout: say what that usually means.
    const hint =
      (err as { message?: unknown }).message === "timeout"
        ? " (no answer; is this SVID from the mesh's CA?)"
        : "";
    throw new CliError(`cannot connect to ${settings.servers.join(",")} as ${svid.spiffeId}${hint}`, {
      cause: err,
    });
  }
  return {
    nc,
    svid,
    prefix: settings.prefix,
    close: async () => {
      if (!nc.isClosed()) await nc.close();
    },
  };
}
