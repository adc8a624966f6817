// The kubeconfig the CLI writes for the dispatcher API: a user SVID embedded
// as data, the trust bundle as the CA.
import { load } from "js-yaml";
import { buildKubeconfig, kubeconfigForSvid, KubeconfigError } from "../../cli/kubeconfig.js";
import { createCa, issueSvid } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";

interface Kubeconfig {
  clusters: { name: string; cluster: Record<string, string> }[];
  users: { name: string; user: Record<string, string> }[];
  contexts: { name: string; context: Record<string, string> }[];
  "current-context": string;
}

const unb64 = (s: string | undefined) => Buffer.from(s ?? "", "base64").toString("utf8");

test("a user SVID becomes client-certificate-data and client-key-data; the bundle the CA data", async () => {
  const ca = await createCa();
  const svid = await issueSvid(ca, { id: spiffeId(ca.trustDomain, "user", "alice"), role: "user" });
  const cfg = load(kubeconfigForSvid(svid, "https://127.0.0.1:6443", { namespace: "prod" })) as Kubeconfig;
  expect(cfg.clusters[0]!.cluster["server"]).toBe("https://127.0.0.1:6443");
  expect(unb64(cfg.clusters[0]!.cluster["certificate-authority-data"])).toBe(ca.certPem);
  expect(cfg.users[0]!.name).toBe("alice");
  expect(unb64(cfg.users[0]!.user["client-certificate-data"])).toBe(svid.certPem);
  expect(unb64(cfg.users[0]!.user["client-key-data"])).toBe(svid.keyPem);
  expect(cfg.contexts[0]!.context).toEqual({ cluster: "beemesh", user: "alice", namespace: "prod" });
  expect(cfg["current-context"]).toBe(cfg.contexts[0]!.name);
});

test("plain HTTP (--dev-insecure) needs no credentials; HTTPS without them is refused", () => {
  const cfg = load(buildKubeconfig({ server: "http://127.0.0.1:8080" })) as Kubeconfig;
  expect(cfg.clusters[0]!.cluster).toEqual({ server: "http://127.0.0.1:8080" });
  expect(cfg.users[0]!.user).toEqual({});
  expect(() => buildKubeconfig({ server: "https://127.0.0.1:6443" })).toThrow(KubeconfigError);
  expect(() => buildKubeconfig({ server: "ftp://x" })).toThrow(/unsupported server URL/);
});
