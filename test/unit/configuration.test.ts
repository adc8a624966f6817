// Configuration across the controllers (docs/configuration.md): one name per
// meaning, every variable a controller reads documented, every variable the
// deployments set for a controller read by it, and what the renderer and the
// node agent write into a sidecar's env is what the sidecar reads.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadAll } from "js-yaml";
import { parseDispatcherConfig } from "../../controllers/dispatcher/main.js";
import { DispatcherConfigError } from "../../controllers/dispatcher/dispatcher.js";
import { renderWorkload } from "../../controllers/dispatcher/fanout/render.js";
import { EnvError } from "../../controllers/common/env.js";
import { parseKeeperEnv } from "../../controllers/lease-keeper/config.js";
import { parseAgentEnv } from "../../controllers/scheduler-bidder/config.js";
import { withPodFacts } from "../../controllers/scheduler-bidder/agent.js";
import type { PodManifest } from "../../controllers/scheduler-bidder/runtime/index.js";
import { configFromEnv } from "../../controllers/watchdog/main.js";
import { WATCHDOG_CONTAINER_NAME, parseBeemeshDeployment } from "../../protocol/index.js";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const read = (path: string) => readFileSync(join(repo, path), "utf8");

type Controller = "dispatcher" | "lease-keeper" | "scheduler-bidder" | "watchdog";

/** The settings the lease-keeper and the node agent share (NATS, SVID, health, log level). */
const PROCESS_SETTINGS = "controllers/common/process-settings.ts";

/** Where each controller reads its environment. */
const SOURCES: Record<Controller, string[]> = {
  dispatcher: ["controllers/dispatcher/main.ts"],
  "lease-keeper": ["controllers/lease-keeper/config.ts", PROCESS_SETTINGS],
  "scheduler-bidder": ["controllers/scheduler-bidder/config.ts", PROCESS_SETTINGS],
  watchdog: ["controllers/watchdog/main.ts"],
};

/** Variables a controller reads: the names quoted in its env files, and the log level every one reads by default. */
function readBy(c: Controller): Set<string> {
  const names = SOURCES[c].flatMap((f) => [...read(f).matchAll(/"(BEEMESH_[A-Z0-9_]+)"/g)].map((m) => m[1]!));
  return new Set([...names, "BEEMESH_LOG_LEVEL"]);
}

