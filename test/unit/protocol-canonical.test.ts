// Canonical JSON and the signed bytes, compared byte for byte.
import {
  CanonicalJsonError,
  SIGNING_CONTEXT,
  canonicalBytes,
  canonicalJson,
  signingBytes,
} from "../../protocol/index.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("canonicalJson", () => {
  test("sorts keys at every level and writes no whitespace", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null }, "": true })).toBe(
      '{"":true,"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  test("orders keys by UTF-16 code units (RFC 8785), not by locale", () => {
    // "\u00e9" (233) sorts after "z" (122); "A" (65) before "a" (97); "\ud83d\ude00" (surrogates 0xd83d) before "\uff01".
    expect(canonicalJson({ z: 1, "\u00e9": 2, a: 3, A: 4, "\uff01": 5, "\ud83d\ude00": 6 })).toBe(
      '{"A":4,"a":3,"z":1,"\u00e9":2,"\ud83d\ude00":6,"\uff01":5}',
    );
  });

  test("writes numbers and strings as JSON does", () => {
    expect(canonicalJson([0, -0, 1.5, 1e21, 1e-7, -3, 2 ** 53])).toBe(
      "[0,0,1.5,1e+21,1e-7,-3,9007199254740992]",
    );
    expect(canonicalJson(['a"b\\c', "\n\t\u0001", "\u2028", "\ud800"])).toBe(
      '["a\\"b\\\\c","\\n\\t\\u0001","\u2028","\\ud800"]',
    );
  });

  test("is the same for the same data whatever the insertion order", () => {
    const a = { x: 1, y: { p: [1, 2], q: "s" } };
    const b = { y: { q: "s", p: [1, 2] }, x: 1 };
    expect(hex(canonicalBytes(a))).toBe(hex(canonicalBytes(b)));
  });

  test.each([
    ["NaN", { a: Number.NaN }],
    ["Infinity", [Number.POSITIVE_INFINITY]],
    ["undefined value", { a: undefined }],
    ["undefined item", [undefined]],
    ["bigint", { a: 1n }],
    ["function", { a: () => 1 }],
    ["symbol", { a: Symbol("x") }],
    ["Date", { a: new Date(0) }],
    ["Map", new Map()],
  ])("refuses %s", (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(CanonicalJsonError);
  });

  test("refuses cycles but accepts a shared (acyclic) reference", () => {
    const shared = { k: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"k":1},"b":{"k":1}}');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(CanonicalJsonError);
  });

  test("a throwing getter becomes a CanonicalJsonError", () => {
    const evil = Object.defineProperty({}, "x", {
      enumerable: true,
      get() {
        throw new Error("boom");
      },
    });
    expect(() => canonicalJson(evil)).toThrow(CanonicalJsonError);
  });

  test("encodes UTF-8", () => {
    expect(hex(canonicalBytes({ s: "\u00e9\u20ac" }))).toBe(
      hex(new TextEncoder().encode('{"s":"\u00e9\u20ac"}')),
    );
    expect(hex(canonicalBytes("\u00e9"))).toBe("22c3a922");
  });
});

describe("signingBytes", () => {
  const input = {
    type: "Bid",
    subject: "beemesh.scheduler.proposals.01HF7YAT00SP7ZQ8GM4CVZ7K5V",
    payload: { task_id: "01HF7YAT00SP7ZQ8GM4CVZ7K5V", score: 0.5, fit: true },
    nonce: "abcdefghijklmnop",
    ts: 1700000000000,
    spiffe_id: "spiffe://beemesh.local/node/node-1",
  };

  test("are the canonical JSON of the signed fields, byte for byte", () => {
    const expected =
      `{"ctx":"${SIGNING_CONTEXT}","nonce":"abcdefghijklmnop",` +
      `"payload":{"fit":true,"score":0.5,"task_id":"01HF7YAT00SP7ZQ8GM4CVZ7K5V"},` +
      `"spiffe_id":"spiffe://beemesh.local/node/node-1",` +
      `"subject":"beemesh.scheduler.proposals.01HF7YAT00SP7ZQ8GM4CVZ7K5V",` +
      `"ts":1700000000000,"type":"Bid"}`;
    const bytes = signingBytes(input);
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(bytes).toString("utf8")).toBe(expected);
    expect(SIGNING_CONTEXT).toBe("beemesh/envelope/v1");
    // Pin the exact bytes: a change here breaks every signature on the wire.
    expect(Buffer.from(bytes).subarray(0, 32).toString("hex")).toBe(
      Buffer.from('{"ctx":"beemesh/envelope/v1","no').toString("hex"),
    );
    expect(bytes.length).toBe(expected.length);
  });

  test("change with every signed field", () => {
    const base = hex(signingBytes(input));
    const variants = [
      { ...input, type: "Task" },
      { ...input, subject: "beemesh.scheduler.proposals.X" },
      { ...input, payload: { ...input.payload, score: 0.6 } },
      { ...input, nonce: "abcdefghijklmnoq" },
      { ...input, ts: input.ts + 1 },
      { ...input, spiffe_id: "spiffe://beemesh.local/node/node-2" },
    ];
    for (const v of variants) expect(hex(signingBytes(v))).not.toBe(base);
  });
});
