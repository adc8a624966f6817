// Pure pieces of the scheduling edges: environment parsing, shard sampling,
// pod names, the republish authorization rule, manifest verification, lease
// records.
import { createHash } from "node:crypto";
import type { KvEntry } from "@nats-io/kv";
import { parseAgentEnv } from "../../controllers/scheduler-bidder/config.js";
import { parseKeeperEnv } from "../../controllers/lease-keeper/config.js";
import { EnvError, envTaints } from "../../controllers/common/env.js";
import { podNameFor, shardSample } from "../../controllers/scheduler-bidder/agent.js";
import {
  ManifestCache,
  ManifestDigestError,
  ManifestInvalidError,
  ManifestNotFoundError,
} from "../../controllers/scheduler-bidder/manifests.js";
import { decodeLeaseEntry, taskIdOfLeaseKey } from "../../controllers/common/lease-record.js";
import { createAuthorizer } from "../../protocol/bus/index.js";
import { parseSpiffeId } from "../../identity/spiffe-id.js";

describe("agent environment", () => {
  test("defaults and overrides", () => {
    const cfg = parseAgentEnv({
      BEEMESH_SVID_DIR: "/svid",
      BEEMESH_NATS_URL: "tls://a:4222, tls://b:4222",
      BEEMESH_SHARDS: "64",
      BEEMESH_PROBE_K: "4",
      BEEMESH_NODE_LABELS: "zone=a,disk=ssd",
      BEEMESH_NODE_TAINTS: "dedicated=gpu:NoSchedule,maintenance:NoExecute",
      BEEMESH_CAPACITY_CPU: "1500m",
      BEEMESH_CAPACITY_MEMORY: "2Gi",
      BEEMESH_CAPACITY_PODS: "20",
      BEEMESH_RUNTIME: "fake",
    });
    expect(cfg).toEqual(
      expect.objectContaining({
        natsUrls: ["tls://a:4222", "tls://b:4222"],
        shards: 64,
        probeK: 4,
        runtime: "fake",
        labels: { zone: "a", disk: "ssd" },
        taints: [
          { key: "dedicated", value: "gpu", effect: "NoSchedule" },
          { key: "maintenance", effect: "NoExecute" },
        ],
        capacity: { cpu_millis: 1500, memory_bytes: 2 * 2 ** 30, pods: 20 },
        healthPort: 9103,
        nodeId: undefined,
      }),
    );
    expect(parseAgentEnv({ BEEMESH_SVID_DIR: "/s" }).probeK).toBe("all");
  });

  test("bad values name the variable", () => {
    expect(() => parseAgentEnv({})).toThrow(/BEEMESH_SVID_DIR is required/);
    expect(() => parseAgentEnv({ BEEMESH_SVID_DIR: "/s", BEEMESH_RUNTIME: "docker" })).toThrow(EnvError);
    expect(() => parseAgentEnv({ BEEMESH_SVID_DIR: "/s", BEEMESH_SHARDS: "0" })).toThrow(/BEEMESH_SHARDS/);
    expect(() => parseAgentEnv({ BEEMESH_SVID_DIR: "/s", BEEMESH_CAPACITY_CPU: "lots" })).toThrow(
      /BEEMESH_CAPACITY_CPU/,
    );
    expect(() => parseAgentEnv({ BEEMESH_SVID_DIR: "/s", BEEMESH_NODE_ID: "Node_1" })).toThrow(
      /BEEMESH_NODE_ID/,
    );
    expect(() => envTaints({ T: "dedicated=gpu" }, "T")).toThrow(/needs an effect/);
  });

  test("keeper environment", () => {
    const cfg = parseKeeperEnv({
      BEEMESH_SVID_DIR: "/s",
      BEEMESH_WINDOW_MS: "400",
      BEEMESH_EARLY_CLOSE: "false",
    });
    expect(cfg.logic).toEqual({ windowMs: 400, windowJitterMs: 100, leaseTtlMs: 3000 });
    expect(cfg.earlyClose).toBe(false);
    expect(cfg.healthPort).toBe(9102);
  });
});

