// deploy/podman/compose.yaml: parses, keeps every service on the host network
// and 127.0.0.1, health-checks every service, and mounts exactly the folders
// hack/deploy-certs.ts --target podman writes (whose nats.conf nats-server accepts).
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { load } from "js-yaml";
import { PODMAN_DIRS, PODMAN_NATS_MOUNT, writePodmanCerts } from "../../hack/deploy-certs.js";

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, "../..");
const DIR = join(REPO, "deploy/podman");

interface ComposeService {
  image?: string;
  network_mode?: string;
  ports?: unknown[];
  user?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test?: string[]; disable?: boolean };
  cap_drop?: string[];
  read_only?: boolean;
  "x-no-healthcheck-reason"?: string;
}

const compose = load(readFileSync(join(DIR, "compose.yaml"), "utf8")) as {
  services: Record<string, ComposeService>;
};
const services = Object.entries(compose.services);
const CONTROLLERS: Record<string, string> = {
  dispatcher: "dispatcher",
  "lease-keeper": "lease-keeper",
  "node-agent": "scheduler-bidder",
};

/** Bind mounts of a service as [host source, container target]. */
const mounts = (s: ComposeService): [string, string][] =>
  (s.volumes ?? []).map((v) => {
    const [source = "", target = ""] = v.split(":");
    return [source, target];
  });

let certs: string;
beforeAll(async () => {
  certs = mkdtempSync(join(tmpdir(), "beemesh-podman-certs-"));
  await writePodmanCerts({
    out: certs,
    nodes: ["local"],
    namespace: "beemesh-system",
    trustDomain: "beemesh.local",
    prefix: "beemesh",
    natsReplicas: 1,
    ttlMs: 60 * 60 * 1000,
    natsTlsDir: "",
    natsStoreDir: "",
  });
});
afterAll(() => rmSync(certs, { recursive: true, force: true }));

