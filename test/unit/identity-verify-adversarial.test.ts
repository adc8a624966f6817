// Adversarial inputs for the x509-free SVID path: certificates crafted byte by
// byte (re-signed with the CA's key where a CA would have to sign them), PEM
// smuggled inside DER, mutated and truncated DER, hostile protobuf, and gRPC
// servers that break the framing or the trailers.
import { KeyObject, sign } from "node:crypto";
import { createServer, type Http2Server, type ServerHttp2Stream } from "node:http2";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, issueSvid, type CertificateAuthority } from "../../identity/ca.js";
import { CertificateFormatError, readCertificate } from "../../identity/certificate.js";
import { generateKeyPair, SIGN_ALG, subtle, x509 } from "../../identity/crypto.js";
import type { CryptoKey, CryptoKeyPair } from "../../identity/crypto.js";
import { readDerChildren, readDerElement } from "../../identity/der.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import {
  SvidMalformedError,
  SvidUntrustedError,
  SvidVerifier,
  SvidVerifyError,
  verifySvidChain,
} from "../../identity/verify.js";
import {
  WorkloadApiCodecError,
  decodeX509BundlesResponse,
  decodeX509Svid,
  decodeX509SvidResponse,
} from "../../identity/workload-api/codec.js";
import {
  GrpcFrameReader,
  GrpcStatus,
  GrpcStatusError,
  UnixGrpcChannel,
  grpcFrame,
} from "../../identity/workload-api/grpc-stream.js";

const TD = "beemesh.local";
const T0 = Date.parse("2030-01-01T00:00:00Z");
const HOUR = 60 * 60 * 1000;

let ca: CertificateAuthority;
let caKey: KeyObject;
let svidDer: Uint8Array;

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD, now: new Date(T0 - HOUR) });
  caKey = KeyObject.from(ca.privateKey);
  svidDer = (await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r", now: new Date(T0) })).certDer;
});

// ------------------------------------------------------------ DER crafting ---

function lengthOctets(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return [0x80 | out.length, ...out];
}

function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const content = Buffer.concat(parts);
  return new Uint8Array(Buffer.concat([Buffer.from([tag, ...lengthOctets(content.length)]), content]));
}

const bytes = (...b: number[]) => new Uint8Array(b);

interface CertParts {
  tbs: Uint8Array[]; // the tbsCertificate's elements, raw
  sigAlg: Uint8Array;
}

function partsOf(der: Uint8Array): CertParts {
  const [tbs, sigAlg] = readDerChildren(readDerElement(der, 0).value);
  return { tbs: readDerChildren(tbs!.value).map((e) => e.raw), sigAlg: sigAlg!.raw };
}

/** A certificate with these tbs elements, signed by `key` (the CA's unless told) as a CA would sign it. */
function signed(tbs: readonly Uint8Array[], sigAlg: Uint8Array, key = caKey, hash = "sha256"): Uint8Array {
  const tbsDer = tlv(0x30, ...tbs);
  const sig = sign(hash, tbsDer, { key, dsaEncoding: "der" });
  return tlv(0x30, tbsDer, sigAlg, tlv(0x03, bytes(0), sig));
}

const OID_1_2_3_4 = bytes(0x06, 0x03, 0x2a, 0x03, 0x04);
const OID_EKU = bytes(0x06, 0x03, 0x55, 0x1d, 0x25);
const OID_CERT_POLICIES = bytes(0x06, 0x03, 0x55, 0x1d, 0x20);
const TRUE = bytes(0x01, 0x01, 0xff);

/** The SVID's tbs with one more extension appended. */
function withExtension(der: Uint8Array, ext: Uint8Array): Uint8Array {
  const { tbs, sigAlg } = partsOf(der);
  const extsEl = readDerElement(tbs[tbs.length - 1]!, 0);
  const list = readDerChildren(readDerElement(extsEl.value, 0).value).map((e) => e.raw);
  const newTbs = [...tbs.slice(0, -1), tlv(0xa3, tlv(0x30, ...list, ext))];
  return signed(newTbs, sigAlg);
}

async function rejection(p: Promise<unknown>): Promise<SvidVerifyError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SvidVerifyError) return err;
    throw err;
  }
  throw new Error("expected a rejection");
}