describe("shards and pod names", () => {
  test("a node samples k distinct shards, the same ones every time", () => {
    const a = shardSample("node-1", 100, 5);
    expect(a).toHaveLength(5);
    expect(new Set(a).size).toBe(5);
    expect(a.every((s) => s >= 0 && s < 100)).toBe(true);
    expect(shardSample("node-1", 100, 5)).toEqual(a);
    expect(shardSample("node-1", 4, "all")).toEqual([0, 1, 2, 3]);
    expect(shardSample("node-1", 4, 9)).toEqual([0, 1, 2, 3]);
  });

  test("samples spread over the shards", () => {
    const counts = new Array<number>(50).fill(0);
    for (let i = 0; i < 5000; i++) for (const s of shardSample(`n-${i}`, 50, 1)) counts[s]!++;
    // 100 per shard on average; a hash this even stays well inside 50..150.
    expect(Math.min(...counts)).toBeGreaterThan(50);
    expect(Math.max(...counts)).toBeLessThan(150);
  });

  test("pod names: stable for StatefulSet members, per task for Deployments, DNS labels", () => {
    expect(
      podNameFor({ kind: "StatefulSet", parent: "db", task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V", ordinal: 2 }),
    ).toBe("db-2");
    expect(podNameFor({ kind: "Deployment", parent: "web", task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V" })).toBe(
      "web-gm4cvz7k5v",
    );
    const long = podNameFor({
      kind: "Deployment",
      parent: `a.${"b".repeat(80)}`,
      task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
    });
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  });
});

describe("republished tasks in the default table", () => {
  const authorize = createAuthorizer();
  const ask = (id: string, attempt = 1) =>
    authorize({
      sender: parseSpiffeId(id),
      type: "Task",
      subject: "beemesh.scheduler.tasks.0",
      payload: { ns: "default", parent: "web", origin: "dispatcher", attempt },
    });
  test("lease-keepers republish (attempt >= 1) beside everyone else the table admits", () => {
    expect(ask("spiffe://beemesh.local/controller/dispatcher/d1", 0).allow).toBe(true);
    expect(ask("spiffe://beemesh.local/user/alice", 0).allow).toBe(true);
    expect(ask("spiffe://beemesh.local/controller/lease-keeper/lk-1", 1).allow).toBe(true);
    expect(ask("spiffe://beemesh.local/controller/lease-keeper/lk-1", 0).allow).toBe(false);
    expect(ask("spiffe://beemesh.local/node/node-1").allow).toBe(false);
    expect(ask("spiffe://beemesh.local/controller/watchdog/w").allow).toBe(false);
  });
});

function entry(
  key: string,
  value: Uint8Array,
  revision = 1,
  operation: KvEntry["operation"] = "PUT",
): KvEntry {
  return {
    bucket: "b",
    key,
    value,
    created: new Date(),
    revision,
    operation,
    length: value.length,
    rawKey: key,
    json: <T>() => JSON.parse(new TextDecoder().decode(value)) as T,
    string: () => new TextDecoder().decode(value),
  };
}

describe("manifest cache", () => {
  const manifest = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { labels: { app: "web" } },
    spec: { containers: [{ name: "app", image: "x" }] },
  };
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  const sha = createHash("sha256").update(bytes).digest("hex");

  test("verifies the digest, parses, caches by digest", async () => {
    let gets = 0;
    const store = new Map<string, KvEntry>([["m", entry("m", bytes)]]);
    const cache = new ManifestCache({ get: async (k: string) => (gets++, store.get(k) ?? null) });
    const [a, b] = await Promise.all([
      cache.get({ key: "m", sha256: sha }),
      cache.get({ key: "m", sha256: sha }),
    ]);
    expect(a.labels).toEqual({ app: "web" });
    expect(b).toBe(a);
    expect(gets).toBe(1);
    await expect(cache.get({ key: "m", sha256: "0".repeat(64) })).rejects.toBeInstanceOf(ManifestDigestError);
    await expect(cache.get({ key: "gone", sha256: "1".repeat(64) })).rejects.toBeInstanceOf(
      ManifestNotFoundError,
    );
    const junk = new TextEncoder().encode('{"kind":"Pod"}');
    store.set("j", entry("j", junk));
    await expect(
      cache.get({ key: "j", sha256: createHash("sha256").update(junk).digest("hex") }),
    ).rejects.toBeInstanceOf(ManifestInvalidError);
  });
});

describe("lease records", () => {
  const lease = (fencing: number) =>
    new TextEncoder().encode(
      JSON.stringify({
        task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V",
        winner_id: "node-1",
        expires_at: 1,
        version: 0,
        fencing_token: fencing,
        granted: 1,
      }),
    );
  test("fencing token 0 means the entry's own revision", () => {
    expect(decodeLeaseEntry(entry("task.x", lease(0), 7))?.fencingToken).toBe(7);
    expect(decodeLeaseEntry(entry("task.x", lease(5), 9))?.fencingToken).toBe(5);
    expect(decodeLeaseEntry(entry("task.x", lease(5), 9, "DEL"))).toBeUndefined();
    expect(decodeLeaseEntry(entry("task.x", new TextEncoder().encode("{"), 9))).toBeUndefined();
    expect(taskIdOfLeaseKey("task.ABC")).toBe("ABC");
    expect(taskIdOfLeaseKey("identity.a.b.0")).toBeUndefined();
  });
});