describe("deploy/podman/compose.yaml", () => {
  it("parses, with the mesh's services and each controller's entry point", () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      "dispatcher",
      "lease-keeper",
      "nats",
      "node-agent",
    ]);
    for (const [name, main] of Object.entries(CONTROLLERS)) {
      expect(compose.services[name]?.command).toEqual(["node", `/app/dist/controllers/${main}/main.js`]);
    }
    expect(compose.services["nats"]?.entrypoint).toEqual(["nats-server"]);
  });

  it("puts every service on the host network with no published ports", () => {
    for (const [name, s] of services) {
      expect([name, s.network_mode, s.ports]).toEqual([name, "host", undefined]);
    }
  });

  it("names no address but 127.0.0.1 in any setting or healthcheck", () => {
    for (const [name, s] of services) {
      const text = [
        ...Object.values(s.environment ?? {}),
        ...(s.healthcheck?.test ?? []),
        ...(s.command ?? []),
      ].join(" ");
      for (const m of text.matchAll(/[a-z]+:\/\/([^:/\s'"]+)/g))
        expect([name, m[1]]).toEqual([name, "127.0.0.1"]);
      for (const m of text.matchAll(/\b\d{1,3}(?:\.\d{1,3}){3}\b/g))
        expect([name, m[0]]).toEqual([name, "127.0.0.1"]);
    }
    expect(compose.services["dispatcher"]?.environment?.["BEEMESH_API_HOST"]).toBe("127.0.0.1");
  });

  it("health-checks every service (or says why not), each controller on its own health port", () => {
    const ports = new Set<string>();
    for (const [name, s] of services) {
      const documented =
        typeof s["x-no-healthcheck-reason"] === "string" && s["x-no-healthcheck-reason"].length > 0;
      const checked = (s.healthcheck?.test?.length ?? 0) > 1 && s.healthcheck?.disable !== true;
      expect([name, checked || documented]).toEqual([name, true]);
      const port = s.environment?.["BEEMESH_HEALTH_PORT"];
      if (port === undefined) continue;
      expect([name, ports.has(port)]).toEqual([name, false]);
      ports.add(port);
      expect([name, s.healthcheck?.test?.join(" ")]).toEqual([
        name,
        expect.stringContaining(`http://127.0.0.1:${port}/readyz`),
      ]);
    }
    expect(ports.size).toBe(3);
  });

  it("drops every capability and runs read-only; only the node agent is root (for the host's podman socket)", () => {
    for (const [name, s] of services) {
      expect([name, s.cap_drop, s.read_only]).toEqual([name, ["ALL"], true]);
      expect([name, s.user]).toEqual([name, name === "node-agent" ? "0:0" : "65532:65532"]);
    }
  });

  it("mounts exactly the folders hack/deploy-certs.ts writes, at the paths the services read", () => {
    const generated = readdirSync(certs).sort();
    expect(generated).toEqual([...PODMAN_DIRS, "ca"].sort());
    const stateMounts = services
      .flatMap(([, s]) => mounts(s))
      .filter(([source]) => source.startsWith("./state/"));
    // The CA and the admin key are never mounted into a container.
    expect(stateMounts.map(([source]) => source.slice("./state/".length)).sort()).toEqual(
      PODMAN_DIRS.filter((d) => d !== "admin").sort(),
    );
    for (const [name, s] of services) {
      const svidDir = s.environment?.["BEEMESH_SVID_DIR"];
      if (svidDir === undefined) continue;
      const mount = mounts(s).find(([, target]) => target === svidDir);
      expect([name, mount?.[0]]).toEqual([name, `./state/${name}`]);
      expect(s.volumes?.find((v) => v.startsWith(`./state/${name}:`))).toMatch(/:ro$/);
      const files = readdirSync(join(certs, name));
      expect(files).toEqual(expect.arrayContaining(["svid.crt", "svid.key", "bundle.crt"]));
      for (const key of ["BEEMESH_API_TLS_CERT", "BEEMESH_API_TLS_KEY"]) {
        const path = s.environment?.[key];
        if (path) expect(files).toContain(path.slice(svidDir.length + 1));
      }
    }
    expect(mounts(compose.services["nats"]!)).toContainEqual(["./state/nats", PODMAN_NATS_MOUNT]);
  });

  it("gives the node agent the host's podman socket and the Workload API directory at the host's path", () => {
    const agent = compose.services["node-agent"]!;
    const env = agent.environment ?? {};
    expect(env["BEEMESH_RUNTIME"]).toBe("podman");
    const socket = env["CONTAINER_HOST"]?.replace(/^unix:\/\//, "");
    expect(mounts(agent)).toContainEqual([socket, socket]);
    const apiDir = env["BEEMESH_WORKLOAD_API_DIR"];
    expect(mounts(agent)).toContainEqual([apiDir, apiDir]);
    expect(readFileSync(join(DIR, "README.md"), "utf8")).toMatch(
      /Why the node agent uses the host's podman socket/,
    );
  });

  it("the generated nats.conf listens on 127.0.0.1 only and nats-server accepts it", async () => {
    const conf = readFileSync(join(certs, "nats", "nats.conf"), "utf8");
    const listens = [...conf.matchAll(/^\s*(?:listen|http):\s*"([^"]+)"/gm)].map((m) => m[1]);
    expect(listens).toEqual(["127.0.0.1:4222", "127.0.0.1:8222"]);
    expect(compose.services["nats"]?.command).toEqual(["--config", `${PODMAN_NATS_MOUNT}/nats.conf`]);
    // Inside the container ./state/nats is /nats; here the same files sit under the temp folder.
    const local = join(certs, "nats", "nats.local.conf");
    writeFileSync(local, conf.replaceAll(`"${PODMAN_NATS_MOUNT}/`, `"${join(certs, "nats")}/`));
    const { stdout, stderr } = await run("nats-server", ["-t", "-c", local]).catch(
      (err: { stdout?: string; stderr?: string }) => ({
        stdout: err.stdout ?? "",
        stderr: err.stderr ?? String(err),
      }),
    );
    expect(`${stdout}${stderr}`).toContain("is valid");
  });
});
