// `beemeshctl kubeconfig`: a user SVID wrapped in a kubeconfig for the
// dispatcher's API (kubectl and beemeshctl both read it). The YAML itself is
// cli/kubeconfig.ts's; this is only the command line around it.
import { resolve } from "node:path";
import { issueSvid, loadCa } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { buildKubeconfig, kubeconfigForSvid, writeKubeconfig } from "../kubeconfig.js";
import {
  EXIT,
  UsageError,
  checkNamespace,
  durationOpt,
  requiredOpt,
  stringOpt,
  type Command,
} from "./common.js";

export const kubeconfig: Command = {
  path: ["kubeconfig"],
  summary: "Write a kubeconfig with a fresh user SVID for the dispatcher's API",
  usage:
    "kubeconfig --ca-dir DIR --user NAME --server https://127.0.0.1:6443 [--out FILE] [--ttl 1h] [-n NS]",
  details:
    "The SVID is spiffe://<td>/user/<NAME> (role user); certificate and key are embedded, the CA\n" +
    "is the trust bundle. Written with mode 0600; printed to stdout without --out.\n" +
    "An http:// server (a dispatcher started with --dev-insecure) needs no --ca-dir.",
  options: {
    "ca-dir": { type: "string", placeholder: "DIR", description: "CA directory made by `ca init`" },
    user: { type: "string", placeholder: "NAME", description: "user name (the SPIFFE ID's last segment)" },
    server: { type: "string", placeholder: "URL", description: "the dispatcher API's URL" },
    out: { type: "string", placeholder: "FILE", description: "kubeconfig file to write" },
    ttl: { type: "string", placeholder: "DURATION", default: "1h", description: "SVID validity" },
    namespace: {
      type: "string",
      short: "n",
      placeholder: "NS",
      default: "default",
      description: "context namespace",
    },
  },
  async run({ values }, ctx) {
    const server = requiredOpt(values, "server");
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new UsageError(`--server ${JSON.stringify(server)} is not a URL`);
    }
    const namespace = checkNamespace(stringOpt(values, "namespace") ?? "default");
    const caDir = stringOpt(values, "ca-dir");
    const out = stringOpt(values, "out");
    let text: string;
    let who = "no client certificate";
    if (caDir !== undefined) {
      const user = requiredOpt(values, "user");
      const ca = await loadCa(resolve(ctx.cwd, caDir));
      const svid = await issueSvid(ca, {
        id: spiffeId(ca.trustDomain, "user", user),
        role: "user",
        ttlMs: durationOpt(values, "ttl", "1h"),
        now: new Date(ctx.now()),
      });
      text = kubeconfigForSvid(svid, server, { namespace });
      who = `${svid.spiffeId}, valid until ${svid.notAfter.toISOString()}`;
    } else if (url.protocol === "http:") {
      text = buildKubeconfig({ server, namespace });
    } else {
      throw new UsageError("--ca-dir is required for an https server");
    }
    if (out === undefined) {
      ctx.io.out(text);
    } else {
      const path = resolve(ctx.cwd, out);
      await writeKubeconfig(path, text);
      ctx.io.out(`wrote ${path} (${who})\n`);
    }
    return EXIT.ok;
  },
};
