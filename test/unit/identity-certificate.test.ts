// Reading certificate fields straight from DER (certificate.ts), with
// @peculiar/x509 and Node's X509Certificate as the oracles, plus the PEM codec
// that replaced x509's PemConverter (der.ts).
import { X509Certificate } from "node:crypto";
import { createCa, issueSvid, type CertificateAuthority } from "../../identity/ca.js";
import {
  CertificateFormatError,
  KeyUsage,
  OID_OU,
  decodeOid,
  nameAttribute,
  readCertificate,
} from "../../identity/certificate.js";
import { generateKeyPair, SIGN_ALG, x509 } from "../../identity/crypto.js";
import { DerError, decodePem, derToPem, readDerElement } from "../../identity/der.js";
import { spiffeId } from "../../identity/spiffe-id.js";
import { SvidUntrustedError, verifySvidChain } from "../../identity/verify.js";

const TD = "beemesh.local";
let ca: CertificateAuthority;

beforeAll(async () => {
  ca = await createCa({ trustDomain: TD, now: new Date("2030-01-01T00:00:00Z") });
});

function der(cert: x509.X509Certificate): Uint8Array {
  return new Uint8Array(cert.rawData);
}

/** Every field certificate.ts reads, as @peculiar/x509 reads it. */
function peculiarView(cert: x509.X509Certificate) {
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  return {
    issuer: cert.issuer,
    subject: cert.subject,
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
    spki: Buffer.from(cert.publicKey.rawData).toString("hex"),
    isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
    keyUsage: ku?.usages,
    uriSans: (cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [])
      .filter((n) => n.type === "url")
      .map((n) => n.value),
    subjectKeyId: cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    authorityKeyId: cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
    ou: cert.subjectName.getField("OU")[0],
  };
}

function ourView(bytes: Uint8Array) {
  const f = readCertificate(bytes);
  return {
    issuer: f.issuer.text,
    subject: f.subject.text,
    notBefore: f.notBefore.getTime(),
    notAfter: f.notAfter.getTime(),
    spki: Buffer.from(f.spki).toString("hex"),
    isCa: f.isCa,
    keyUsage: f.keyUsage,
    uriSans: f.uriSans,
    subjectKeyId: f.subjectKeyId,
    authorityKeyId: f.authorityKeyId,
    ou: nameAttribute(f.subject, OID_OU),
  };
}

describe("readCertificate", () => {
  test("reads a CA as @peculiar/x509 does", () => {
    expect(ourView(der(ca.cert))).toEqual(peculiarView(ca.cert));
    expect(ourView(der(ca.cert))).toMatchObject({
      isCa: true,
      keyUsage: KeyUsage.keyCertSign | KeyUsage.cRLSign,
    });
  });

  test("reads an SVID with DNS and IP SANs as @peculiar/x509 does", async () => {
    const svid = await issueSvid(ca, {
      id: spiffeId(TD, "controller", "dispatcher", "d-0"),
      role: "dispatcher",
      dnsNames: ["dispatcher.local"],
      ipAddresses: ["127.0.0.1"],
      now: new Date("2030-01-01T00:00:00Z"),
    });
    const view = ourView(svid.certDer);
    expect(view).toEqual(peculiarView(svid.cert));
    expect(view).toMatchObject({
      isCa: false,
      keyUsage: KeyUsage.digitalSignature,
      uriSans: [`spiffe://${TD}/controller/dispatcher/d-0`],
      ou: "dispatcher",
    });
    expect(view.authorityKeyId).toBe(ourView(der(ca.cert)).subjectKeyId);
  });

  test("agrees with Node's X509Certificate on validity and key", async () => {
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "node" });
    const node = new X509Certificate(svid.certDer);
    const f = readCertificate(svid.certDer);
    expect(f.notBefore.getTime()).toBe(new Date(node.validFrom).getTime());
    expect(f.notAfter.getTime()).toBe(new Date(node.validTo).getTime());
    expect(Buffer.from(f.spki).equals(node.publicKey.export({ type: "spki", format: "der" }))).toBe(true);
  });

  test("reads GeneralizedTime (dates from 2050 on) and several URI SANs", async () => {
    const keys = await generateKeyPair();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: "00ff",
      subject: "OU=a, OU=b, O=beemesh",
      issuer: ca.cert.subject,
      notBefore: new Date("2049-12-31T23:59:59Z"),
      notAfter: new Date("2061-02-03T04:05:06Z"),
      signingKey: ca.privateKey,
      publicKey: keys.publicKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: "url", value: "spiffe://a/x" },
          { type: "dns", value: "x.local" },
          { type: "url", value: "spiffe://a/y" },
        ]),
      ],
    });
    const f = readCertificate(der(cert));
    expect(f.notBefore.toISOString()).toBe("2049-12-31T23:59:59.000Z");
    expect(f.notAfter.toISOString()).toBe("2061-02-03T04:05:06.000Z");
    expect(f.uriSans).toEqual(["spiffe://a/x", "spiffe://a/y"]);
    expect(f.keyUsage).toBeUndefined();
    expect(f.isCa).toBe(false);
    expect(nameAttribute(f.subject, OID_OU)).toBe(peculiarView(cert).ou);
    expect(ourView(der(cert))).toEqual(peculiarView(cert));
  });

  test("refuses an extension that appears twice", async () => {
    const keys = await generateKeyPair();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: "01",
      subject: "O=beemesh",
      issuer: ca.cert.subject,
      notBefore: new Date("2030-01-01T00:00:00Z"),
      notAfter: new Date("2030-02-01T00:00:00Z"),
      signingKey: ca.privateKey,
      publicKey: keys.publicKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: "spiffe://a/x" }]),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: "spiffe://a/y" }]),
      ],
    });
    expect(() => readCertificate(der(cert))).toThrow(/extension 2\.5\.29\.17 appears twice/);
  });

  test.each([
    ["empty input", new Uint8Array(0), /truncated DER element/],
    ["not a SEQUENCE", new Uint8Array([0x04, 0x00]), /certificate: expected tag 0x30/],
    ["an empty SEQUENCE", new Uint8Array([0x30, 0x00]), /expected 3 elements, found 0/],
  ])("refuses %s", (_name, input, message) => {
    expect(() => readCertificate(input)).toThrow(CertificateFormatError);
    expect(() => readCertificate(input)).toThrow(message);
  });

  test("refuses truncated and padded certificates", () => {
    const bytes = der(ca.cert);
    expect(() => readCertificate(bytes.subarray(0, bytes.length - 1))).toThrow(/runs past the end/);
    const padded = new Uint8Array([...bytes, 0]);
    expect(() => readCertificate(padded)).toThrow(/trailing bytes/);
    // Flip the validity's tag: a SEQUENCE where a time must be.
    const f = Buffer.from(bytes);
    const at = f.indexOf(Buffer.from([0x17, 0x0d])); // the first UTCTime
    f[at] = 0x30;
    expect(() => readCertificate(new Uint8Array(f))).toThrow(CertificateFormatError);
  });
});