async function leafCert(opts: {
  signingKey: CryptoKey;
  issuer: string;
  notAfter?: number;
  extensions?: x509.Extension[];
  publicKey?: CryptoKey;
}): Promise<Uint8Array> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01",
    subject: "OU=controller, O=beemesh",
    issuer: opts.issuer,
    notBefore: new Date(T0 - 60_000),
    notAfter: new Date(opts.notAfter ?? T0 + HOUR),
    signingKey: opts.signingKey,
    publicKey: opts.publicKey ?? keys.publicKey,
    signingAlgorithm: SIGN_ALG,
    extensions: opts.extensions ?? [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: `spiffe://${TD}/controller/dispatcher/x` },
      ]),
    ],
  });
  return new Uint8Array(cert.rawData);
}

describe("the crafting helper itself", () => {
  test("re-signing the SVID's own tbs gives a certificate the verifier accepts", async () => {
    const { tbs, sigAlg } = partsOf(svidDer);
    const id = await verifySvidChain(signed(tbs, sigAlg), [ca.cert], T0, TD);
    expect(id.toString()).toBe(`spiffe://${TD}/node/n1`);
  });
});

// ------------------------------------------------- PEM smuggled into DER ---

describe("a DER certificate carrying a PEM certificate inside", () => {
  /** An attacker's self-signed leaf naming the CA as issuer, with `pem` hidden in its signature bits. */
  async function polyglot(pem: string): Promise<Uint8Array> {
    const attacker = await generateKeyPair();
    const forged = await leafCert({ signingKey: attacker.privateKey, issuer: ca.cert.subject });
    const { tbs, sigAlg } = partsOf(forged);
    const hidden = Buffer.from(`\n${pem}\n`, "latin1");
    return tlv(0x30, tlv(0x30, ...tbs), sigAlg, tlv(0x03, bytes(0), hidden));
  }

  // Node's X509Certificate reads PEM first and skips text before BEGIN: it would
  // check the CA's self-signature while the DER reader took the attacker's fields.
  test.each([
    ["the CA's own PEM (self-signed, so its signature checks)", () => ca.certPem],
    [
      "the CA's PEM labelled TRUSTED CERTIFICATE",
      () => ca.certPem.replace(/CERTIFICATE/g, "TRUSTED CERTIFICATE"),
    ],
    [
      "a genuine SVID's PEM",
      () =>
        Buffer.from(svidDer)
          .toString("base64")
          .replace(/(.{64})/g, "$1\n"),
    ],
  ])("is refused: %s", async (_name, pemOf) => {
    let pem = pemOf();
    if (!pem.startsWith("-----")) pem = `-----BEGIN CERTIFICATE-----\n${pem}\n-----END CERTIFICATE-----`;
    const poly = await polyglot(pem);
    const err = await rejection(verifySvidChain(poly, [ca.cert], T0, TD));
    expect(err).toBeInstanceOf(SvidMalformedError);
    const verifier = new SvidVerifier({ bundle: ca.certPem, trustDomain: TD, now: () => T0 });
    await expect(verifier.verify(poly)).rejects.toThrow(SvidMalformedError);
    expect(verifier.stats().cached).toBe(0);
  });

  test("a PEM inside an extension value is refused too", async () => {
    const ext = tlv(0x30, OID_1_2_3_4, tlv(0x04, Buffer.from(`\n${ca.certPem}\n`, "latin1")));
    await expect(verifySvidChain(withExtension(svidDer, ext), [ca.cert], T0, TD)).rejects.toThrow(
      SvidMalformedError,
    );
  });

  test("a PEM text instead of DER is refused", async () => {
    const pem = Buffer.from(ca.certPem, "latin1");
    await expect(verifySvidChain(pem, [ca.cert], T0, TD)).rejects.toThrow(SvidMalformedError);
  });
});

// ------------------------------------------------------------ chain rules ---

