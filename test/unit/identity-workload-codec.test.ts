// The hand-written protobuf codec of the Workload API's X.509 messages, with
// protobufjs (through @grpc/proto-loader and workload.proto, as the server
// uses it) as the oracle: bytes either one writes, the other reads the same.
import {
  WorkloadApiCodecError,
  decodeX509BundlesResponse,
  decodeX509SvidResponse,
  encodeX509BundlesResponse,
  encodeX509SvidResponse,
  type X509BundlesResponseMsg,
  type X509SvidResponseMsg,
} from "../../identity/workload-api/codec.js";
import { workloadApiService } from "../../identity/workload-api/proto.js";

const methods = workloadApiService().service;
const svidMethod = methods["FetchX509SVID"]!;
const bundlesMethod = methods["FetchX509Bundles"]!;
const oracle = {
  encodeSvid: (m: X509SvidResponseMsg) => new Uint8Array(svidMethod.responseSerialize(m)),
  decodeSvid: (b: Uint8Array) => svidMethod.responseDeserialize(Buffer.from(b)) as unknown,
  encodeBundles: (m: X509BundlesResponseMsg) => new Uint8Array(bundlesMethod.responseSerialize(m)),
  decodeBundles: (b: Uint8Array) => bundlesMethod.responseDeserialize(Buffer.from(b)) as unknown,
};

const bytes = (...xs: number[]) => new Uint8Array(xs);
/**
 * Bytes as hex, so Buffer (protobufjs) and Uint8Array (ours) compare by content.
 * protobufjs fills an absent bytes value of a map entry with [] (its bytes default); that is "" too.
 */
function plain(v: unknown, mapValue = false): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
  if (mapValue && Array.isArray(v) && v.length === 0) return "";
  if (Array.isArray(v)) return v.map((x) => plain(x));
  if (typeof v === "object" && v !== null) {
    const isMap = (k: string) => k === "federated_bundles" || k === "bundles";
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [
        k,
        isMap(k) && typeof x === "object" && x !== null
          ? Object.fromEntries(Object.entries(x).map(([mk, mx]) => [mk, plain(mx, true)]))
          : plain(x),
      ]),
    );
  }
  return v;
}

const big = new Uint8Array(70_000).map((_, i) => i % 251); // a length that needs a 3-byte varint

const svidSamples: [string, X509SvidResponseMsg][] = [
  ["empty", { svids: [], crl: [], federated_bundles: {} }],
  [
    "full",
    {
      svids: [
        {
          spiffe_id: "spiffe://beemesh.local/ns/default/deployment/web/web-0",
          x509_svid: bytes(0x30, 0x03, 1, 2, 3),
          x509_svid_key: big,
          bundle: bytes(0x30, 0x00),
          hint: "ünïcode hint",
        },
        {
          spiffe_id: "spiffe://beemesh.local/x",
          x509_svid: bytes(9),
          x509_svid_key: bytes(),
          bundle: bytes(),
          hint: "",
        },
      ],
      crl: [bytes(1, 2), bytes()],
      federated_bundles: { "spiffe://other.td": bytes(0x30, 0x00), "spiffe://empty.td": bytes() },
    },
  ],
];

