// verifySvidChain and SvidVerifier: every rejection has its own error class,
// and the cache answers by fingerprint only while the certificate is valid.
import { createCa, issueSvid } from "../../identity/ca.js";
import type { CertificateAuthority } from "../../identity/ca.js";
import { generateKeyPair, subtle, x509, SIGN_ALG } from "../../identity/crypto.js";
import type { CryptoKey } from "../../identity/crypto.js";
import { concatDer } from "../../identity/der.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import {
  SvidCaLeafError,
  SvidExpiredError,
  SvidKeyUsageError,
  SvidMalformedError,
  SvidNotYetValidError,
  SvidTrustDomainError,
  SvidUntrustedError,
  SvidUriSanError,
  SvidVerifier,
  SvidVerifyError,
  sha256Hex,
  verifySvidChain,
} from "../../identity/verify.js";

const TD = "beemesh.local";
const T0 = Date.parse("2030-01-01T00:00:00Z");
const HOUR = 60 * 60 * 1000;

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD, now: new Date(T0 - HOUR) });
  otherCa = await createCa({ trustDomain: TD, now: new Date(T0 - HOUR) });
});

interface ForgeOptions {
  sans?: x509.JsonGeneralName[];
  ca?: boolean;
  usages?: number;
  issuerName?: string;
  signingKey?: CryptoKey;
  notBefore?: number;
  notAfter?: number;
}

/** A certificate with whatever is wrong with it, signed by `ca`'s key unless told otherwise. */
async function forge(opts: ForgeOptions = {}): Promise<Uint8Array> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01",
    subject: "OU=test, O=beemesh",
    issuer: opts.issuerName ?? ca.cert.subject,
    notBefore: new Date(opts.notBefore ?? T0 - 60_000),
    notAfter: new Date(opts.notAfter ?? T0 + HOUR),
    signingKey: opts.signingKey ?? ca.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(opts.ca ?? false, undefined, true),
      new x509.KeyUsagesExtension(opts.usages ?? x509.KeyUsageFlags.digitalSignature, true),
      ...(opts.sans === undefined || opts.sans.length > 0
        ? [
            new x509.SubjectAlternativeNameExtension(
              opts.sans ?? [{ type: "url", value: `spiffe://${TD}/node/n1` }],
            ),
          ]
        : []),
    ],
  });
  return new Uint8Array(cert.rawData);
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