describe("chain to the bundle", () => {
  test("a cached leaf stops being good when its CA expires, not only at its own notAfter", async () => {
    const shortCa = await createCa({ trustDomain: TD, now: new Date(T0), ttlMs: 2 * HOUR });
    const leaf = await leafCert({
      signingKey: shortCa.privateKey,
      issuer: shortCa.cert.subject,
      notAfter: T0 + 5 * HOUR,
    });
    let now = T0 + HOUR;
    const verifier = new SvidVerifier({ bundle: [shortCa.cert], trustDomain: TD, now: () => now });
    await expect(verifier.verify(leaf)).resolves.toBeDefined();
    now = T0 + 3 * HOUR; // leaf still valid, CA expired
    await expect(verifier.verify(leaf)).rejects.toThrow(SvidUntrustedError);
    expect(verifier.stats().hits).toBe(0);
  });

  test("an issuer with cA but without keyCertSign does not vouch for a leaf", async () => {
    const keys = await generateKeyPair();
    const weakCa = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: "02",
      name: "CN=Weak CA, O=beemesh",
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
      keys,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    });
    const leaf = await leafCert({ signingKey: keys.privateKey, issuer: weakCa.subject });
    await expect(verifySvidChain(leaf, [weakCa], T0, TD)).rejects.toThrow(SvidUntrustedError);
  });

  test("a non-CA certificate in the bundle does not vouch for what its key signed", async () => {
    const holder = await issueSvid(ca, { id: spiffeId(TD, "node", "n2"), role: "r", now: new Date(T0) });
    const leaf = await leafCert({ signingKey: holder.privateKey, issuer: holder.cert.subject });
    await expect(verifySvidChain(leaf, [holder.cert], T0, TD)).rejects.toThrow(SvidUntrustedError);
  });

  test("a SHA-1 signature is refused even when the CA made it", async () => {
    const { tbs } = partsOf(svidDer);
    const ecdsaSha1 = tlv(0x30, bytes(0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01));
    const sha1Tbs = [tbs[0]!, tbs[1]!, ecdsaSha1, ...tbs.slice(3)];
    const leaf = signed(sha1Tbs, ecdsaSha1, caKey, "sha1");
    await expect(verifySvidChain(leaf, [ca.cert], T0, TD)).rejects.toThrow(SvidUntrustedError);
  });

  test("the tbs signature algorithm must equal the outer one", async () => {
    const { tbs, sigAlg } = partsOf(svidDer);
    const ecdsaSha384 = tlv(0x30, bytes(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03));
    const leaf = signed([tbs[0]!, tbs[1]!, ecdsaSha384, ...tbs.slice(3)], sigAlg);
    expect(() => readCertificate(leaf)).toThrow(CertificateFormatError);
    await expect(verifySvidChain(leaf, [ca.cert], T0, TD)).rejects.toThrow(SvidMalformedError);
  });

  test("a P-384 leaf key is refused even when the CA signed it", async () => {
    const p384 = (await subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const leaf = await leafCert({
      signingKey: ca.privateKey,
      issuer: ca.cert.subject,
      publicKey: p384.publicKey,
    });
    await expect(verifySvidChain(leaf, [ca.cert], T0, TD)).rejects.toThrow(SvidMalformedError);
  });
});

// ------------------------------------------------------ critical extensions ---

describe("critical extensions", () => {
  test("an unknown critical extension is refused", async () => {
    const leaf = withExtension(svidDer, tlv(0x30, OID_1_2_3_4, TRUE, tlv(0x04, bytes(0x05, 0x00))));
    await expect(verifySvidChain(leaf, [ca.cert], T0, TD)).rejects.toThrow(/critical extension 1\.2\.3\.4/);
  });

  test("a critical certificatePolicies is refused (not handled here)", async () => {
    const leaf = withExtension(svidDer, tlv(0x30, OID_CERT_POLICIES, TRUE, tlv(0x04, tlv(0x30))));
    await expect(verifySvidChain(leaf, [ca.cert], T0, TD)).rejects.toThrow(SvidMalformedError);
  });

  test("an unknown non-critical extension is ignored", async () => {
    const leaf = withExtension(svidDer, tlv(0x30, OID_1_2_3_4, tlv(0x04, bytes(0x05, 0x00))));
    await expect(verifySvidChain(leaf, [ca.cert], T0, TD)).resolves.toBeDefined();
  });

  test("an empty BOOLEAN is malformed, not TRUE", async () => {
    const ext = tlv(0x30, OID_1_2_3_4, bytes(0x01, 0x00), tlv(0x04, bytes(0x05, 0x00)));
    expect(() => readCertificate(withExtension(svidDer, ext))).toThrow(/BOOLEAN of 0 octets/);
  });

  test("a critical extKeyUsage is accepted", async () => {
    const eku = tlv(0x30, OID_EKU, TRUE, tlv(0x04, tlv(0x30, bytes(0x06, 0x08, 0x2b, 6, 1, 5, 5, 7, 3, 2))));
    // The SVID already has a (non-critical) EKU; build from a leaf without one.
    const plain = await leafCert({ signingKey: ca.privateKey, issuer: ca.cert.subject });
    await expect(verifySvidChain(withExtension(plain, eku), [ca.cert], T0, TD)).resolves.toBeDefined();
  });
});