describe("decodeOid", () => {
  test.each([
    [[0x55, 0x1d, 0x11], "2.5.29.17"],
    [[0x55, 0x04, 0x0b], "2.5.4.11"],
    [[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02], "1.2.840.10045.4.3.2"],
    [[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19], "0.9.2342.19200300.100.1.25"],
  ])("%j is %s", (input, oid) => {
    expect(decodeOid(new Uint8Array(input))).toBe(oid);
  });

  test.each([
    ["empty", []],
    ["truncated", [0x55, 0x86]],
    ["non-minimal", [0x55, 0x80, 0x01]],
  ])("refuses %s", (_name, input) => {
    expect(() => decodeOid(new Uint8Array(input))).toThrow(CertificateFormatError);
  });
});

describe("PEM", () => {
  test("derToPem writes what @peculiar/x509 writes", async () => {
    expect(derToPem(der(ca.cert), "CERTIFICATE")).toBe(ca.cert.toString("pem"));
    const keyDer = new Uint8Array(300).fill(7);
    expect(derToPem(keyDer, "PRIVATE KEY")).toBe(x509.PemConverter.encode(keyDer.buffer, "PRIVATE KEY"));
  });

  test("decodePem reads blocks in order, with CRLF, headers and text around them", () => {
    const a = derToPem(new Uint8Array([1, 2, 3]), "CERTIFICATE");
    const b = derToPem(new Uint8Array([4, 5]), "PRIVATE KEY");
    const withHeaders =
      "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: x\n\nBgc=\n-----END CERTIFICATE-----";
    const text = `intro\r\n${a.replace(/\n/g, "\r\n")}\nbetween\n${b}\n${withHeaders}\ntrailer`;
    expect(decodePem(text).map((p) => [p.label, [...p.der]])).toEqual([
      ["CERTIFICATE", [1, 2, 3]],
      ["PRIVATE KEY", [4, 5]],
      ["CERTIFICATE", [6, 7]],
    ]);
  });

  test("decodePem refuses a body that is not base64", () => {
    expect(() => decodePem("-----BEGIN CERTIFICATE-----\nAA*A\n-----END CERTIFICATE-----\n")).toThrow(
      DerError,
    );
    expect(() => decodePem("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")).toThrow(
      /not base64/,
    );
  });

  test("mismatched BEGIN/END labels are not a block", () => {
    expect(decodePem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n")).toEqual([]);
  });
});

describe("readDerElement", () => {
  test("reports the element, its content and the whole", () => {
    const el = readDerElement(new Uint8Array([9, 0x04, 0x02, 0xaa, 0xbb, 9]), 1);
    expect(el.tag).toBe(0x04);
    expect([...el.value]).toEqual([0xaa, 0xbb]);
    expect([...el.raw]).toEqual([0x04, 0x02, 0xaa, 0xbb]);
    expect(el.end).toBe(5);
  });

  test("refuses multi-byte tags", () => {
    expect(() => readDerElement(new Uint8Array([0x1f, 0x81, 0x00]), 0)).toThrow(/multi-byte DER tag/);
  });
});

describe("verifySvidChain bundles", () => {
  test("take Node's X509Certificate as well as @peculiar/x509's", async () => {
    const now = Date.parse("2030-01-01T01:00:00Z"); // inside the CA's validity
    const svid = await issueSvid(ca, { id: spiffeId(TD, "node", "n1"), role: "node", now: new Date(now) });
    const other = await createCa({ trustDomain: TD, now: new Date(now) });
    const nodeCa = new X509Certificate(der(ca.cert));
    expect((await verifySvidChain(svid.certDer, [nodeCa], now, TD)).toString()).toBe(svid.spiffeId);
    expect((await verifySvidChain(svid.certDer, [other.cert, nodeCa], now, TD)).toString()).toBe(
      svid.spiffeId,
    );
    await expect(
      verifySvidChain(svid.certDer, [new X509Certificate(der(other.cert))], now, TD),
    ).rejects.toThrow(SvidUntrustedError);
  });
});
