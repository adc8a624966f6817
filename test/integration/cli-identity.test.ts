// beemeshctl's identity commands as an operator runs them (child processes):
// ca init, svid issue (checked by openssl), join-token create + join against a
// real join server, kubeconfig.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCa, uriSanOf } from "../../identity/ca.js";
import { x509 } from "../../identity/crypto.js";
import { JoinAuthority, JoinTokenStore, caCertHash, hashJoinToken } from "../../identity/join.js";
import { startJoinServer, type JoinServer } from "../../identity/join-http.js";
import { parseKubeconfig } from "../../cli/commands/api-client.js";
import { killAllChildren, runCliChild } from "./cli-child.js";

let dir: string;
let caDir: string;
let joinServer: JoinServer | undefined;

function openssl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile("openssl", args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === "number"
          ? (err as { code: number }).code
          : 1
        : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;

function oneErrorLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  return lines[0]!;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "beemesh-cli-id-"));
  caDir = join(dir, "state", "ca");
});

afterAll(async () => {
  killAllChildren();
  await joinServer?.close();
  await rm(dir, { recursive: true, force: true });
});

test("ca init creates the CA once and prints the hash nodes pin; a second run keeps it", async () => {
  const first = await runCliChild(["ca", "init", "--dir", caDir, "--trust-domain", "beemesh.local"]);
  expect(first.stderr).toBe("");
  expect(first.code).toBe(0);
  const ca = await loadCa(caDir);
  const hash = caCertHash(ca.cert);
  expect(first.stdout).toBe(`CA for spiffe://beemesh.local created in ${caDir}\nca-cert-hash: ${hash}\n`);
  expect(await mode(join(caDir, "ca.key"))).toBe(0o600);
  const keyBefore = await readFile(join(caDir, "ca.key"), "utf8");

  const second = await runCliChild(["ca", "init", "--dir", caDir]);
  expect(second.code).toBe(0);
  expect(second.stdout).toBe(`CA for spiffe://beemesh.local already in ${caDir}\nca-cert-hash: ${hash}\n`);
  expect(await readFile(join(caDir, "ca.key"), "utf8")).toBe(keyBefore);

  const other = await runCliChild(["ca", "init", "--dir", caDir, "--trust-domain", "other.example"]);
  expect(other.code).toBe(1);
  expect(oneErrorLine(other.stderr)).toBe(
    `error: the CA in ${caDir} is for trust domain beemesh.local, not other.example`,
  );
});

test("svid issue writes a chain openssl verifies, a 0600 key that matches it, and the bundle", async () => {
  const out = join(dir, "nats-server");
  const before = Date.now();
  const r = await runCliChild([
    "svid",
    "issue",
    "--ca-dir",
    caDir,
    "--id",
    "spiffe://beemesh.local/controller/nats-server/n1",
    "--role",
    "nats-server",
    "--out",
    out,
    "--ttl",
    "2h",
    "--dns",
    "localhost",
    "--ip",
    "127.0.0.1",
  ]);
  const after = Date.now();
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(
    /^issued spiffe:\/\/beemesh\.local\/controller\/nats-server\/n1 \(role nats-server\) valid until /,
  );

  const verify = await openssl(["verify", "-CAfile", join(out, "bundle.crt"), join(out, "svid.crt")]);
  expect(verify.out.trim()).toBe(`${join(out, "svid.crt")}: OK`);
  expect(verify.code).toBe(0);
  expect(await mode(join(out, "svid.key"))).toBe(0o600);

  const leaf = new x509.X509Certificate(await readFile(join(out, "svid.crt"), "utf8"));
  expect(uriSanOf(leaf)).toBe("spiffe://beemesh.local/controller/nats-server/n1");
  expect(leaf.subject).toBe("OU=nats-server, O=beemesh");
  const sans = (await openssl(["x509", "-in", join(out, "svid.crt"), "-noout", "-ext", "subjectAltName"]))
    .out;
  expect(sans).toContain("DNS:localhost");
  expect(sans).toContain("IP Address:127.0.0.1");
  // notAfter is the child's "now" + 2 h, to the second: between our clock before and after the run.
  expect(leaf.notAfter.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 2 * 3_600_000);
  expect(leaf.notAfter.getTime()).toBeLessThanOrEqual(after + 2 * 3_600_000);

  // The key is the certificate's key.
  const certPub = await openssl(["x509", "-in", join(out, "svid.crt"), "-noout", "-pubkey"]);
  const keyPub = await openssl(["pkey", "-in", join(out, "svid.key"), "-pubout"]);
  expect(keyPub.out).toBe(certPub.out);
});

test("svid issue refuses an ID outside the CA's trust domain, exit 1 on one line", async () => {
  const r = await runCliChild([
    "svid",
    "issue",
    "--ca-dir",
    caDir,
    "--id",
    "spiffe://evil.example/user/x",
    "--role",
    "user",
    "--out",
    join(dir, "x"),
  ]);
  expect(r.code).toBe(1);
  expect(oneErrorLine(r.stderr)).toMatch(
    /refusing to issue spiffe:\/\/evil\.example\/user\/x outside trust domain beemesh\.local/,
  );
});