// --------------------------------------------------------- the cache's key ---

describe("SvidVerifier cache", () => {
  test("a buffer changed while its verification is pending does not poison the cache", async () => {
    const bad = new Uint8Array(svidDer);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0x01; // same length, broken signature
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: TD, now: () => T0 });
    const buf = new Uint8Array(bad);
    const pending = verifier.verify(buf);
    buf.set(svidDer); // the caller reuses its buffer before the check ran
    await expect(pending).rejects.toThrow(SvidVerifyError);
    await expect(verifier.verify(bad)).rejects.toThrow(SvidVerifyError);
    expect(verifier.stats().hits).toBe(0);
  });

  test("certificates that share all but their last bytes are distinct entries", async () => {
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: TD, now: () => T0 });
    await verifier.verify(svidDer);
    const flipped = new Uint8Array(svidDer);
    flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 0x01;
    await expect(verifier.verify(flipped)).rejects.toThrow(SvidVerifyError);
    const padded = new Uint8Array([...svidDer, 0]);
    await expect(verifier.verify(padded)).rejects.toThrow(SvidMalformedError);
    expect(verifier.stats()).toMatchObject({ hits: 0, cached: 1 });
  });
});

// ------------------------------------------------------------- DER damage ---

describe("damaged DER", () => {
  test.each([
    ["4-byte length past the end", [0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x30, 0x00]],
    ["5-byte length", [0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00, 0x30, 0x00]],
    ["indefinite length", [0x30, 0x80, 0x30, 0x00, 0x00, 0x00]],
    ["length 0x81 with no octet", [0x30, 0x81]],
    ["empty input", []],
    ["a lone tag", [0x30]],
    ["high tag number", [0x3f, 0x01, 0x00]],
    ["empty SEQUENCE", [0x30, 0x00]],
  ])("%s: CertificateFormatError, and the verifier says malformed", async (_name, input) => {
    const der = new Uint8Array(input);
    expect(() => readCertificate(der)).toThrow(CertificateFormatError);
    await expect(verifySvidChain(der, [ca.cert], T0, TD)).rejects.toThrow(SvidMalformedError);
  });

  test("a long-form length where the short form fits is refused", async () => {
    const inner = readDerElement(svidDer, 0).value;
    // The outer SEQUENCE's length with a leading zero octet: BER, not DER.
    const long = lengthOctets(inner.length);
    const longer = bytes(0x30, long[0]! + 1, 0, ...long.slice(1), ...inner);
    expect(readDerElement(longer, 0).value.length).toBe(inner.length); // the reader alone accepts it
    await expect(verifySvidChain(longer, [ca.cert], T0, TD)).rejects.toThrow(SvidMalformedError);
  });

  test("every truncation is refused as malformed", async () => {
    for (let n = 0; n < svidDer.length; n++) {
      const err = await rejection(verifySvidChain(svidDer.subarray(0, n), [ca.cert], T0, TD));
      expect(err).toBeInstanceOf(SvidMalformedError);
    }
  });

  test("no single-byte change anywhere is accepted, and nothing throws outside SvidVerifyError", async () => {
    let readErrors = 0;
    for (let i = 0; i < svidDer.length; i++) {
      for (const change of [(b: number) => b ^ 0x01, (b: number) => b ^ 0x80, () => 0x00, () => 0xff]) {
        const m = new Uint8Array(svidDer);
        const before = m[i]!;
        m[i] = change(before);
        if (m[i] === before) continue;
        try {
          readCertificate(m);
        } catch (err) {
          expect(err).toBeInstanceOf(CertificateFormatError);
          readErrors++;
        }
        await rejection(verifySvidChain(m, [ca.cert], T0, TD));
      }
    }
    expect(readErrors).toBeGreaterThan(0);
  });

  test("a GeneralizedTime before year 100 keeps its year (Date.UTC would add 1900)", async () => {
    const { tbs, sigAlg } = partsOf(svidDer);
    const gt = (s: string) => tlv(0x18, Buffer.from(s, "latin1"));
    const validity = tlv(0x30, gt("00500101000000Z"), gt("99991231235959Z"));
    const leaf = signed([...tbs.slice(0, 4), validity, ...tbs.slice(5)], sigAlg);
    expect(readCertificate(leaf).notBefore.getUTCFullYear()).toBe(50);
  });
});

