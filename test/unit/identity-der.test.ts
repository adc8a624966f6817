// Splitting concatenated DER, as the Workload API carries chains and bundles.
import { createCa } from "../../identity/ca.js";
import {
  DerError,
  concatDer,
  derToPem,
  pemCertificatesToDer,
  splitConcatenatedDer,
} from "../../identity/der.js";

describe("splitConcatenatedDer", () => {
  test.each([
    ["short form", [0x30, 0x02, 0x01, 0x02], [[0x30, 0x02, 0x01, 0x02]]],
    [
      "two elements",
      [0x30, 0x00, 0x30, 0x01, 0xff],
      [
        [0x30, 0x00],
        [0x30, 0x01, 0xff],
      ],
    ],
    ["empty input", [], []],
  ])("%s", (_name, input, expected) => {
    expect(splitConcatenatedDer(new Uint8Array(input)).map((u) => [...u])).toEqual(expected);
  });

  test("long-form lengths", () => {
    const body = new Uint8Array(300).fill(7);
    const el = new Uint8Array([0x30, 0x82, 0x01, 0x2c, ...body]);
    const parts = splitConcatenatedDer(concatDer([el, el]));
    expect(parts).toHaveLength(2);
    expect(parts[1]!.length).toBe(304);
  });

  test.each([
    ["wrong tag", [0x04, 0x00], /expected a DER SEQUENCE/],
    ["missing length", [0x30], /truncated/],
    ["runs past the end", [0x30, 0x05, 0x00], /runs past the end/],
    ["indefinite length", [0x30, 0x80, 0x00, 0x00], /unsupported DER length/],
    ["truncated long length", [0x30, 0x82, 0x01], /truncated/],
    ["trailing garbage", [0x30, 0x00, 0x01], /expected a DER SEQUENCE/],
  ])("rejects %s", (_name, input, message) => {
    expect(() => splitConcatenatedDer(new Uint8Array(input))).toThrow(DerError);
    expect(() => splitConcatenatedDer(new Uint8Array(input))).toThrow(message);
  });

  test("real certificates round-trip through DER and PEM", async () => {
    const a = await createCa();
    const b = await createCa();
    const ders = pemCertificatesToDer(a.certPem + "\n" + b.certPem);
    expect(ders).toHaveLength(2);
    const split = splitConcatenatedDer(concatDer(ders));
    expect(split.map((d) => derToPem(d, "CERTIFICATE").trim())).toEqual([a.certPem.trim(), b.certPem.trim()]);
  });

  test("pemCertificatesToDer ignores non-certificate blocks", async () => {
    const a = await createCa();
    const key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    expect(pemCertificatesToDer(key + a.certPem)).toHaveLength(1);
  });
});