describe("verifySvidChain", () => {
  test("accepts an SVID issued by the bundle's CA", async () => {
    const svid = await issueSvid(ca, {
      id: spiffeId(TD, "node", "n1"),
      role: "scheduler-bidder",
      now: new Date(T0),
    });
    const id = await verifySvidChain(svid.certDer, [ca.cert], T0, TD);
    expect(id.toString()).toBe(`spiffe://${TD}/node/n1`);
    // The bundle may also be PEM or concatenated DER, and hold other CAs.
    expect((await verifySvidChain(svid.certDer, otherCa.certPem + ca.certPem, T0)).toString()).toBe(
      id.toString(),
    );
    const der = concatDer([new Uint8Array(otherCa.cert.rawData), new Uint8Array(ca.cert.rawData)]);
    expect((await verifySvidChain(svid.certDer, der, new Date(T0))).toString()).toBe(id.toString());
  });

  test.each<[string, () => Promise<Uint8Array>, number, new (...args: never[]) => SvidVerifyError, string]>([
    ["expired", () => forge({ notAfter: T0 - 1 }), T0, SvidExpiredError, "expired"],
    ["not yet valid", () => forge({ notBefore: T0 + 1000 }), T0, SvidNotYetValidError, "not-yet-valid"],
    ["CA:true leaf", () => forge({ ca: true }), T0, SvidCaLeafError, "ca-leaf"],
    [
      "no digitalSignature",
      () => forge({ usages: x509.KeyUsageFlags.keyEncipherment }),
      T0,
      SvidKeyUsageError,
      "key-usage",
    ],
    [
      "keyCertSign on a leaf",
      () => forge({ usages: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign }),
      T0,
      SvidKeyUsageError,
      "key-usage",
    ],
    ["no SAN at all", () => forge({ sans: [] }), T0, SvidUriSanError, "uri-san"],
    [
      "only a DNS SAN",
      () => forge({ sans: [{ type: "dns", value: "x.example" }] }),
      T0,
      SvidUriSanError,
      "uri-san",
    ],
    [
      "two URI SANs",
      () =>
        forge({
          sans: [
            { type: "url", value: `spiffe://${TD}/node/a` },
            { type: "url", value: `spiffe://${TD}/node/b` },
          ],
        }),
      T0,
      SvidUriSanError,
      "uri-san",
    ],
    [
      "URI SAN that is not a SPIFFE ID",
      () => forge({ sans: [{ type: "url", value: "https://x/y" }] }),
      T0,
      SvidUriSanError,
      "uri-san",
    ],
    [
      "bare trust domain ID on a leaf",
      () => forge({ sans: [{ type: "url", value: `spiffe://${TD}` }] }),
      T0,
      SvidUriSanError,
      "uri-san",
    ],
    [
      "other trust domain",
      () => forge({ sans: [{ type: "url", value: "spiffe://evil.test/node/n1" }] }),
      T0,
      SvidTrustDomainError,
      "trust-domain",
    ],
    [
      "issuer not in the bundle",
      () => forge({ issuerName: "CN=Someone Else, O=evil" }),
      T0,
      SvidUntrustedError,
      "untrusted",
    ],
    [
      "right issuer name, wrong key",
      async () => forge({ signingKey: otherCa.privateKey }),
      T0,
      SvidUntrustedError,
      "untrusted",
    ],
  ])("rejects %s", async (_name, make, now, ErrorClass, reason) => {
    const err = await rejection(verifySvidChain(await make(), [ca.cert], now, TD));
    expect(err).toBeInstanceOf(ErrorClass);
    expect(err.reason).toBe(reason);
    expect(err.name).toBe(ErrorClass.name);
  });

  test("rejects bytes that are not a certificate", async () => {
    const err = await rejection(verifySvidChain(new Uint8Array([1, 2, 3]), [ca.cert], T0, TD));
    expect(err).toBeInstanceOf(SvidMalformedError);
  });

  test("rejects a leaf whose issuing CA has expired, even if the leaf has not", async () => {
    const shortCa = await createCa({ trustDomain: TD, now: new Date(T0), ttlMs: 2 * HOUR });
    const leaf = await forge({
      issuerName: shortCa.cert.subject,
      signingKey: shortCa.privateKey,
      notBefore: T0,
      notAfter: T0 + 5 * HOUR,
    });
    await expect(verifySvidChain(leaf, [shortCa.cert], T0 + HOUR, TD)).resolves.toBeDefined();
    await expect(verifySvidChain(leaf, [shortCa.cert], T0 + 3 * HOUR, TD)).rejects.toThrow(
      SvidUntrustedError,
    );
  });

  test("rejects an SVID signed by the other CA even when both share a name", async () => {
    const svid = await issueSvid(otherCa, { id: spiffeId(TD, "node", "n1"), role: "r", now: new Date(T0) });
    await expect(verifySvidChain(svid.certDer, [ca.cert], T0, TD)).rejects.toThrow(SvidUntrustedError);
    await expect(verifySvidChain(svid.certDer, [ca.cert, otherCa.cert], T0, TD)).resolves.toBeDefined();
  });
});

