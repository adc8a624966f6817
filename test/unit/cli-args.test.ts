// beemeshctl's command line, in process: dispatch, --help for every command,
// usage errors (exit 2, one line, before any I/O), and the small parsers.
import { buildKubeconfig } from "../../cli/kubeconfig.js";
import { COMMANDS, findCommand, runCli } from "../../cli/beemeshctl.js";
import { parseKubeconfig, kubeconfigPath } from "../../cli/commands/api-client.js";
import {
  CliError,
  EXIT,
  UsageError,
  describeError,
  formatDuration,
  parseDuration,
  type CliContext,
} from "../../cli/commands/common.js";
import { eventFilter } from "../../cli/commands/events.js";
import { natsSettings } from "../../cli/commands/nats-client.js";
import { parseResourceArgs, resolveResource } from "../../cli/commands/resources.js";

interface Run {
  code: number;
  out: string;
  err: string;
}

function fakeContext(env: Record<string, string> = {}): { ctx: CliContext; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CliContext = {
    io: { out: (t) => void out.push(t), err: (t) => void err.push(t), readStdin: async () => "" },
    env,
    now: () => 1_700_000_000_000,
    signal: new AbortController().signal,
    cwd: "/nonexistent-cwd",
    homeDir: "/nonexistent-home",
  };
  return { ctx, out, err };
}

async function run(argv: string[], env: Record<string, string> = {}): Promise<Run> {
  const { ctx, out, err } = fakeContext(env);
  const code = await runCli(argv, ctx);
  return { code, out: out.join(""), err: err.join("") };
}

describe("dispatch and help", () => {
  test("no arguments prints the command list on stderr and exits 2", async () => {
    const r = await run([]);
    expect(r.code).toBe(EXIT.usage);
    for (const c of COMMANDS) expect(r.err).toContain(c.path.join(" "));
    expect(r.out).toBe("");
  });

  test.each([["--help"], ["-h"], ["help"]])(
    "%s prints the command list on stdout and exits 0",
    async (flag) => {
      const r = await run([flag]);
      expect(r.code).toBe(EXIT.ok);
      expect(r.out).toContain("Exit codes: 0 success, 1 failure, 2 wrong usage.");
    },
  );

  test.each(COMMANDS.map((c) => [c.path.join(" "), c] as const))(
    "%s --help shows usage and every option",
    async (name, entry) => {
      const cmd = await entry.load();
      const r = await run([...entry.path, "--help"]);
      expect(r.code).toBe(EXIT.ok);
      expect(r.out).toContain(`beemeshctl ${name}`);
      for (const opt of Object.keys(cmd.options)) expect(r.out).toContain(`--${opt}`);
      expect(r.out).toContain("-h, --help");
      // `help <command>` is the same text.
      expect((await run(["help", ...entry.path])).out).toBe(r.out);
    },
  );

  test("unknown commands and bare groups are usage errors on one line", async () => {
    const unknown = await run(["frobnicate"]);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toBe(`error: unknown command "frobnicate" (see 'beemeshctl --help')\n`);
    const group = await run(["ca"]);
    expect(group.code).toBe(EXIT.usage);
    expect(group.err).toContain("ca init");
    expect((await run(["ca", "--help"])).code).toBe(EXIT.ok);
  });

  test("the longest command path wins: join-token create is not join", () => {
    expect(findCommand(["join-token", "create", "--x"])?.entry.path).toEqual(["join-token", "create"]);
    expect(findCommand(["join", "--url", "u"])?.rest).toEqual(["--url", "u"]);
    expect(findCommand(["rollout"])).toBeUndefined();
  });
});

