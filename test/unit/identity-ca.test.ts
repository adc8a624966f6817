// The CA and the X.509-SVIDs it issues (DESIGN §5; SPIFFE X509-SVID standard §4-5).
// Chains are checked with @peculiar/x509 and, when the binary exists, with openssl.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  CA_CERT_FILE,
  CA_KEY_FILE,
  CaError,
  DEFAULT_SVID_TTL_MS,
  createCa,
  issueSvid,
  loadCa,
  loadOrCreateCa,
  uriSanOf,
  writeSvidFiles,
} from "../../identity/ca.js";
import type { CertificateAuthority } from "../../identity/ca.js";
import { generateKeyPair, subtle, x509 } from "../../identity/crypto.js";
import { spiffeId } from "../../identity/spiffe-id.js";

const run = promisify(execFile);
const TD = "beemesh.local";
const NOW = new Date("2030-01-01T00:00:00Z");

async function hasOpenssl(): Promise<boolean> {
  try {
    await run("openssl", ["version"]);
    return true;
  } catch {
    return false;
  }
}

let ca: CertificateAuthority;
let dir: string;

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD });
  dir = await mkdtemp(join(tmpdir(), "bm-ca-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("createCa", () => {
  test("is a self-signed P-256 CA naming its trust domain", async () => {
    const bc = ca.cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(true);
    expect(bc?.critical).toBe(true);
    const ku = ca.cert.getExtension(x509.KeyUsagesExtension);
    expect(ku!.usages & x509.KeyUsageFlags.keyCertSign).toBeTruthy();
    expect(uriSanOf(ca.cert)).toBe(`spiffe://${TD}`);
    expect(await ca.cert.isSelfSigned()).toBe(true);
    expect((ca.cert.publicKey.algorithm as { namedCurve?: string }).namedCurve).toBe("P-256");
  });
});