describe("X509SVIDResponse", () => {
  test.each(svidSamples)("%s: ours → protobufjs", (_name, msg) => {
    expect(plain(oracle.decodeSvid(encodeX509SvidResponse(msg)))).toEqual(plain(msg));
  });

  test.each(svidSamples)("%s: protobufjs → ours", (_name, msg) => {
    expect(plain(decodeX509SvidResponse(oracle.encodeSvid(msg)))).toEqual(plain(msg));
  });

  test("unknown fields of every wire type are skipped", () => {
    const msg = svidSamples[1]![1];
    const unknown = bytes(
      ...[0x78, 0x96, 0x01], // field 15, varint 150
      ...[0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8], // field 16, fixed64
      ...[0x8a, 0x01, 0x02, 0xaa, 0xbb], // field 17, length-delimited
      ...[0x95, 0x01, 1, 2, 3, 4], // field 18, fixed32
    );
    const withUnknown = Buffer.concat([unknown, encodeX509SvidResponse(msg), unknown]);
    expect(plain(decodeX509SvidResponse(withUnknown))).toEqual(plain(msg));
    expect(plain(oracle.decodeSvid(withUnknown))).toEqual(plain(msg));
  });

  test("a repeated singular field keeps the last value, as protobuf merges", () => {
    // X509SVID with spiffe_id "a" then "b".
    const inner = bytes(0x0a, 0x01, 0x61, 0x0a, 0x01, 0x62);
    const outer = bytes(0x0a, inner.length, ...inner);
    expect(decodeX509SvidResponse(outer).svids[0]!.spiffe_id).toBe("b");
    expect((oracle.decodeSvid(outer) as X509SvidResponseMsg).svids[0]!.spiffe_id).toBe("b");
  });

  test("a __proto__ map key is a key, not a prototype", () => {
    const msg: X509SvidResponseMsg = { svids: [], crl: [], federated_bundles: {} };
    Object.defineProperty(msg.federated_bundles, "__proto__", { value: bytes(7), enumerable: true });
    const decoded = decodeX509SvidResponse(encodeX509SvidResponse(msg));
    expect(Object.keys(decoded.federated_bundles)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(decoded.federated_bundles)).toBeNull();
  });

  test.each([
    ["truncated varint", bytes(0x0a, 0x80), /truncated varint/],
    ["length past the end", bytes(0x0a, 0x05, 0x00), /runs past the end/],
    ["truncated tag", bytes(0x80), /truncated varint/],
    ["varint longer than 10 bytes", bytes(0x78, ...new Array<number>(10).fill(0xff), 0x01), /longer than 10/],
    ["svids as a varint", bytes(0x08, 0x01), /svids: wire type 0, expected 2/],
    ["crl as fixed32", bytes(0x15, 1, 2, 3, 4), /crl: wire type 5, expected 2/],
    ["group wire type", bytes(0x7b), /unsupported wire type 3/],
    ["field number 0", bytes(0x02, 0x00), /invalid field number 0/],
    ["truncated fixed64", bytes(0x79, 1, 2), /truncated/],
    ["nested truncation", bytes(0x0a, 0x02, 0x0a, 0x05), /X509SVIDResponse\.svids\[0\]: length 5/],
    ["spiffe_id as varint", bytes(0x0a, 0x02, 0x08, 0x01), /svids\[0\]\.spiffe_id: wire type 0/],
    ["invalid UTF-8 in spiffe_id", bytes(0x0a, 0x03, 0x0a, 0x01, 0xff), /spiffe_id is not valid UTF-8/],
    ["map entry key as varint", bytes(0x1a, 0x02, 0x08, 0x01), /federated_bundles\.key: wire type 0/],
  ])("rejects %s", (_name, input, message) => {
    expect(() => decodeX509SvidResponse(input)).toThrow(WorkloadApiCodecError);
    expect(() => decodeX509SvidResponse(input)).toThrow(message);
  });

  test("decoded bytes are copies, not views of the frame", () => {
    const frame = encodeX509SvidResponse(svidSamples[1]![1]);
    const decoded = decodeX509SvidResponse(frame);
    frame.fill(0);
    expect(decoded.svids[0]!.x509_svid).toEqual(bytes(0x30, 0x03, 1, 2, 3));
  });
});

describe("X509BundlesResponse", () => {
  const samples: [string, X509BundlesResponseMsg][] = [
    ["empty", { crl: [], bundles: {} }],
    ["full", { crl: [bytes(5)], bundles: { "spiffe://beemesh.local": big, "spiffe://b": bytes(1) } }],
  ];

  test.each(samples)("%s round-trips both ways", (_name, msg) => {
    expect(plain(oracle.decodeBundles(encodeX509BundlesResponse(msg)))).toEqual(plain(msg));
    expect(plain(decodeX509BundlesResponse(oracle.encodeBundles(msg)))).toEqual(plain(msg));
  });

  test("rejects a map entry that runs past its message", () => {
    expect(() => decodeX509BundlesResponse(bytes(0x12, 0x03, 0x0a, 0x05, 0x61))).toThrow(
      /X509BundlesResponse\.bundles: length 5 at byte 1 runs past the end/,
    );
  });
});
