// beemeshctl events and nodes against a real nats-server (mutual TLS,
// per-role permissions, JetStream): events signed by nodes and lease-keepers
// are shown, a forged one is dropped, filters and --watch work; nodes lists
// the beemesh-nodes bucket. The CLI connects as a user SVID, as people do.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ulid } from "ulid";
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { writeSvidFiles, createCa, issueSvid } from "../../identity/ca.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { ensureSchedulingInfra } from "../../controllers/common/nats-setup.js";
import { subjects, type Event } from "../../protocol/index.js";
import { exampleNodeStatus } from "../../protocol/examples.js";
import { runCli } from "../../cli/beemeshctl.js";
import type { CliContext } from "../../cli/commands/common.js";
import { startNats, type NatsFixture } from "../helpers/nats-server.js";
import { busAs, sampleEvent, type TestBus } from "../helpers/bus.js";
import { killAllChildren, runCliChild, startCli } from "./cli-child.js";

let nats: NatsFixture;
let dir: string;
let svidDir: string;
let node: TestBus;
let keeper: TestBus;
let forger: TestBus;
let dispatcherNc: NatsConnection;
let nodesKv: KV;
const s = subjects();
const webTasks = { deployed: ulid(), forged: ulid(), live: ulid() };
const dbTask = ulid();

async function publish(bus: TestBus, ev: Event): Promise<void> {
  await bus.bus.publishDurable(s.events(ev.kind, ev.ns, ev.parent), "Event", ev);
}

const natsArgs = () => ["--nats", `tls://${nats.url}`, "--svid-dir", svidDir];

/** In process (for the injected clock), same code path as the binary. */
async function runInProcess(
  args: string[],
  now = Date.now,
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CliContext = {
    io: { out: (t) => void out.push(t), err: (t) => void err.push(t), readStdin: async () => "" },
    env: {},
    now,
    signal: new AbortController().signal,
    cwd: dir,
    homeDir: dir,
  };
  const code = await runCli([...args, ...natsArgs()], ctx);
  return { code, out: out.join(""), err: err.join("") };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "beemesh-cli-nats-"));
  nats = await startNats();
  dispatcherNc = await nats.connectAs(await nats.issue("dispatcher"));
  await ensureSchedulingInfra(dispatcherNc, { create: true });
  svidDir = join(dir, "alice");
  await writeSvidFiles(svidDir, "svid", await nats.issue("user", "user", "alice"));

  node = await busAs(nats, "scheduler-bidder", ["node", "node-1"]);
  keeper = await busAs(nats, "lease-keeper", ["controller", "lease-keeper", "lk-1"]);
  // A pod of Deployment "other", publishing as if it spoke for "web": NATS lets its role publish
  // events, so only the per-message authorization can catch it.
  forger = await busAs(nats, "watchdog", ["ns", "default", "deployment", "other", "other-1"]);

  await publish(
    node,
    sampleEvent("default", "web", {
      task_id: webTasks.deployed,
      status: "deployed",
      node_id: "node-1",
      pod: "web-abc12",
      details: "pod running",
    }),
  );
  await publish(
    keeper,
    sampleEvent("prod", "db", {
      task_id: dbTask,
      kind: "StatefulSet",
      status: "leased",
      node_id: "node-1",
      ordinal: 0,
    }),
  );
  await publish(forger, sampleEvent("default", "web", { task_id: webTasks.forged, status: "removed" }));

  nodesKv = await new Kvm(node.bus.nc).open("beemesh-nodes");
  await writeNodes();
}, 40_000);

/** Node records seen just now and 5 minutes ago, and one that does not parse. */
async function writeNodes(): Promise<void> {
  await nodesKv.put("node-1", JSON.stringify({ ...exampleNodeStatus(), last_seen: Date.now() }));
  await nodesKv.put(
    "node-2",
    JSON.stringify({
      ...exampleNodeStatus(),
      node_id: "node-2",
      labels: {},
      last_seen: Date.now() - 300_000,
    }),
  );
  await nodesKv.put("broken", JSON.stringify({ node_id: "broken" }));
}