describe("issueSvid", () => {
  const id = spiffeId(TD, "node", "n1");

  test("chains to the CA and has exactly one URI SAN", async () => {
    const svid = await issueSvid(ca, { id, role: "scheduler-bidder" });
    expect(await svid.cert.verify({ publicKey: ca.cert, date: new Date() })).toBe(true);
    expect(svid.cert.issuer).toBe(ca.cert.subject);
    expect(uriSanOf(svid.cert)).toBe(id.toString());
    expect(svid.spiffeId).toBe(id.toString());
    // Another CA's key does not verify it.
    const other = await createCa({ trustDomain: TD });
    expect(await svid.cert.verify({ publicKey: other.cert, signatureOnly: true })).toBe(false);
  });

  test("server SANs do not add a second URI SAN", async () => {
    const svid = await issueSvid(ca, {
      id,
      role: "nats",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    const names = svid.cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON();
    expect(names.filter((n) => n.type === "url")).toEqual([{ type: "url", value: id.toString() }]);
    expect(names).toEqual(
      expect.arrayContaining([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
      ]),
    );
  });

  test("is a leaf: CA:false, digitalSignature only, serverAuth+clientAuth", async () => {
    const svid = await issueSvid(ca, { id, role: "scheduler-bidder" });
    const bc = svid.cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(false);
    expect(bc?.critical).toBe(true);
    const ku = svid.cert.getExtension(x509.KeyUsagesExtension);
    expect(ku?.critical).toBe(true);
    expect(ku?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    const eku = svid.cert.getExtension(x509.ExtendedKeyUsageExtension);
    expect([...(eku?.usages ?? [])].sort()).toEqual(
      [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth].sort(),
    );
  });

  test("puts the role in the Subject DN for nats verify_and_map", async () => {
    const svid = await issueSvid(ca, { id, role: "scheduler-bidder" });
    expect(svid.cert.subjectName.getField("OU")).toEqual(["scheduler-bidder"]);
    expect(svid.cert.subjectName.getField("O")).toEqual(["beemesh"]);
    expect(svid.role).toBe("scheduler-bidder");
  });

  test("TTL is 1 h by default, starts slightly in the past, and is capped by the CA", async () => {
    const svid = await issueSvid(ca, { id, role: "r", now: NOW });
    expect(svid.notAfter.getTime() - NOW.getTime()).toBe(DEFAULT_SVID_TTL_MS);
    expect(DEFAULT_SVID_TTL_MS).toBe(60 * 60 * 1000);
    expect(svid.notBefore.getTime()).toBeLessThan(NOW.getTime());
    const short = await issueSvid(ca, { id, role: "r", now: NOW, ttlMs: 2000 });
    expect(short.notAfter.getTime() - NOW.getTime()).toBe(2000);
    const shortLivedCa = await createCa({ trustDomain: TD, now: NOW, ttlMs: 10 * 60 * 1000 });
    const capped = await issueSvid(shortLivedCa, { id, role: "r", now: NOW });
    expect(capped.notAfter.getTime()).toBe(shortLivedCa.cert.notAfter.getTime());
  });

  test("keys are ECDSA P-256 and the key PEM matches the certificate", async () => {
    const svid = await issueSvid(ca, { id, role: "r" });
    const data = new TextEncoder().encode("hello");
    const sig = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, svid.privateKey, data);
    const pub = await svid.cert.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
    expect(await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, data)).toBe(true);
    expect(svid.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  test("certifies a given public key without generating one", async () => {
    const keys = await generateKeyPair();
    const svid = await issueSvid(ca, { id, role: "r", publicKey: keys.publicKey });
    const spki = new Uint8Array(await subtle.exportKey("spki", keys.publicKey));
    expect(new Uint8Array(svid.cert.publicKey.rawData)).toEqual(spki);
    expect(svid.keyPem).toBe("");
  });

  test("refuses IDs outside its trust domain and malformed roles", async () => {
    await expect(issueSvid(ca, { id: spiffeId("other.td", "node", "n1"), role: "r" })).rejects.toThrow(
      CaError,
    );
    await expect(issueSvid(ca, { id, role: "Bad Role" })).rejects.toThrow(/invalid role/);
    await expect(issueSvid(ca, { id, role: "x,O=evil" })).rejects.toThrow(/invalid role/);
  });

  test("unique serial numbers", async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) serials.add((await issueSvid(ca, { id, role: "r" })).cert.serialNumber);
    expect(serials.size).toBe(20);
  });
});

describe("openssl agrees", () => {
  test("openssl verify accepts the chain for client and server use, and rejects a foreign CA", async () => {
    if (!(await hasOpenssl())) {
      console.warn("openssl is not installed: skipping the openssl chain check (x509 verify still ran)");
      return;
    }
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r" });
    const caFile = join(dir, "openssl-ca.pem");
    const leafFile = join(dir, "openssl-leaf.pem");
    await writeFile(caFile, ca.certPem);
    await writeFile(leafFile, svid.certPem);
    for (const purpose of ["sslclient", "sslserver"]) {
      const { stdout } = await run("openssl", [
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-CAfile",
        caFile,
        leafFile,
      ]);
      expect(stdout).toContain(": OK");
    }
    const foreign = await createCa({ trustDomain: TD });
    const foreignFile = join(dir, "openssl-foreign.pem");
    await writeFile(foreignFile, foreign.certPem);
    await expect(run("openssl", ["verify", "-CAfile", foreignFile, leafFile])).rejects.toThrow();
    const { stdout: text } = await run("openssl", ["x509", "-in", leafFile, "-noout", "-text"]);
    expect(text).toContain("CA:FALSE");
    expect(text).toContain(`URI:spiffe://${TD}/node/n1`);
    expect(text).toMatch(
      /TLS Web Server Authentication, TLS Web Client Authentication|TLS Web Client Authentication, TLS Web Server Authentication/,
    );
  });
});

describe("loadOrCreateCa", () => {
  test("writes the key 0600 in a 0700 dir, and reloading gives the same CA", async () => {
    const caDir = join(dir, "ca-store");
    const first = await loadOrCreateCa(caDir, { trustDomain: "reload.test" });
    expect((await stat(join(caDir, CA_KEY_FILE))).mode & 0o777).toBe(0o600);
    expect((await stat(join(caDir, CA_CERT_FILE))).mode & 0o777).toBe(0o644);
    expect((await stat(caDir)).mode & 0o777).toBe(0o700);

    const second = await loadOrCreateCa(caDir, { trustDomain: "ignored.test" });
    expect(second.certPem).toBe(first.certPem);
    expect(second.trustDomain).toBe("reload.test");
    expect(second.cert.serialNumber).toBe(first.cert.serialNumber);
    // The reloaded key is the same key: what it issues verifies against the original certificate.
    const svid = await issueSvid(second, { id: spiffeId("reload.test", "node", "n2"), role: "r" });
    expect(await svid.cert.verify({ publicKey: first.cert, date: new Date() })).toBe(true);
  });

  test("loadCa refuses a key that does not belong to the certificate", async () => {
    const caDir = join(dir, "ca-mismatch");
    await loadOrCreateCa(caDir, { trustDomain: TD });
    const otherDir = join(dir, "ca-other");
    await loadOrCreateCa(otherDir, { trustDomain: TD });
    await writeFile(join(caDir, CA_KEY_FILE), await readFile(join(otherDir, CA_KEY_FILE)));
    await expect(loadCa(caDir)).rejects.toThrow(/does not match/);
  });

  test("loadCa refuses a leaf certificate as CA", async () => {
    const caDir = join(dir, "ca-leaf");
    await loadOrCreateCa(caDir, { trustDomain: TD });
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r" });
    await writeFile(join(caDir, CA_CERT_FILE), svid.certPem);
    await expect(loadCa(caDir)).rejects.toThrow(/not a CA/);
  });
});

describe("writeSvidFiles", () => {
  test("writes chain, key 0600 and bundle", async () => {
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "r" });
    const out = join(dir, "svid-files");
    const paths = await writeSvidFiles(out, "node", svid);
    expect((await stat(paths.key)).mode & 0o777).toBe(0o600);
    expect(await readFile(paths.key, "utf8")).toBe(svid.keyPem);
    const chain = x509.PemConverter.decode(await readFile(paths.cert, "utf8"));
    expect(chain).toHaveLength(2);
    expect(new Uint8Array(chain[0]!)).toEqual(svid.certDer);
    expect(await readFile(paths.bundle, "utf8")).toBe(ca.certPem);
  });
});