// ---------------------------------------------------------------- protobuf ---

describe("Workload API protobuf decoding", () => {
  test("an unknown int64 field holding -1 (a 10-byte varint) is skipped", () => {
    const unknown = bytes(0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01); // field 15
    const svid = bytes(0x0a, 0x03, 0x61, 0x62, 0x63); // spiffe_id "abc"
    expect(decodeX509Svid(new Uint8Array([...unknown, ...svid])).spiffe_id).toBe("abc");
    const response = new Uint8Array([...unknown, 0x0a, svid.length, ...svid]);
    expect(decodeX509SvidResponse(response).svids).toHaveLength(1);
  });

  test.each([
    ["truncated varint tag", [0x80]],
    ["varint over 10 bytes", [0x78, ...new Array<number>(10).fill(0xff), 0x01]],
    ["length past the end", [0x0a, 0x05, 0x01]],
    ["2^40 length", [0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]],
    ["svids as a varint", [0x08, 0x01]],
    ["svids as fixed32", [0x0d, 1, 2, 3, 4]],
    ["start group", [0x7b]],
    ["end group", [0x7c]],
    ["wire type 6", [0x7e, 0x00]],
    ["wire type 7", [0x7f, 0x00]],
    ["field number 0", [0x02, 0x00]],
    ["truncated fixed64", [0x79, 1, 2, 3]],
    ["nested svid runs past its message", [0x0a, 0x02, 0x0a, 0x05]],
    ["invalid UTF-8 in spiffe_id", [0x0a, 0x03, 0x0a, 0x01, 0xff]],
  ])("%s: WorkloadApiCodecError", (_name, input) => {
    expect(() => decodeX509SvidResponse(new Uint8Array(input))).toThrow(WorkloadApiCodecError);
  });

  test("a leading BOM stays in the SPIFFE ID (so the ID check sees it)", () => {
    const id = Buffer.from("\uFEFFspiffe://a/b", "utf8");
    expect(decodeX509Svid(new Uint8Array([0x0a, id.length, ...id])).spiffe_id).toBe("\uFEFFspiffe://a/b");
  });

  test("random bytes only ever throw WorkloadApiCodecError", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) >> 8) & 0xff;
    let thrown = 0;
    for (let k = 0; k < 3000; k++) {
      const input = new Uint8Array(1 + (rnd() % 40)).map(() => rnd());
      for (const decode of [decodeX509SvidResponse, decodeX509BundlesResponse]) {
        try {
          decode(input);
        } catch (err) {
          expect(err).toBeInstanceOf(WorkloadApiCodecError);
          thrown++;
        }
      }
    }
    expect(thrown).toBeGreaterThan(0);
  });
});

// -------------------------------------------------------------------- gRPC ---

describe("gRPC framing", () => {
  test("after a bad prefix every later chunk fails too (no resync on garbage)", () => {
    const r = new GrpcFrameReader();
    const bad = grpcFrame(bytes(1, 2));
    bad[0] = 1;
    expect(() => r.push(bad)).toThrow(/compressed/);
    expect(() => r.push(grpcFrame(bytes(3)))).toThrow(/compressed/);
  });

  test("a large message in small chunks is joined once, not once per chunk", () => {
    const big = new Uint8Array(256 * 1024).fill(7);
    const frame = grpcFrame(big);
    const r = new GrpcFrameReader();
    const original = Buffer.concat;
    let joins = 0;
    Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
      joins++;
      return original(list, total);
    }) as typeof Buffer.concat;
    try {
      const out: Buffer[] = [];
      for (let i = 0; i < frame.length; i += 512) out.push(...r.push(frame.subarray(i, i + 512)));
      expect(out).toHaveLength(1);
      expect(out[0]!.length).toBe(big.length);
      expect(joins).toBeLessThanOrEqual(2);
    } finally {
      Buffer.concat = original;
    }
  });
});

