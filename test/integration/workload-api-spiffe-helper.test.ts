// The spiffe-helper against a real Workload API socket: it writes cert, key and
// bundle, and on every rotation signals a real process (SIGHUP) or calls back.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { createCa, issueSvid, uriSanOf } from "../../identity/ca.js";
import type { CertificateAuthority } from "../../identity/ca.js";
import { importPkcs8Pem, subtle, x509, SIGN_ALG } from "../../identity/crypto.js";
import { runSpiffeHelper } from "../../identity/spiffe-helper.js";
import type { SpiffeHelperUpdate } from "../../identity/spiffe-helper.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { verifySvidChain } from "../../identity/verify.js";
import { WorkloadApiServer } from "../../identity/workload-api/index.js";
import type { Clock } from "../../identity/clock.js";

const TD = "beemesh.local";
const POD = spiffeId(TD, "ns", "shop", "deployment", "cart", "cart-0");
const REPO = resolve(import.meta.dirname, "../..");

let ca: CertificateAuthority;
let dir: string;
let srv: WorkloadApiServer;
let n = 0;
const children: ChildProcess[] = [];
/** Rotation timers the server set; a test fires them instead of waiting out half an SVID's life. */
let rotationTimers: (() => void)[] = [];
const manualTimers: Clock = {
  now: () => Date.now(),
  setTimer: (fn) => {
    rotationTimers.push(fn);
    return () => {
      rotationTimers = rotationTimers.filter((t) => t !== fn);
    };
  },
};

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD });
  dir = await mkdtemp(join(tmpdir(), "bm-sh-"));
});
beforeEach(() => {
  rotationTimers = [];
  srv = new WorkloadApiServer({
    issue: (id, publicKey) =>
      issueSvid(ca, { id, role: "workload", ttlMs: 60 * 60 * 1000, ...(publicKey ? { publicKey } : {}) }),
    clock: manualTimers,
  });
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await srv.close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Values pushed by callbacks, awaited one at a time with a bound. */
class Queue<T> {
  private items: T[] = [];
  private waiters: ((v: T) => void)[] = [];
  push(v: T): void {
    const w = this.waiters.shift();
    if (w) w(v);
    else this.items.push(v);
  }
  next(ms = 10_000, what = "value"): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise<T>((resolveNext, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${what} within ${ms} ms`));
      }, ms);
      const waiter = (v: T) => {
        clearTimeout(timer);
        resolveNext(v);
      };
      this.waiters.push(waiter);
    });
  }
}

/** A real process that prints a line per SIGHUP. */
async function hupCounter(): Promise<{ child: ChildProcess; lines: Queue<string> }> {
  const child = spawn(
    process.execPath,
    [
      "-e",
      "process.on('SIGHUP', () => console.log('HUP')); setInterval(() => {}, 1000); console.log('ready');",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.push(child);
  const lines = new Queue<string>();
  createInterface({ input: child.stdout! }).on("line", (l) => lines.push(l));
  expect(await lines.next(10_000, "ready line")).toBe("ready");
  return { child, lines };
}

async function readFiles(
  out: string,
): Promise<{ leaf: x509.X509Certificate; keyPem: string; bundlePem: string }> {
  const certPem = await readFile(join(out, "svid.pem"), "utf8");
  const keyPem = await readFile(join(out, "svid_key.pem"), "utf8");
  const bundlePem = await readFile(join(out, "svid_bundle.pem"), "utf8");
  return { leaf: new x509.X509Certificate(certPem), keyPem, bundlePem };
}

async function keyMatches(leaf: x509.X509Certificate, keyPem: string): Promise<boolean> {
  const key = await importPkcs8Pem(keyPem);
  const data = new TextEncoder().encode("x");
  const sig = await subtle.sign(SIGN_ALG, key, data);
  const pub = await leaf.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
  return subtle.verify(SIGN_ALG, pub, sig, data);
}

test("writes the SVID files and signals the workload on each rotation", async () => {
  const socket = join(dir, `pod-${n++}`, "agent.sock");
  const out = join(dir, `certs-${n++}`);
  await srv.addPod("shop/cart-0", POD, socket);
  const { child, lines } = await hupCounter();
  const updates = new Queue<SpiffeHelperUpdate>();
  const ac = new AbortController();
  const running = runSpiffeHelper({
    socketPath: socket,
    dir: out,
    notify: { pid: child.pid! },
    onUpdate: (u) => updates.push(u),
    signal: ac.signal,
  });
  try {
    const first = await updates.next(10_000, "first update");
    expect(first.sequence).toBe(1);
    expect(first.spiffeId).toBe(POD.toString());
    expect(await lines.next(5000, "first SIGHUP")).toBe("HUP");
    const files1 = await readFiles(out);
    expect(uriSanOf(files1.leaf)).toBe(POD.toString());
    expect(
      (
        await verifySvidChain(new Uint8Array(files1.leaf.rawData), files1.bundlePem, Date.now(), TD)
      ).toString(),
    ).toBe(POD.toString());
    expect(files1.bundlePem.trim()).toBe(ca.certPem.trim());
    expect(await keyMatches(files1.leaf, files1.keyPem)).toBe(true);
    expect((await stat(join(out, "svid_key.pem"))).mode & 0o777).toBe(0o600);

    // Half the SVID's life has passed: the server rotates and pushes.
    expect(rotationTimers).toHaveLength(1);
    rotationTimers.shift()!();
    const second = await updates.next(5000, "rotation");
    expect(second.sequence).toBe(2);
    expect(await lines.next(5000, "second SIGHUP")).toBe("HUP");
    const files2 = await readFiles(out);
    expect(files2.leaf.serialNumber).not.toBe(files1.leaf.serialNumber);
    expect(await keyMatches(files2.leaf, files2.keyPem)).toBe(true);
    expect(await keyMatches(files2.leaf, files1.keyPem)).toBe(false);
  } finally {
    ac.abort();
    await running;
  }
});

test("keeps retrying until the socket appears", async () => {
  const socket = join(dir, `pod-${n++}`, "agent.sock");
  const out = join(dir, `certs-${n++}`);
  const updates = new Queue<SpiffeHelperUpdate>();
  const ac = new AbortController();
  const running = runSpiffeHelper({
    socketPath: socket,
    dir: out,
    onUpdate: (u) => updates.push(u),
    signal: ac.signal,
    reconnect: { initialMs: 50, maxMs: 200 },
  });
  try {
    await srv.addPod("shop/cart-0", POD, socket);
    const first = await updates.next(10_000, "first update after the socket appeared");
    expect(first.spiffeId).toBe(POD.toString());
  } finally {
    ac.abort();
    await running;
  }
});

test("the CLI writes the files once and exits", async () => {
  const socket = join(dir, `pod-${n++}`, "agent.sock");
  const out = join(dir, `certs-${n++}`);
  await srv.addPod("shop/cart-0", POD, socket);
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO, "cli/spiffe-helper.ts"), "--socket", socket, "--dir", out, "--once"],
    { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] },
  );
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
  const files = await readFiles(out);
  expect(uriSanOf(files.leaf)).toBe(POD.toString());
  expect(await keyMatches(files.leaf, files.keyPem)).toBe(true);
}, 30_000);