describe("usage errors exit 2 before any I/O", () => {
  const cases: [string, string[], RegExp][] = [
    [
      "unknown option",
      ["ca", "init", "--bogus"],
      /^error: Unknown option '--bogus' \(see 'beemeshctl ca init --help'\)\n$/,
    ],
    ["missing required option", ["ca", "init"], /--dir is required/],
    ["positional where none is taken", ["ca", "init", "--dir", "x", "extra"], /Unexpected argument 'extra'/],
    ["option without its value", ["ca", "init", "--dir"], /--dir/],
    ["bad trust domain", ["ca", "init", "--dir", "x", "--trust-domain", "Bad_TD!"], /--trust-domain/],
    [
      "bad SPIFFE ID",
      ["svid", "issue", "--ca-dir", "c", "--out", "o", "--role", "user", "--id", "http://x/y"],
      /--id: identity: scheme/,
    ],
    [
      "bad duration",
      [
        "svid",
        "issue",
        "--ca-dir",
        "c",
        "--out",
        "o",
        "--role",
        "user",
        "--id",
        "spiffe://a/b",
        "--ttl",
        "5x",
      ],
      /--ttl must look like/,
    ],
    [
      "bad IP",
      [
        "svid",
        "issue",
        "--ca-dir",
        "c",
        "--out",
        "o",
        "--role",
        "user",
        "--id",
        "spiffe://a/b",
        "--ip",
        "localhost",
      ],
      /--ip "localhost" is not an IP/,
    ],
    [
      "zero ttl",
      ["join-token", "create", "--ca-dir", "c", "--store", "s", "--ttl", "0s"],
      /--ttl must be longer than zero/,
    ],
    [
      "token twice",
      [
        "join",
        "--url",
        "https://x",
        "--ca-hash",
        "h",
        "--node-id",
        "n",
        "--out",
        "o",
        "--token",
        "t",
        "--token-file",
        "f",
      ],
      /not both/,
    ],
    [
      "no token",
      ["join", "--url", "https://x", "--ca-hash", "h", "--node-id", "n", "--out", "o"],
      /--token \(or --token-file, or BEEMESH_JOIN_TOKEN\) is required/,
    ],
    [
      "kubeconfig without a CA for https",
      ["kubeconfig", "--server", "https://127.0.0.1:6443", "--user", "a"],
      /--ca-dir is required/,
    ],
    ["kubeconfig with a bad URL", ["kubeconfig", "--server", "not a url"], /is not a URL/],
    [
      "unknown resource type",
      ["get", "pods"],
      /unknown resource type "pods"; known: bmd \(beemeshdeployments\), bmss/,
    ],
    ["unknown output", ["get", "bmd", "-o", "xml"], /--output must be one of yaml, json, wide, name/],
    ["-A with a name", ["get", "bmd", "web", "-A"], /-A lists/],
    ["mixed TYPE NAME and TYPE/NAME", ["get", "bmd", "bmss/db"], /not both/],
    ["apply without -f", ["apply"], /-f FILE is required/],
    ["delete without names", ["delete", "bmd"], /name the objects to delete/],
    ["rollout without a name", ["rollout", "status", "bmd"], /name one object/],
    ["rollout with a zero timeout", ["rollout", "status", "bmd/web", "--timeout", "0m"], /longer than zero/],
    ["bad namespace", ["get", "bmd", "-n", "Not_A_Label"], /namespace "Not_A_Label" is not a DNS-1123 label/],
    ["events --for without a name", ["events", "--for", "bmd", "--svid-dir", "d"], /--for takes TYPE\/NAME/],
    [
      "events --since garbage",
      ["events", "--since", "yesterday", "--svid-dir", "d"],
      /--since must look like/,
    ],
    ["events without an SVID", ["events"], /--svid-dir \(or BEEMESH_SVID_DIR\) is required/],
    ["nodes with a bad prefix", ["nodes", "--svid-dir", "d", "--prefix", "a..b"], /--prefix/],
    ["nodes -o yaml", ["nodes", "-o", "yaml", "--svid-dir", "d"], /--output must be one of json, wide/],
  ];
  test.each(cases)("%s", async (_what, argv, message) => {
    const r = await run(argv);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(message);
    expect(r.err.trimEnd().split("\n")).toHaveLength(1);
    expect(r.out).toBe("");
  });

  test("a command that fails at run time exits 1 with one line", async () => {
    const r = await run([
      "svid",
      "issue",
      "--ca-dir",
      "/nonexistent/ca",
      "--out",
      "/nonexistent/o",
      "--role",
      "user",
      "--id",
      "spiffe://beemesh.local/user/a",
    ]);
    expect(r.code).toBe(EXIT.failure);
    expect(r.err).toMatch(/^error: ENOENT: no such file or directory, open '\/nonexistent\/ca\/ca\.crt'\n$/);
  });
});