afterAll(async () => {
  killAllChildren();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("events shows verified events as a table and drops the forged one with a warning", async () => {
  const r = await runCliChild(["events", ...natsArgs()]);
  expect(r.code).toBe(0);
  const lines = r.stdout.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^TIME\s+KIND\s+NS\/NAME\s+STATUS\s+NODE\s+TASK\s+DETAILS$/);
  expect(lines).toHaveLength(3);
  expect(lines[1]).toMatch(
    new RegExp(
      `^\\S+Z\\s+Deployment\\s+default/web\\s+deployed\\s+node-1\\s+${webTasks.deployed}\\s+pod=web-abc12 pod running$`,
    ),
  );
  expect(lines[2]).toMatch(
    new RegExp(`StatefulSet\\s+prod/db\\s+leased\\s+node-1\\s+${dbTask}\\s+ordinal=0$`),
  );
  expect(r.stdout).not.toContain(webTasks.forged);
  expect(r.stderr).toMatch(
    /warning: dropped event #3 on beemesh\.scheduler\.events\.deployment\.default\.web: unauthorized \(.*other.*\)/,
  );
  expect(r.stderr).toContain("warning: 1 event(s) failed verification and are not shown");
});

test("-n and --for narrow the subject; -o json carries the verified sender", async () => {
  const prod = await runInProcess(["events", "-n", "prod"]);
  expect(prod.code).toBe(0);
  expect(prod.out).toContain(dbTask);
  expect(prod.out).not.toContain(webTasks.deployed);

  const web = await runInProcess(["events", "--for", "bmd/web", "-o", "json"]);
  expect(web.code).toBe(0);
  const events = web.out
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({
    task_id: webTasks.deployed,
    status: "deployed",
    sender: "spiffe://beemesh.local/node/node-1",
    subject: "beemesh.scheduler.events.deployment.default.web",
  });

  const none = await runInProcess(["events", "--for", "bmss/web"]);
  expect(none).toMatchObject({ code: 0, out: "", err: "No events found.\n" });
});

test("--since starts at now minus the duration (by the clock the CLI is given)", async () => {
  expect((await runInProcess(["events", "--since", "10m"])).out).toContain(dbTask);
  // Ten minutes from now, "the last five minutes" holds nothing yet.
  const later = await runInProcess(["events", "--since", "5m"], () => Date.now() + 600_000);
  expect(later).toMatchObject({ code: 0, out: "", err: "No events found.\n" });
});

test("events --watch prints the backlog, then new events as they come, until interrupted", async () => {
  const watch = startCli(["events", "--watch", "-n", "default", ...natsArgs()]);
  await watch.waitForOutput(new RegExp(webTasks.deployed));
  await publish(
    node,
    sampleEvent("default", "web", {
      task_id: webTasks.live,
      status: "removed",
      node_id: "node-1",
      pod: "web-abc12",
    }),
  );
  const line = await watch.waitForOutput(new RegExp(`.*${webTasks.live}.*`));
  expect(line).toMatch(/default\/web\s+removed\s+node-1/);
  watch.child.kill("SIGINT");
  const done = await watch.done;
  expect(done.code).toBe(0);
  expect(done.stdout).not.toContain(dbTask);
});

test("nodes lists each node's use, capacity, labels and age; a broken entry is reported", async () => {
  // Ages are printed against the wall clock: written again here, not minutes earlier in beforeAll.
  await writeNodes();
  const r = await runCliChild(["nodes", ...natsArgs()]);
  expect(r.code).toBe(0);
  const lines = r.stdout.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^NODE\s+CPU\s+MEMORY\s+PODS\s+LABELS\s+LAST SEEN$/);
  expect(lines[1]).toMatch(
    /^node-1\s+250m\/4\s+64Mi\/8Gi\s+1\/110\s+kubernetes\.io\/os=linux,zone=a\s+\d+s ago$/,
  );
  expect(lines[2]).toMatch(/^node-2\s+250m\/4\s+64Mi\/8Gi\s+1\/110\s+<none>\s+5m\d*s? ago$/);
  expect(lines).toHaveLength(3);
  expect(r.stderr).toMatch(/^warning: node broken: protocol: invalid NodeStatus: /);
});

test("an SVID from another trust domain's CA cannot connect (exit 1, one line)", async () => {
  const other = await createCa({ trustDomain: "evil.example" });
  const evilDir = join(dir, "evil");
  const svid = await issueSvid(other, { id: spiffeId("evil.example", "user", "eve"), role: "user" });
  // Trust the real server, present a foreign client certificate.
  await writeSvidFiles(evilDir, "svid", { ...svid, bundlePem: nats.ca.certPem });
  const r = await runCliChild(["nodes", "--nats", `tls://${nats.url}`, "--svid-dir", evilDir]);
  expect(r.code).toBe(1);
  expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(r.stderr).toMatch(
    /^error: cannot connect to tls:\/\/127\.0\.0\.1:\d+ as spiffe:\/\/evil\.example\/user\/eve \(no answer; is this SVID from the mesh's CA\?\): timeout\n$/,
  );
});