describe("SvidVerifier", () => {
  test("verifies once, then answers from the cache by fingerprint", async () => {
    let now = T0;
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: TD, now: () => now });
    const svid = await issueSvid(ca, {
      id: spiffeId(TD, "node", "n1"),
      role: "scheduler-bidder",
      now: new Date(T0),
    });
    const first = await verifier.verify(svid.certDer);
    expect(first.id.toString()).toBe(`spiffe://${TD}/node/n1`);
    expect(first.role).toBe("scheduler-bidder");
    expect(first.fingerprint).toBe(sha256Hex(svid.certDer));
    expect(first.notAfter.getTime()).toBe(T0 + HOUR);
    expect(verifier.stats()).toEqual({ hits: 0, misses: 1, rejected: 0, cached: 1 });
    now = T0 + 30 * 60 * 1000;
    const second = await verifier.verify(new Uint8Array(svid.certDer)); // a copy: keyed by content
    expect(second).toBe(first);
    expect(verifier.stats().hits).toBe(1);
  });

  test("the public key verifies signatures made with the SVID's key", async () => {
    const verifier = new SvidVerifier({ bundle: ca.certPem, trustDomain: TD, now: () => T0 });
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r", now: new Date(T0) });
    const { publicKey } = await verifier.verify(svid.certDer);
    const data = new TextEncoder().encode("payload");
    const sig = await subtle.sign(SIGN_ALG, svid.privateKey, data);
    expect(await subtle.verify(SIGN_ALG, publicKey, sig, data)).toBe(true);
    expect(await subtle.verify(SIGN_ALG, publicKey, sig, new TextEncoder().encode("other"))).toBe(false);
  });

  test("a cached entry stops being good at notAfter", async () => {
    let now = T0;
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: TD, now: () => now });
    const svid = await issueSvid(ca, {
      id: spiffeId(TD, "node", "n1"),
      role: "r",
      now: new Date(T0),
      ttlMs: 2000,
    });
    await verifier.verify(svid.certDer);
    now = T0 + 2000;
    await expect(verifier.verify(svid.certDer)).resolves.toBeDefined(); // notAfter itself is still valid
    now = T0 + 2001;
    await expect(verifier.verify(svid.certDer)).rejects.toThrow(SvidExpiredError);
    expect(verifier.stats()).toEqual({ hits: 1, misses: 2, rejected: 1, cached: 0 });
  });

  test("failures are not cached and each one is counted", async () => {
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: TD, now: () => T0 });
    const bad = await forge({ ca: true });
    await expect(verifier.verify(bad)).rejects.toThrow(SvidCaLeafError);
    await expect(verifier.verify(bad)).rejects.toThrow(SvidCaLeafError);
    expect(verifier.stats()).toEqual({ hits: 0, misses: 2, rejected: 2, cached: 0 });
  });

  test("concurrent verifications of one certificate share the work", async () => {
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: TD, now: () => T0 });
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r", now: new Date(T0) });
    const results = await Promise.all([1, 2, 3].map(() => verifier.verify(svid.certDer)));
    expect(results[1]).toBe(results[0]);
    expect(results[2]).toBe(results[0]);
    expect(verifier.stats().cached).toBe(1);
  });

  test("wrong trust domain is refused even when the CA signed it", async () => {
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: "other.td", now: () => T0 });
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r", now: new Date(T0) });
    await expect(verifier.verify(svid.certDer)).rejects.toThrow(SvidTrustDomainError);
  });

  test("setBundle drops the cache and trusts only the new bundle", async () => {
    const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: TD, now: () => T0 });
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r", now: new Date(T0) });
    await verifier.verify(svid.certDer);
    verifier.setBundle([otherCa.cert]);
    expect(verifier.stats().cached).toBe(0);
    await expect(verifier.verify(svid.certDer)).rejects.toThrow(SvidUntrustedError);
  });

  test("the cache is bounded", async () => {
    const verifier = new SvidVerifier({
      bundle: [ca.cert],
      trustDomain: TD,
      now: () => T0,
      maxCacheEntries: 3,
    });
    for (let i = 0; i < 5; i++) {
      const svid = await issueSvid(ca, { id: spiffeId(TD, "node", `n${i}`), role: "r", now: new Date(T0) });
      await verifier.verify(svid.certDer);
    }
    expect(verifier.stats().cached).toBe(3);
  });

  test("an empty bundle is an error on use", async () => {
    const verifier = new SvidVerifier({ bundle: [], trustDomain: TD, now: () => T0 });
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r", now: new Date(T0) });
    await expect(verifier.verify(svid.certDer)).rejects.toThrow(/trust bundle is empty/);
  });
});
