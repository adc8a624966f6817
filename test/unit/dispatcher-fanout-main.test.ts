// The dispatcher's entry: settings from the environment and flags (read in
// main only), contradictions refused; and the keyed work queue it runs on.
import { parseDispatcherConfig } from "../../controllers/dispatcher/main.js";
import { DispatcherConfigError } from "../../controllers/dispatcher/dispatcher.js";
import { KeyedQueue } from "../../controllers/dispatcher/fanout/index.js";

const BASE = { BEEMESH_NATS_URL: "tls://127.0.0.1:4222", BEEMESH_SVID_DIR: "/var/run/beemesh/svid" };

describe("parseDispatcherConfig", () => {
  it("has defaults for everything but NATS and the SVID", () => {
    expect(parseDispatcherConfig(BASE, [])).toEqual({
      natsServers: ["tls://127.0.0.1:4222"],
      svidDir: "/var/run/beemesh/svid",
      trustDomain: "beemesh.local",
      prefix: "beemesh",
      source: "api",
      api: { port: 6443, host: "127.0.0.1", devInsecure: false },
      health: { port: 9100, host: "127.0.0.1" },
      shards: 16,
      logLevel: "info",
      replicas: 1,
    });
  });

  it("reads every variable, and flags win over the environment", () => {
    const cfg = parseDispatcherConfig(
      {
        ...BASE,
        BEEMESH_NATS_URL: "tls://a:4222, tls://b:4222",
        BEEMESH_TRUST_DOMAIN: "example.org",
        BEEMESH_SOURCE: "kubernetes",
        BEEMESH_API_PORT: "18443",
        BEEMESH_HEALTH_PORT: "9101",
        BEEMESH_HEALTH_HOST: "0.0.0.0",
        BEEMESH_SHARDS: "64",
        BEEMESH_LOG_LEVEL: "debug",
        BEEMESH_DEV_INSECURE: "true",
        BEEMESH_API_TLS_CERT: "/c",
        BEEMESH_API_TLS_KEY: "/k",
        BEEMESH_SIDECAR_IMAGE: "localhost/x:1",
      },
      ["--source=api"],
    );
    expect(cfg).toMatchObject({
      natsServers: ["tls://a:4222", "tls://b:4222"],
      trustDomain: "example.org",
      source: "api",
      api: { port: 18443, devInsecure: true, tlsCertFile: "/c", tlsKeyFile: "/k" },
      health: { port: 9101, host: "0.0.0.0" },
      shards: 64,
      logLevel: "debug",
      sidecarImage: "localhost/x:1",
    });
    expect(parseDispatcherConfig(BASE, ["--dev-insecure"]).api.devInsecure).toBe(true);
  });

  it.each([
    ["no NATS URL", { BEEMESH_SVID_DIR: "/s" }, [], /BEEMESH_NATS_URL/],
    ["no SVID directory", { BEEMESH_NATS_URL: "tls://x:1" }, [], /BEEMESH_SVID_DIR/],
    ["an unknown source", BASE, ["--source=etcd"], /source must be/],
    ["an unknown flag", BASE, ["--frobnicate"], /frobnicate/],
    [
      "dev-insecure on another host",
      { ...BASE, BEEMESH_API_HOST: "0.0.0.0" },
      ["--dev-insecure"],
      /127\.0\.0\.1 only/,
    ],
    ["a certificate without its key", { ...BASE, BEEMESH_API_TLS_CERT: "/c" }, [], /go together/],
    ["zero shards", { ...BASE, BEEMESH_SHARDS: "0" }, [], /BEEMESH_SHARDS/],
    ["a bad log level", { ...BASE, BEEMESH_LOG_LEVEL: "loud" }, [], /BEEMESH_LOG_LEVEL/],
  ] as const)("refuses %s", (_what, env, argv, message) => {
    expect(() => parseDispatcherConfig(env, argv)).toThrow(DispatcherConfigError);
    expect(() => parseDispatcherConfig(env, argv)).toThrow(message);
  });
});

describe("KeyedQueue", () => {
  it("runs one item per key at a time, the newest pending item replacing older ones", async () => {
    const seen: string[] = [];
    let release: (() => void) | undefined;
    const gate = new Promise<void>((r) => (release = r));
    const q = new KeyedQueue<number>({
      handle: async (key, item) => {
        seen.push(`${key}:${item}`);
        if (item === 1) await gate;
      },
    });
    q.add("a", 1);
    q.add("a", 2);
    q.add("a", 3);
    q.add("b", 1);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(["a:1", "b:1"]);
    release!();
    await q.idle();
    expect(seen).toEqual(["a:1", "b:1", "a:3"]);
  });

  it("retries a failure with backoff and drops a terminal one", async () => {
    let calls = 0;
    const errors: number[] = [];
    const q = new KeyedQueue<string>({
      baseBackoffMs: 1,
      handle: async (_key, item) => {
        calls++;
        if (item === "flaky" && calls < 3) throw new Error("try again");
        if (item === "broken") throw new Error("never");
      },
      onError: (_key, err, attempt) => {
        errors.push(attempt);
        return (err as Error).message !== "never";
      },
    });
    q.add("x", "flaky");
    await q.idle();
    expect(calls).toBe(3);
    expect(errors).toEqual([1, 2]);
    q.add("y", "broken");
    await q.idle();
    expect(calls).toBe(4);
    expect(errors).toEqual([1, 2, 1]);
    await q.stop();
  });
});
