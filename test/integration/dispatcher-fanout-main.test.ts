// The dispatcher as its container runs it: `main.ts` in its own process,
// configured only by the environment and flags, its SVID read from a
// directory; ready on /readyz, serving the API, publishing Tasks, and leaving
// cleanly (exit 0) on SIGTERM.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startNats, freePort, type NatsFixture } from "../helpers/nats-server.js";
import { waitFor, withTimeout } from "../helpers/wait.js";
import { writeSvidFiles } from "../../identity/ca.js";
import { STREAMS } from "../../protocol/index.js";

let nats: NatsFixture;
let admin: NatsConnection;
let dir: string;
let child: ChildProcess | undefined;
let output = "";

beforeAll(async () => {
  nats = await startNats();
  admin = await nats.connectAs(await nats.issue("admin"));
  dir = await mkdtemp(join(tmpdir(), "beemesh-dispatcher-main-"));
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
  await admin?.close();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("main.ts starts from its environment, publishes Tasks for an API object and exits 0 on SIGTERM", async () => {
  const svidDir = join(dir, "svid");
  await writeSvidFiles(svidDir, "svid", await nats.issue("dispatcher", "controller", "dispatcher", "main-0"));
  const [apiPort, healthPort] = [await freePort(), await freePort()];
  child = spawn(
    join(process.cwd(), "node_modules/.bin/tsx"),
    ["controllers/dispatcher/main.ts", "--dev-insecure"],
    {
      cwd: process.cwd(),
      env: {
        PATH: process.env["PATH"] ?? "",
        HOME: dir,
        BEEMESH_NATS_URL: nats.urls.map((u) => `tls://${u}`).join(","),
        BEEMESH_SVID_DIR: svidDir,
        BEEMESH_TRUST_DOMAIN: nats.trustDomain,
        BEEMESH_API_PORT: String(apiPort),
        BEEMESH_HEALTH_PORT: String(healthPort),
        BEEMESH_SHARDS: "2",
        BEEMESH_LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));

  await waitFor(async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok, {
    timeoutMs: 30_000,
    intervalMs: 100,
    what: `the dispatcher's /readyz (output so far: ${output.slice(-2000)})`,
  });
  const res = await fetch(
    `http://127.0.0.1:${apiPort}/apis/beemesh.io/v1alpha1/namespaces/default/beemeshdeployments`,
    {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        apiVersion: "beemesh.io/v1alpha1",
        kind: "BeemeshDeployment",
        metadata: { name: "web", namespace: "default" },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: { containers: [{ name: "app", image: "localhost/app:1" }] },
          },
        },
      }),
    },
  );
  expect(res.status).toBe(201);
  const jsm = await jetstreamManager(admin);
  await waitFor(async () => (await jsm.streams.info(STREAMS.tasks)).state.messages === 2, {
    timeoutMs: 15_000,
    what: "2 tasks",
  });
  // The stream holds a Task a moment before the dispatcher has read its ack and counted it.
  const stored = /beemesh_dispatcher_tasks_total\{[^}]*outcome="stored"[^}]*\} (\d+)/;
  const storedCount = await waitFor(
    async () => {
      const text = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
      const n = Number(stored.exec(text)?.[1] ?? 0);
      return n >= 2 ? n : undefined;
    },
    { timeoutMs: 10_000, what: "Tasks counted as stored in /metrics" },
  );
  // Two replicas, two Tasks: none counted twice.
  expect(storedCount).toBe(2);

  child.kill("SIGTERM");
  expect(await withTimeout(exited, 25_000, "exit after SIGTERM")).toBe(0);
  expect(output).toMatch(/"msg":"dispatcher stopped"/);
}, 60_000);