/** The variables in the first column of the table under `## <heading>` of docs/configuration.md. */
function documented(heading: string): Set<string> {
  const doc = read("docs/configuration.md");
  const start = doc.indexOf(`\n## ${heading}`);
  if (start < 0) throw new Error(`docs/configuration.md has no section "${heading}"`);
  const end = doc.indexOf("\n## ", start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  return new Set([...section.matchAll(/^\| `(BEEMESH_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));
}

const HEADINGS: Record<Controller, string> = {
  dispatcher: "dispatcher",
  "lease-keeper": "lease-keeper",
  "scheduler-bidder": "scheduler-bidder (node agent)",
  watchdog: "watchdog (sidecar of every BeemeshDeployment pod)",
};

const sorted = (s: Iterable<string>) => [...s].sort();

describe("docs/configuration.md", () => {
  it.each(Object.keys(SOURCES) as Controller[])("documents exactly what the %s reads", (c) => {
    expect(sorted(documented(HEADINGS[c]))).toEqual(sorted(readBy(c)));
  });
});

describe("one name per meaning", () => {
  function tsFiles(dir: string): string[] {
    return readdirSync(join(repo, dir)).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(join(repo, path)).isDirectory()) return tsFiles(path);
      return path.endsWith(".ts") ? [path] : [];
    });
  }

  it("no controller reads a retired name", () => {
    const retired = [
      "BEEMESH_SUBJECT_PREFIX", // BEEMESH_PREFIX
      "BEEMESH_TASK_SHARDS", // BEEMESH_SHARDS
      "BEEMESH_WATCHDOG_HEALTH_PORT", // BEEMESH_HEALTH_PORT
      "BEEMESH_WATCHDOG_IMAGE", // the dispatcher's BEEMESH_SIDECAR_IMAGE
      "BEEMESH_ACCEPT_KEEPER_REPUBLISH", // lease-keepers republish by the default table
    ];
    const hits = tsFiles("controllers").flatMap((f) =>
      retired.filter((name) => read(f).includes(`"${name}"`)).map((name) => `${f}: ${name}`),
    );
    expect(hits).toEqual([]);
  });

  it("the controllers agree on the prefix, shards and health variables", () => {
    for (const c of ["dispatcher", "lease-keeper", "scheduler-bidder", "watchdog"] as const) {
      const names = readBy(c);
      expect([c, names.has("BEEMESH_PREFIX"), names.has("BEEMESH_HEALTH_PORT")]).toEqual([c, true, true]);
    }
    for (const c of ["dispatcher", "scheduler-bidder", "watchdog"] as const)
      expect([c, readBy(c).has("BEEMESH_SHARDS")]).toEqual([c, true]);
    for (const c of ["dispatcher", "lease-keeper", "scheduler-bidder"] as const)
      expect([c, readBy(c).has("BEEMESH_HEALTH_HOST")]).toEqual([c, true]);
  });
});

describe("what the deployments set is read", () => {
  type Env = Array<{ name: string }>;
  interface Workload {
    kind?: string;
    spec?: { template?: { spec?: { containers?: Array<{ name: string; env?: Env }> } } };
  }

  it.each<[string, Controller]>([
    ["deploy/kind/dispatcher.yaml", "dispatcher"],
    ["deploy/kind/lease-keeper.yaml", "lease-keeper"],
    ["deploy/kind/node-agent.yaml", "scheduler-bidder"],
  ])("%s", (file, c) => {
    const docs = loadAll(read(file)) as Workload[];
    const set = docs
      .flatMap((d) => d?.spec?.template?.spec?.containers ?? [])
      .flatMap((ct) => ct.env ?? [])
      .map((e) => e.name)
      .filter((n) => n.startsWith("BEEMESH_"));
    expect(set.length).toBeGreaterThan(0);
    const reads = readBy(c);
    expect(set.filter((n) => !reads.has(n))).toEqual([]);
  });

  it.each<[string, Controller]>([
    ["dispatcher", "dispatcher"],
    ["lease-keeper", "lease-keeper"],
    ["node-agent", "scheduler-bidder"],
  ])("deploy/podman/compose.yaml service %s", (service, c) => {
    const compose = loadAll(read("deploy/podman/compose.yaml"))[0] as {
      services: Record<string, { environment?: Record<string, string> }>;
    };
    const set = Object.keys(compose.services[service]?.environment ?? {}).filter((n) =>
      n.startsWith("BEEMESH_"),
    );
    expect(set.length).toBeGreaterThan(0);
    const reads = readBy(c);
    expect(set.filter((n) => !reads.has(n))).toEqual([]);
  });
});

describe("what hack/up.sh starts the controllers with is read", () => {
  // `start_controller <name> <controller dir> VAR=value ...`, with COMMON=(VAR=value ...) spliced in.
  const text = read("hack/up.sh");
  const common = [...(/^COMMON=\(([^)]*)\)/m.exec(text)?.[1] ?? "").matchAll(/(BEEMESH_[A-Z0-9_]+)=/g)].map(
    (m) => m[1]!,
  );
  const calls = text
    .split(/\n\s*start_controller /)
    .slice(1)
    .map((chunk) => {
      const call = chunk.split(/\n\s*(?:done|start_controller |\})/)[0] ?? "";
      const dir = call.trim().split(/\s+/)[1] ?? "";
      return { dir, vars: [...call.matchAll(/(BEEMESH_[A-Z0-9_]+)=/g)].map((m) => m[1]!) };
    });

  it.each<Controller>(["dispatcher", "lease-keeper", "scheduler-bidder"])("%s", (c) => {
    const started = calls.filter((k) => k.dir === c);
    expect(started.length).toBeGreaterThan(0);
    const reads = readBy(c);
    expect(started.flatMap((k) => k.vars.filter((v) => !reads.has(v)))).toEqual([]);
  });

  it("the settings given to every controller are mesh-wide names some controller reads", () => {
    const all = new Set((Object.keys(SOURCES) as Controller[]).flatMap((c) => [...readBy(c)]));
    expect(common.length).toBeGreaterThan(0);
    expect(common.filter((v) => !all.has(v))).toEqual([]);
  });
});

describe("env written for a sidecar is env the sidecar reads", () => {
  it("the renderer's and the node agent's variables configure the watchdog completely", () => {
    const parsed = parseBeemeshDeployment({
      apiVersion: "beemesh.io/v1alpha1",
      kind: "BeemeshDeployment",
      metadata: { name: "web.v2", namespace: "shop", uid: "uid-7", generation: 3 },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: "web" } },
        template: {
          metadata: { labels: { app: "web" } },
          spec: { containers: [{ name: "app", image: "localhost/app:1" }] },
        },
        watchdogSidecar: { intervalSeconds: 2, ttlIntervals: 4 },
      },
    });
    if (!parsed.ok) throw parsed.error;
    const r = renderWorkload(parsed.value, { natsUrl: "tls://n1:4222", prefix: "region1", shards: 8 });
    const placed = withPodFacts(r.manifests[0]!.manifest as PodManifest, {
      podName: "web-v2-abcdefghij",
      nodeId: "node-3",
      taskId: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
    });
    const sidecar = placed.spec.containers.find((c) => c.name === WATCHDOG_CONTAINER_NAME)!;
    const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e.value]));
    const cfg = configFromEnv(env);
    expect(cfg).toMatchObject({
      natsUrl: "tls://n1:4222",
      prefix: "region1",
      taskShards: 8,
      socketPath: "/run/beemesh/workload-api/agent.sock",
      logic: { intervalMs: 2000, ttlIntervals: 4 },
      target: {
        ns: "shop",
        parent: "web.v2",
        parentUid: "uid-7",
        pod: "web-v2-abcdefghij",
        nodeId: "node-3",
        taskId: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
        generation: 3,
        templateHash: r.templateHash,
      },
    });
    // Only the sidecar gets the pod facts; the app's env is the user's.
    const app = placed.spec.containers.find((c) => c.name === "app")!;
    expect(app.env ?? []).toEqual([]);
    // The stored manifest is untouched (it is shared by every replica).
    expect(JSON.stringify(r.manifests[0]!.manifest)).not.toContain("web-v2-abcdefghij");
  });
});

describe("the variables each controller reads", () => {
  it("lease-keeper and node agent take BEEMESH_HEALTH_HOST like the dispatcher", () => {
    const base = { BEEMESH_SVID_DIR: "/s" };
    expect(parseKeeperEnv(base).healthHost).toBe("127.0.0.1");
    expect(parseKeeperEnv({ ...base, BEEMESH_HEALTH_HOST: "0.0.0.0" }).healthHost).toBe("0.0.0.0");
    expect(parseAgentEnv({ ...base, BEEMESH_HEALTH_HOST: "0.0.0.0" }).healthHost).toBe("0.0.0.0");
  });

  it("the node agent and the dispatcher count the same shards by default", () => {
    const agent = parseAgentEnv({ BEEMESH_SVID_DIR: "/s" });
    const dispatcher = parseDispatcherConfig({ BEEMESH_NATS_URL: "tls://x:1", BEEMESH_SVID_DIR: "/s" }, []);
    expect(agent.shards).toBe(dispatcher.shards);
  });

  it("the dispatcher sizes the sidecars it injects", () => {
    const base = { BEEMESH_NATS_URL: "tls://x:1", BEEMESH_SVID_DIR: "/s" };
    expect(
      parseDispatcherConfig({ ...base, BEEMESH_SIDECAR_CPU: "20m", BEEMESH_SIDECAR_MEMORY: "48Mi" }, [])
        .sidecarResources,
    ).toEqual({ cpu: "20m", memory: "48Mi" });
    expect(() => parseDispatcherConfig({ ...base, BEEMESH_SIDECAR_CPU: "20m" }, [])).toThrow(
      DispatcherConfigError,
    );
    expect(() => parseDispatcherConfig({ ...base, BEEMESH_API_PORT: "http" }, [])).toThrow(
      /BEEMESH_API_PORT/,
    );
  });

  it("the node agent reads its pods' Workload API settings with the shared parsers", () => {
    const base = { BEEMESH_SVID_DIR: "/s" };
    expect(parseAgentEnv(base).workloadIdentity).toBeUndefined();
    expect(
      parseAgentEnv({
        ...base,
        BEEMESH_CA_DIR: "/ca",
        BEEMESH_WORKLOAD_API_DIR: "/run/wl",
        BEEMESH_POD_ADDRESS_RANGE: "127.42.1.0/24",
        BEEMESH_WORKLOAD_SVID_TTL_S: "600",
      }).workloadIdentity,
    ).toEqual({
      caDir: "/ca",
      trustDomain: undefined,
      socketDir: "/run/wl",
      podAddressRange: "127.42.1.0/24",
      svidTtlMs: 600_000,
    });
    expect(() =>
      parseAgentEnv({ ...base, BEEMESH_CA_DIR: "/ca", BEEMESH_POD_ADDRESS_RANGE: "10.0.0.0/24" }),
    ).toThrow(EnvError);
    expect(() => parseAgentEnv({ ...base, BEEMESH_CA_DIR: "/ca", BEEMESH_WORKLOAD_SVID_TTL_S: "0" })).toThrow(
      /BEEMESH_WORKLOAD_SVID_TTL_S/,
    );
  });
});
