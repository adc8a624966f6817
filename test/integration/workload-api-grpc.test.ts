// The SPIFFE Workload API over real gRPC on real unix sockets: one socket per
// pod, each serving only its pod's identity, rotated at half life.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createCa, issueSvid } from "../../identity/ca.js";
import type { CertificateAuthority, Svid } from "../../identity/ca.js";
import type { Clock } from "../../identity/clock.js";
import type { CryptoKey } from "../../identity/crypto.js";
import { x509 } from "../../identity/crypto.js";
import type { IdentityLog } from "../../identity/log.js";
import type { SpiffeId } from "../../identity/spiffe-id.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { verifySvidChain } from "../../identity/verify.js";
import {
  WorkloadApiClient,
  WorkloadApiServer,
  createWorkloadApiStub,
  securityMetadata,
} from "../../identity/workload-api/index.js";
import type { X509Context } from "../../identity/workload-api/index.js";

const TD = "beemesh.local";
const POD_A = spiffeId(TD, "ns", "default", "deployment", "web", "web-a");
const POD_B = spiffeId(TD, "ns", "default", "deployment", "web", "web-b");

let ca: CertificateAuthority;
let dir: string;
const servers: WorkloadApiServer[] = [];
const clients: WorkloadApiClient[] = [];
const aborts: AbortController[] = [];

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD });
  dir = await mkdtemp(join(tmpdir(), "bm-wl-"));
});
afterEach(async () => {
  for (const a of aborts.splice(0)) a.abort();
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let socketN = 0;
function socketPath(pod: string): string {
  return join(dir, `${pod}-${socketN++}`, "agent.sock");
}

function caIssuer(
  ttlMs: number,
  calls: SpiffeId[] = [],
): (id: SpiffeId, publicKey?: CryptoKey) => Promise<Svid> {
  return (id, publicKey) => {
    calls.push(id);
    return issueSvid(ca, { id, role: "workload", ttlMs, ...(publicKey ? { publicKey } : {}) });
  };
}

function server(opts: ConstructorParameters<typeof WorkloadApiServer>[0]): WorkloadApiServer {
  const s = new WorkloadApiServer(opts);
  servers.push(s);
  return s;
}

function client(path: string): WorkloadApiClient {
  const c = new WorkloadApiClient({ socketPath: path });
  clients.push(c);
  return c;
}

function watch(c: WorkloadApiClient): AsyncIterator<X509Context> {
  const ac = new AbortController();
  aborts.push(ac);
  return c.watchX509Context(ac.signal)[Symbol.asyncIterator]();
}

/** The next stream message, or a failure after `ms` (a bound, not a sleep). */
async function next<T>(it: AsyncIterator<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no stream message within ${ms} ms`)), ms);
  });
  try {
    const r = await Promise.race([it.next(), timeout]);
    if (r.done) throw new Error("stream ended");
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

function statusOf(stream: grpc.ClientReadableStream<unknown>): Promise<grpc.status> {
  return new Promise((resolve) => {
    stream.on("data", () => undefined);
    stream.on("error", (err: grpc.ServiceError) => resolve(err.code));
    stream.on("end", () => resolve(grpc.status.OK));
  });
}

function unaryStatus(
  call: (cb: grpc.requestCallback<unknown>) => grpc.ClientUnaryCall,
): Promise<grpc.status> {
  return new Promise((resolve) => {
    call((err) => resolve(err ? err.code : grpc.status.OK));
  });
}

test("a client gets its SVID at once, then a rotated one before the first expires", async () => {
  // Real timers: rotation at half of 6 s leaves the old SVID seconds of life when the new one lands.
  const srv = server({ issue: caIssuer(6000) });
  const path = socketPath("a");
  await srv.addPod("default/web-a", POD_A, path);
  const it = watch(client(path));

  const first = await next(it);
  expect(first.svids).toHaveLength(1);
  const a1 = first.svids[0]!;
  expect(a1.spiffeId.toString()).toBe(POD_A.toString());
  const der = new Uint8Array(a1.chain[0]!.rawData);
  expect((await verifySvidChain(der, a1.bundle, Date.now(), TD)).toString()).toBe(POD_A.toString());
  expect(a1.bundle.map((c) => c.toString("pem").trim())).toEqual([ca.certPem.trim()]);
  expect(a1.chain).toHaveLength(1); // the root lives in the bundle, not in x509_svid

  const second = await next(it, 10_000);
  const a2 = second.svids[0]!;
  expect(a2.spiffeId.toString()).toBe(POD_A.toString());
  expect(a2.chain[0]!.serialNumber).not.toBe(a1.chain[0]!.serialNumber);
  expect(Buffer.from(a2.privateKeyDer).equals(Buffer.from(a1.privateKeyDer))).toBe(false);
  // Rotated at half life: the new SVID arrived while the old one was still valid.
  expect(Date.now()).toBeLessThan(a1.notAfter.getTime());
  expect(a2.notAfter.getTime()).toBeGreaterThan(a1.notAfter.getTime());
});

test("each socket serves only its own pod's identity", async () => {
  const issued: SpiffeId[] = [];
  const srv = server({ issue: caIssuer(2000, issued) });
  const pathA = socketPath("a");
  const pathB = socketPath("b");
  await srv.addPod("default/web-a", POD_A, pathA);
  await srv.addPod("default/web-b", POD_B, pathB);

  const itB = watch(client(pathB));
  const itA = watch(client(pathA));
  const seenOnB: string[] = [];
  const seenOnA: string[] = [];
  // Two messages each: the first SVID and the rotated one.
  for (let i = 0; i < 2; i++) {
    for (const s of (await next(itB, 5000)).svids) {
      seenOnB.push(s.spiffeId.toString());
      const uris = s.chain[0]!.getExtension(x509.SubjectAlternativeNameExtension)!
        .names.toJSON()
        .filter((n) => n.type === "url")
        .map((n) => n.value);
      expect(uris).toEqual([POD_B.toString()]);
    }
    for (const s of (await next(itA, 5000)).svids) seenOnA.push(s.spiffeId.toString());
  }
  expect(seenOnB).toEqual([POD_B.toString(), POD_B.toString()]);
  expect(seenOnA).toEqual([POD_A.toString(), POD_A.toString()]);
  expect(seenOnB).not.toContain(POD_A.toString());
  expect(issued.map(String)).toEqual(expect.arrayContaining([POD_A.toString(), POD_B.toString()]));
});

test("calls without the workload.spiffe.io header are refused with InvalidArgument", async () => {
  const srv = server({ issue: caIssuer(60_000) });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  const stub = createWorkloadApiStub(path);
  try {
    expect(await statusOf(stub.FetchX509SVID({}))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await statusOf(stub.FetchX509Bundles({}))).toBe(grpc.status.INVALID_ARGUMENT);
    const wrong = new grpc.Metadata();
    wrong.set("workload.spiffe.io", "yes");
    expect(await statusOf(stub.FetchX509SVID({}, wrong))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await unaryStatus((cb) => stub.FetchJWTSVID({ audience: ["x"] }, new grpc.Metadata(), cb))).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
    // The same stub with the header is served.
    const ok = stub.FetchX509SVID({}, securityMetadata());
    const msg = await new Promise<unknown>((resolve, reject) => {
      ok.once("data", resolve);
      ok.once("error", reject);
    });
    ok.cancel();
    expect(msg).toHaveProperty("svids");
  } finally {
    stub.close();
  }
});

test("the JWT-SVID profile answers Unimplemented", async () => {
  const srv = server({ issue: caIssuer(60_000) });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  const stub = createWorkloadApiStub(path);
  try {
    expect(await unaryStatus((cb) => stub.FetchJWTSVID({ audience: ["aud"] }, securityMetadata(), cb))).toBe(
      grpc.status.UNIMPLEMENTED,
    );
    expect(
      await unaryStatus((cb) =>
        stub.ValidateJWTSVID({ audience: "aud", svid: "x.y.z" }, securityMetadata(), cb),
      ),
    ).toBe(grpc.status.UNIMPLEMENTED);
    expect(await statusOf(stub.FetchJWTBundles({}, securityMetadata()))).toBe(grpc.status.UNIMPLEMENTED);
  } finally {
    stub.close();
  }
});

test("FetchX509Bundles streams the trust domain's bundle", async () => {
  const srv = server({ issue: caIssuer(60_000) });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  const ac = new AbortController();
  aborts.push(ac);
  const it = client(path).watchX509Bundles(ac.signal)[Symbol.asyncIterator]();
  const bundles = await next(it);
  expect([...bundles.keys()]).toEqual([`spiffe://${TD}`]);
  expect(bundles.get(`spiffe://${TD}`)!.map((c) => c.toString("pem").trim())).toEqual([ca.certPem.trim()]);
});

test("the socket is 0600 in a 0700 directory, and removePod withdraws it", async () => {
  const srv = server({ issue: caIssuer(60_000) });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  const st = await stat(path);
  expect(st.isSocket()).toBe(true);
  expect(st.mode & 0o777).toBe(0o600);
  expect((await stat(join(path, ".."))).mode & 0o777).toBe(0o700);

  const it = watch(client(path));
  await next(it);
  const ended = it.next();
  await srv.removePod("p");
  await expect(ended).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  await expect(stat(path)).rejects.toThrow(/ENOENT/);
  expect(srv.podKeys()).toEqual([]);
});

test("a pod key or socket path cannot be registered twice", async () => {
  const srv = server({ issue: caIssuer(60_000) });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  await expect(srv.addPod("p", POD_B, socketPath("b"))).rejects.toThrow(/already has a socket/);
  await expect(srv.addPod("q", POD_B, path)).rejects.toThrow(/already serves pod p/);
});

test("an issuer that answers with another identity is never passed on", async () => {
  const srv = server({
    issue: (_id, publicKey) =>
      issueSvid(ca, { id: POD_B, role: "workload", ...(publicKey ? { publicKey } : {}) }),
    retryBaseMs: 60_000,
  });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  const it = watch(client(path));
  await expect(next(it)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
});

test("a failed issuance is logged and retried", async () => {
  const warnings: string[] = [];
  const log: IdentityLog = { info: () => undefined, warn: (msg) => warnings.push(msg) };
  let calls = 0;
  let firstFailed!: () => void;
  const failed = new Promise<void>((r) => (firstFailed = r));
  const srv = server({
    issue: async (id, publicKey) => {
      calls++;
      if (calls === 1) {
        setImmediate(firstFailed);
        throw new Error("CA unreachable");
      }
      return issueSvid(ca, { id, role: "workload", ...(publicKey ? { publicKey } : {}) });
    },
    retryBaseMs: 50,
    log,
  });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  await failed;
  const ctx = await client(path).fetchX509Context({ timeoutMs: 5000 });
  expect(ctx.svids[0]!.spiffeId.toString()).toBe(POD_A.toString());
  expect(warnings).toContain("workload api: svid issuance failed");
  expect(calls).toBeGreaterThanOrEqual(2);
});

test("rotation is scheduled on the injected clock at half life", async () => {
  const timers: { ms: number; fn: () => void }[] = [];
  const clock: Clock = {
    now: () => Date.now(),
    setTimer: (fn, ms) => {
      const t = { ms, fn };
      timers.push(t);
      return () => {
        const i = timers.indexOf(t);
        if (i >= 0) timers.splice(i, 1);
      };
    },
  };
  const HOUR = 60 * 60 * 1000;
  const srv = server({ issue: caIssuer(HOUR), clock });
  const path = socketPath("a");
  await srv.addPod("p", POD_A, path);
  const it = watch(client(path));
  const first = await next(it);
  expect(timers).toHaveLength(1);
  expect(timers[0]!.ms).toBeGreaterThan(HOUR / 2 - 5000);
  expect(timers[0]!.ms).toBeLessThanOrEqual(HOUR / 2);
  // Firing the timer is "half an hour later": the stream gets a new SVID without anyone waiting 30 min.
  timers.shift()!.fn();
  const second = await next(it);
  expect(second.svids[0]!.chain[0]!.serialNumber).not.toBe(first.svids[0]!.chain[0]!.serialNumber);
  expect(timers).toHaveLength(1);
});