describe("join-token create + join against a real join server", () => {
  const storePath = () => join(dir, "state", "join-tokens.json");

  beforeAll(async () => {
    const ca = await loadCa(caDir);
    joinServer = await startJoinServer({
      authority: new JoinAuthority({ ca, store: new JoinTokenStore(storePath()) }),
      ca,
      port: 0,
    });
  });

  async function createToken(nodeId?: string): Promise<{ token: string; hash: string }> {
    const r = await runCliChild([
      "join-token",
      "create",
      "--ca-dir",
      caDir,
      "--store",
      storePath(),
      "--ttl",
      "10m",
      ...(nodeId ? ["--node-id", nodeId] : []),
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const token = /^token: ([A-Za-z0-9_-]{43})$/m.exec(r.stdout)?.[1];
    const hash = /^ca-cert-hash: (sha256:[0-9a-f]{64})$/m.exec(r.stdout)?.[1];
    expect(token).toBeDefined();
    expect(hash).toBe(joinServer!.caCertHash);
    if (nodeId) expect(r.stdout).toContain(`node-id: ${nodeId}\n`);
    return { token: token!, hash: hash! };
  }

  test("a node joins once with its token and gets a verifiable node SVID; the token is then spent", async () => {
    const { token, hash } = await createToken("n1");
    // Only the token's hash is stored.
    const store = await readFile(storePath(), "utf8");
    expect(store).not.toContain(token);
    expect(store).toContain(hashJoinToken(token));
    expect(await mode(storePath())).toBe(0o600);

    const out = join(dir, "node-n1");
    const r = await runCliChild([
      "join",
      "--url",
      joinServer!.url,
      "--token",
      token,
      "--ca-hash",
      hash,
      "--node-id",
      "n1",
      "--out",
      out,
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^joined as spiffe:\/\/beemesh\.local\/node\/n1 \(valid until /);
    const verify = await openssl(["verify", "-CAfile", join(out, "bundle.crt"), join(out, "svid.crt")]);
    expect(verify.code).toBe(0);
    expect(await mode(join(out, "svid.key"))).toBe(0o600);
    const leaf = new x509.X509Certificate(await readFile(join(out, "svid.crt"), "utf8"));
    expect(uriSanOf(leaf)).toBe("spiffe://beemesh.local/node/n1");
    expect(leaf.subject).toBe("OU=scheduler-bidder, O=beemesh");

    const again = await runCliChild([
      "join",
      "--url",
      joinServer!.url,
      "--token",
      token,
      "--ca-hash",
      hash,
      "--node-id",
      "n1",
      "--out",
      join(dir, "node-n1b"),
    ]);
    expect(again.code).toBe(1);
    expect(oneErrorLine(again.stderr)).toMatch(/server refused the join: used-token/);
    expect(again.stderr).not.toContain(token);
  });

  test("the token may come from BEEMESH_JOIN_TOKEN; a wrong CA pin sends nothing and fails", async () => {
    const { token, hash } = await createToken();
    const wrongPin = `sha256:${"0".repeat(64)}`;
    const pinned = await runCliChild(
      [
        "join",
        "--url",
        joinServer!.url,
        "--ca-hash",
        wrongPin,
        "--node-id",
        "n2",
        "--out",
        join(dir, "node-n2"),
      ],
      {
        env: { BEEMESH_JOIN_TOKEN: token },
      },
    );
    expect(pinned.code).toBe(1);
    expect(oneErrorLine(pinned.stderr)).toMatch(/no certificate in the server's bundle matches the CA pin/);

    const r = await runCliChild(
      ["join", "--url", joinServer!.url, "--ca-hash", hash, "--node-id", "n2", "--out", join(dir, "node-n2")],
      {
        env: { BEEMESH_JOIN_TOKEN: token },
      },
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const leaf = new x509.X509Certificate(await readFile(join(dir, "node-n2", "svid.crt"), "utf8"));
    expect(uriSanOf(leaf)).toBe("spiffe://beemesh.local/node/n2");
  });
});

test("kubeconfig writes a 0600 file holding a fresh user SVID for the server", async () => {
  const file = join(dir, "alice.kubeconfig");
  const r = await runCliChild([
    "kubeconfig",
    "--ca-dir",
    caDir,
    "--user",
    "alice",
    "--server",
    "https://127.0.0.1:6443",
    "--out",
    file,
    "-n",
    "team-a",
  ]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(
    /^wrote .*alice\.kubeconfig \(spiffe:\/\/beemesh\.local\/user\/alice, valid until /,
  );
  expect(await mode(file)).toBe(0o600);
  const target = await parseKubeconfig(await readFile(file, "utf8"), file);
  expect(target.server).toBe("https://127.0.0.1:6443");
  expect(target.namespace).toBe("team-a");
  expect(target.caPem).toBe((await loadCa(caDir)).certPem);
  const cert = new x509.X509Certificate(target.certPem!);
  expect(uriSanOf(cert)).toBe("spiffe://beemesh.local/user/alice");
  expect(cert.subject).toBe("OU=user, O=beemesh");
});