describe("gRPC streams from a hostile server", () => {
  let dir: string;
  let server: Http2Server | undefined;
  let channel: UnixGrpcChannel | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bm-adv-"));
  });
  afterEach(async () => {
    channel?.close();
    channel = undefined;
    const s = server;
    server = undefined;
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  let n = 0;
  async function serve(answer: (stream: ServerHttp2Stream) => void): Promise<UnixGrpcChannel> {
    const path = join(dir, `s${n++}.sock`);
    const s = createServer();
    s.on("stream", (stream) => {
      stream.on("error", () => undefined);
      answer(stream);
    });
    await new Promise<void>((resolve) => s.listen(path, resolve));
    server = s;
    channel = new UnixGrpcChannel(path);
    return channel;
  }

  async function outcome(ch: UnixGrpcChannel): Promise<{ messages: number; error: unknown }> {
    let messages = 0;
    try {
      for await (const _m of ch.serverStream("/S/M", new Uint8Array(0), {}, new AbortController().signal))
        messages++;
    } catch (err) {
      return { messages, error: err };
    }
    return { messages, error: undefined };
  }

  const grpcHeaders = { ":status": 200, "content-type": "application/grpc" };

  test("an empty grpc-status is not OK", async () => {
    const ch = await serve((stream) => {
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "" }));
      stream.end(grpcFrame(bytes(1)));
    });
    const { messages, error } = await outcome(ch);
    expect(messages).toBe(1);
    expect(error).toBeInstanceOf(GrpcStatusError);
    expect((error as GrpcStatusError).code).toBe(GrpcStatus.UNKNOWN);
  });

  test.each([
    ["a non-numeric status", "0x0"],
    ["a status out of range", "99"],
  ])("%s is UNKNOWN", async (_name, value) => {
    const ch = await serve((stream) => {
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": value }));
      stream.end();
    });
    expect(((await outcome(ch)).error as GrpcStatusError).code).toBe(GrpcStatus.UNKNOWN);
  });

  test("a compressed message fails the call with INTERNAL", async () => {
    const ch = await serve((stream) => {
      const frame = grpcFrame(bytes(1, 2, 3));
      frame[0] = 1;
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
    expect(((await outcome(ch)).error as GrpcStatusError).code).toBe(GrpcStatus.INTERNAL);
  });

  test("a message announced over 4 MiB fails with RESOURCE_EXHAUSTED before it is sent", async () => {
    const ch = await serve((stream) => {
      stream.respond(grpcHeaders);
      stream.write(Buffer.from([0, 0x7f, 0xff, 0xff, 0xff])); // 2 GiB announced, never sent
    });
    expect(((await outcome(ch)).error as GrpcStatusError).code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
  });

  test("OK trailers after half a message is INTERNAL, not a clean end", async () => {
    const ch = await serve((stream) => {
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(grpcFrame(bytes(1, 2, 3, 4)).subarray(0, 7));
    });
    expect(((await outcome(ch)).error as GrpcStatusError).code).toBe(GrpcStatus.INTERNAL);
  });

  test("no trailers at all is UNAVAILABLE", async () => {
    const ch = await serve((stream) => {
      stream.respond(grpcHeaders);
      stream.end(grpcFrame(bytes(1)));
    });
    const { messages, error } = await outcome(ch);
    expect(messages).toBe(1);
    expect((error as GrpcStatusError).code).toBe(GrpcStatus.UNAVAILABLE);
  });

  test("a non-gRPC content-type is refused", async () => {
    const ch = await serve((stream) => {
      stream.respond({ ":status": 200, "content-type": "text/html" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(grpcFrame(bytes(1)));
    });
    expect(((await outcome(ch)).error as GrpcStatusError).code).toBe(GrpcStatus.UNKNOWN);
  });
});