describe("parsers", () => {
  test.each([
    ["90s", 90_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["1.5h", 5_400_000],
    ["250ms", 250],
    ["7d", 604_800_000],
    ["0s", 0],
  ])("parseDuration(%s) = %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each(["", "5", "m5", "5x", "1h 2m", "-5m", "5mm"])("parseDuration refuses %j", (text) => {
    expect(() => parseDuration(text, "--ttl")).toThrow(UsageError);
  });

  test.each([
    [300_000, "5m0s"],
    [5_400_000, "1h30m0s"],
    [45_000, "45s"],
    [500, "500ms"],
  ])("formatDuration(%d) = %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  test("describeError folds causes and newlines into one line, without repeating itself", () => {
    const inner = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:4222"), { code: "ECONNREFUSED" });
    const outer = new CliError("cannot connect to tls://127.0.0.1:4222 as spiffe://beemesh.local/user/a", {
      cause: inner,
    });
    expect(describeError(outer)).toBe(
      "cannot connect to tls://127.0.0.1:4222 as spiffe://beemesh.local/user/a: connect ECONNREFUSED 127.0.0.1:4222",
    );
    expect(describeError(new Error("first line\n  second line"))).toBe("first line; second line");
    const coded = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    expect(describeError(new CliError("cannot reach https://x", { cause: coded }))).toBe(
      "cannot reach https://x: socket hang up (ECONNRESET)",
    );
    expect(describeError("plain")).toBe("plain");
  });

  test.each([
    ["bmd", "beemeshdeployments"],
    ["BMD", "beemeshdeployments"],
    ["beemeshdeployment", "beemeshdeployments"],
    ["beemeshdeployments.beemesh.io", "beemeshdeployments"],
    ["bmss", "beemeshstatefulsets"],
    ["beemeshstatefulset", "beemeshstatefulsets"],
  ])("resolveResource(%s) is %s", (text, plural) => {
    expect(resolveResource(text).plural).toBe(plural);
  });

  test("parseResourceArgs takes TYPE, TYPE NAME..., and TYPE/NAME...", () => {
    expect(parseResourceArgs(["bmd"]).map((r) => [r.type.shortName, r.name])).toEqual([["bmd", undefined]]);
    expect(parseResourceArgs(["bmd", "a", "b"]).map((r) => [r.type.shortName, r.name])).toEqual([
      ["bmd", "a"],
      ["bmd", "b"],
    ]);
    expect(parseResourceArgs(["bmd/a", "bmss/b"]).map((r) => [r.type.shortName, r.name])).toEqual([
      ["bmd", "a"],
      ["bmss", "b"],
    ]);
    expect(() => parseResourceArgs([])).toThrow(/name a resource type/);
    expect(() => parseResourceArgs(["bmd/"])).toThrow(/expected TYPE\/NAME/);
    expect(() => parseResourceArgs(["bmd/a/b"])).toThrow(/expected TYPE\/NAME/);
  });

  test("eventFilter: -n alone, --for with and without -n, nothing", () => {
    expect(eventFilter(undefined, undefined)).toEqual({});
    expect(eventFilter("prod", undefined)).toEqual({ ns: "prod" });
    expect(eventFilter(undefined, "bmd/web")).toEqual({ kind: "Deployment", ns: "default", name: "web" });
    expect(eventFilter("prod", "bmss/db")).toEqual({ kind: "StatefulSet", ns: "prod", name: "db" });
  });

  test("natsSettings: flags beat the environment, which beats the default", () => {
    const ctx = {
      env: { BEEMESH_NATS_URL: "tls://10.0.0.1:4222", BEEMESH_SVID_DIR: "/env/svid" },
      cwd: "/work",
    };
    expect(natsSettings({}, ctx)).toEqual({
      servers: ["tls://10.0.0.1:4222"],
      svidDir: "/env/svid",
      prefix: "beemesh",
    });
    expect(
      natsSettings({ nats: "tls://a:1, tls://b:2", "svid-dir": "rel", prefix: "r1.beemesh" }, ctx),
    ).toEqual({
      servers: ["tls://a:1", "tls://b:2"],
      svidDir: "/work/rel",
      prefix: "r1.beemesh",
    });
    expect(natsSettings({ "svid-dir": "d" }, { env: {}, cwd: "/" }).servers).toEqual([
      "tls://127.0.0.1:4222",
    ]);
  });

  test("kubeconfigPath: --kubeconfig, then the first $KUBECONFIG entry, then ~/.kube/config", () => {
    const base = { cwd: "/work", homeDir: "/home/u" };
    expect(kubeconfigPath("k.yaml", { ...base, env: { KUBECONFIG: "/a:/b" } })).toBe("/work/k.yaml");
    expect(kubeconfigPath(undefined, { ...base, env: { KUBECONFIG: ":/a:/b" } })).toBe("/a");
    expect(kubeconfigPath(undefined, { ...base, env: {} })).toBe("/home/u/.kube/config");
  });

  test("parseKubeconfig resolves the current context, its namespace and embedded credentials", async () => {
    const text = buildKubeconfig({
      server: "https://127.0.0.1:6443",
      caPem: "CA PEM",
      certPem: "CERT PEM",
      keyPem: "KEY PEM",
      user: "alice",
      namespace: "prod",
    });
    const t = await parseKubeconfig(text, "/k/config");
    expect(t).toEqual({
      server: "https://127.0.0.1:6443",
      namespace: "prod",
      caPem: "CA PEM",
      certPem: "CERT PEM",
      keyPem: "KEY PEM",
      insecureSkipVerify: false,
    });
    await expect(parseKubeconfig(text, "/k/config", "other")).rejects.toThrow(
      /context "other" is not in \/k\/config/,
    );
    await expect(parseKubeconfig("clusters: 3\ncontexts: []\n", "/k/config")).rejects.toThrow(
      /malformed at \/clusters: Expected array/,
    );
    const plain = await parseKubeconfig(buildKubeconfig({ server: "http://127.0.0.1:8080" }), "/k/config");
    expect(plain).toEqual({
      server: "http://127.0.0.1:8080",
      namespace: "default",
      insecureSkipVerify: false,
    });
  });
});
