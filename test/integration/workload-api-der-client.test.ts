// The x509-free Workload API client the watchdog uses (der-client.ts over
// grpc-stream.ts: node:http2 and the hand-written codec) against real grpc-js
// servers on unix sockets: the node agent's WorkloadApiServer, and raw servers
// that answer with broken or failing streams.
import { KeyObject, sign, verify } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createCa, issueSvid, type CertificateAuthority } from "../../identity/ca.js";
import { concatDer } from "../../identity/der.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { SvidVerifier, verifySvidChain } from "../../identity/verify.js";
import {
  FETCH_X509_SVID_PATH,
  encodeX509SvidResponse,
  type X509SvidResponseMsg,
} from "../../identity/workload-api/codec.js";
import {
  WorkloadApiDerClient,
  WorkloadApiResponseError,
  type X509DerContext,
} from "../../identity/workload-api/der-client.js";
import { GrpcStatus, GrpcStatusError } from "../../identity/workload-api/grpc-stream.js";
import { WorkloadApiServer } from "../../identity/workload-api/server.js";
import { svidFromContext } from "../../controllers/watchdog/workload-svid.js";

const TD = "beemesh.local";
const POD = spiffeId(TD, "ns", "default", "deployment", "web", "web-0");

let ca: CertificateAuthority;
let dir: string;
let socketN = 0;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD });
  dir = await mkdtemp(join(tmpdir(), "bm-derc-"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function socketPath(): string {
  return join(dir, `s${socketN++}`, "agent.sock");
}

function client(path: string): WorkloadApiDerClient {
  const c = new WorkloadApiDerClient({ socketPath: path });
  cleanups.push(() => c.close());
  return c;
}

async function agent(): Promise<string> {
  const srv = new WorkloadApiServer({
    issue: (id, publicKey) =>
      issueSvid(ca, { id, role: "workload", ...(publicKey !== undefined ? { publicKey } : {}) }),
  });
  cleanups.push(() => srv.close());
  const path = socketPath();
  await srv.addPod("p", POD, path);
  return path;
}

type StreamHandler = (call: grpc.ServerWritableStream<Buffer, Buffer>) => void;
const asIs = (b: Buffer) => b;

/** A grpc-js server whose FetchX509SVID writes raw bytes, so tests can send what no real agent would. */
async function rawServer(handler: StreamHandler): Promise<string> {
  const server = new grpc.Server();
  server.addService(
    {
      FetchX509SVID: {
        path: FETCH_X509_SVID_PATH,
        requestStream: false,
        responseStream: true,
        requestSerialize: asIs,
        requestDeserialize: asIs,
        responseSerialize: asIs,
        responseDeserialize: asIs,
      },
    },
    { FetchX509SVID: handler },
  );
  const path = socketPath();
  await mkdir(join(path, ".."), { recursive: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return path;
}

async function validResponse(): Promise<X509SvidResponseMsg> {
  const svid = await issueSvid(ca, { id: POD, role: "workload" });
  const keyDer = Buffer.from(svid.keyPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  return {
    svids: [
      {
        spiffe_id: POD.toString(),
        x509_svid: svid.certDer,
        x509_svid_key: new Uint8Array(keyDer),
        bundle: new Uint8Array(ca.cert.rawData),
        hint: "h",
      },
    ],
    crl: [],
    federated_bundles: {},
  };
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a failure");
}

test("fetches a checked SVID from the node agent, usable for signing and verifying", async () => {
  const ctx: X509DerContext = await client(await agent()).fetchX509Context({ timeoutMs: 10_000 });
  expect(ctx.svids).toHaveLength(1);
  const entry = ctx.svids[0]!;
  expect(entry.spiffeId.toString()).toBe(POD.toString());
  expect(entry.leaf.uriSans).toEqual([POD.toString()]);
  expect(entry.bundle).toHaveLength(1);
  expect(Buffer.from(entry.bundle[0]!).equals(Buffer.from(ca.cert.rawData))).toBe(true);
  expect((await verifySvidChain(entry.chain[0]!, concatDer(entry.bundle), Date.now(), TD)).toString()).toBe(
    POD.toString(),
  );

  // What the bus is given: its key signs, and the leaf's verified key checks the signature.
  const creds = await svidFromContext(ctx);
  expect(creds.spiffeId).toBe(POD.toString());
  expect(creds.role).toBe("workload");
  expect(creds.bundlePem.trim()).toBe(ca.certPem.trim());
  const verified = await new SvidVerifier({ bundle: creds.bundlePem, trustDomain: TD }).verify(creds.certDer);
  const data = Buffer.from("heartbeat");
  const sig = sign("sha256", data, KeyObject.from(creds.privateKey));
  expect(verify("sha256", data, KeyObject.from(verified.publicKey), sig)).toBe(true);
});

test("no socket: UNAVAILABLE", async () => {
  const err = await failure(client(join(dir, "nothing-here.sock")).fetchX509Context({ timeoutMs: 5000 }));
  expect(err).toBeInstanceOf(GrpcStatusError);
  expect((err as GrpcStatusError).code).toBe(GrpcStatus.UNAVAILABLE);
});

test("every call carries the security header and an empty request", async () => {
  const seen: { header: unknown; request: number }[] = [];
  const good = encodeX509SvidResponse(await validResponse());
  const path = await rawServer((call) => {
    seen.push({ header: call.metadata.get("workload.spiffe.io")[0], request: call.request.length });
    call.write(Buffer.from(good));
    call.end();
  });
  await client(path).fetchX509Context({ timeoutMs: 5000 });
  expect(seen).toEqual([{ header: "true", request: 0 }]);
});

test("a status from the server arrives as GrpcStatusError with its decoded message", async () => {
  const path = await rawServer((call) =>
    call.emit("error", { code: grpc.status.PERMISSION_DENIED, details: "pod gone: 100% sure" }),
  );
  const err = await failure(client(path).fetchX509Context({ timeoutMs: 5000 }));
  expect(err).toBeInstanceOf(GrpcStatusError);
  expect(err).toMatchObject({ code: GrpcStatus.PERMISSION_DENIED, details: "pod gone: 100% sure" });
});

test("messages before a failing status are still delivered, then the status throws", async () => {
  const good = encodeX509SvidResponse(await validResponse());
  const path = await rawServer((call) => {
    call.write(Buffer.from(good));
    call.write(Buffer.from(good));
    call.emit("error", { code: grpc.status.UNAVAILABLE, details: "agent restarting" });
  });
  const seen: X509DerContext[] = [];
  const err = await failure(
    (async () => {
      for await (const ctx of client(path).watchX509Context(new AbortController().signal)) seen.push(ctx);
    })(),
  );
  expect(seen).toHaveLength(2);
  expect(err).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: "agent restarting" });
});

test("a stream the server ends with OK just ends", async () => {
  const good = encodeX509SvidResponse(await validResponse());
  const path = await rawServer((call) => {
    call.write(Buffer.from(good));
    call.end();
  });
  let n = 0;
  for await (const _ of client(path).watchX509Context(new AbortController().signal)) n++;
  expect(n).toBe(1);
});

test("undecodable bytes are a WorkloadApiResponseError naming the protobuf problem", async () => {
  const path = await rawServer((call) => {
    call.write(Buffer.from([0x0a, 0x80])); // svids: a length varint cut short
    call.end();
  });
  const err = await failure(client(path).fetchX509Context({ timeoutMs: 5000 }));
  expect(err).toBeInstanceOf(WorkloadApiResponseError);
  expect((err as Error).message).toMatch(/undecodable/);
  expect(((err as Error).cause as Error).message).toMatch(/truncated varint/);
});

test.each([
  [
    "a key that is not the leaf's",
    async (m: X509SvidResponseMsg) => {
      m.svids[0]!.x509_svid_key = (await validResponse()).svids[0]!.x509_svid_key;
    },
    /x509_svid_key does not belong to its certificate/,
  ],
  [
    "a SPIFFE ID that is not the leaf's",
    (m: X509SvidResponseMsg) => {
      m.svids[0]!.spiffe_id = `spiffe://${TD}/ns/default/deployment/web/other`;
    },
    /leaf names spiffe:\/\/beemesh.local\/ns\/default\/deployment\/web\/web-0, not/,
  ],
  [
    "a chain that is not DER certificates",
    (m: X509SvidResponseMsg) => {
      m.svids[0]!.x509_svid = new Uint8Array([0x30, 0x03, 1, 2, 3]);
    },
    /x509_svid is not DER certificates/,
  ],
  [
    "no key",
    (m: X509SvidResponseMsg) => {
      m.svids[0]!.x509_svid_key = new Uint8Array(0);
    },
    /x509_svid_key is empty/,
  ],
  [
    "no SVIDs",
    (m: X509SvidResponseMsg) => {
      m.svids = [];
    },
    /no SVIDs in the response/,
  ],
])("refuses a response with %s", async (_name, spoil, message) => {
  const msg = await validResponse();
  await spoil(msg);
  const path = await rawServer((call) => {
    call.write(Buffer.from(encodeX509SvidResponse(msg)));
    call.end();
  });
  const err = await failure(client(path).fetchX509Context({ timeoutMs: 5000 }));
  expect(err).toBeInstanceOf(WorkloadApiResponseError);
  expect((err as Error).message).toMatch(message);
});

test("aborting a watch ends it quietly and cancels the call on the server", async () => {
  const good = encodeX509SvidResponse(await validResponse());
  let cancelled!: () => void;
  const serverSawCancel = new Promise<void>((r) => (cancelled = r));
  const path = await rawServer((call) => {
    call.on("cancelled", () => cancelled());
    call.write(Buffer.from(good)); // and keep the stream open
  });
  const ac = new AbortController();
  let n = 0;
  for await (const _ of client(path).watchX509Context(ac.signal)) {
    n++;
    ac.abort();
  }
  expect(n).toBe(1);
  await serverSawCancel;
});
