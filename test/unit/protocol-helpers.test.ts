// Label syntax, selector matching and formatting, quantity conversion.
import {
  compareQuantities,
  isQuantity,
  labelValueProblems,
  matchesSelector,
  qualifiedNameProblems,
  quantityToBytes,
  quantityToMillis,
  selectorToString,
  toPlainJson,
} from "../../protocol/index.js";

describe("labels", () => {
  test.each(["app", "beemesh.io/role", "a_b.c-d", "A1"])("key %j is valid", (key) => {
    expect(qualifiedNameProblems(key)).toEqual([]);
  });
  test.each(["", "/x", "a/b/c", "-a", "a b", "Bad_Prefix/x", "x".repeat(64), "beemesh.io/"])(
    "key %j is invalid",
    (key) => {
      expect(qualifiedNameProblems(key).length).toBeGreaterThan(0);
    },
  );
  test("values", () => {
    expect(labelValueProblems("")).toEqual([]);
    expect(labelValueProblems("v1.2_x")).toEqual([]);
    expect(labelValueProblems("-x").length).toBe(1);
    expect(labelValueProblems("x".repeat(64)).length).toBe(1);
  });
});

describe("selectors", () => {
  const labels = { app: "web", tier: "front" };
  test.each([
    [{ matchLabels: { app: "web" } }, true],
    [{ matchLabels: { app: "db" } }, false],
    [{ matchExpressions: [{ key: "tier", operator: "In" as const, values: ["front", "back"] }] }, true],
    [{ matchExpressions: [{ key: "tier", operator: "NotIn" as const, values: ["front"] }] }, false],
    [{ matchExpressions: [{ key: "canary", operator: "NotIn" as const, values: ["x"] }] }, true],
    [{ matchExpressions: [{ key: "app", operator: "Exists" as const }] }, true],
    [{ matchExpressions: [{ key: "app", operator: "DoesNotExist" as const }] }, false],
    [{ matchLabels: { app: "web" }, matchExpressions: [{ key: "x", operator: "Exists" as const }] }, false],
    [{}, true],
  ])("%j matches: %s", (selector, expected) => {
    expect(matchesSelector(labels, selector)).toBe(expected);
  });

  test("inherited properties are not labels", () => {
    expect(matchesSelector({}, { matchExpressions: [{ key: "toString", operator: "Exists" }] })).toBe(false);
  });

  test("formats as kubectl's -l syntax", () => {
    expect(
      selectorToString({
        matchLabels: { tier: "front", app: "web" },
        matchExpressions: [
          { key: "env", operator: "In", values: ["prod", "dev"] },
          { key: "x", operator: "NotIn", values: ["1"] },
          { key: "y", operator: "Exists" },
          { key: "z", operator: "DoesNotExist" },
        ],
      }),
    ).toBe("app=web,tier=front,env in (dev,prod),x notin (1),y,!z");
  });
});

describe("quantities", () => {
  test.each([
    ["500m", 500],
    ["1", 1000],
    ["1.5", 1500],
    [2, 2000],
    ["0.0001", 1], // rounded up
    ["1k", 1_000_000],
    ["1e3", 1_000_000],
    ["100u", 1],
  ])("cpu %j is %d millicores", (q, millis) => {
    expect(quantityToMillis(q)).toBe(millis);
  });

  test.each([
    ["128Mi", 134217728],
    ["1Gi", 1073741824],
    ["1G", 1e9],
    ["1E", 1e18 > Number.MAX_SAFE_INTEGER ? undefined : 1e18],
    ["1.5Ki", 1536],
    ["100", 100],
    ["500m", 1],
  ])("memory %j is %s bytes", (q, bytes) => {
    expect(quantityToBytes(q)).toBe(bytes);
  });

  test.each(["", "abc", "-1", "1.2.3", "1Ki2", "1e999", "Mi", ".", -5, 1.5])("%j is not a quantity", (q) => {
    expect(isQuantity(q)).toBe(false);
    expect(quantityToMillis(q)).toBeUndefined();
  });

  test("compares exactly", () => {
    expect(compareQuantities("1", "1000m")).toBe(0);
    expect(compareQuantities("1Gi", "1G")).toBe(1);
    expect(compareQuantities("999m", 1)).toBe(-1);
    expect(compareQuantities("x", 1)).toBeUndefined();
  });
});

describe("toPlainJson", () => {
  test("copies plain data and drops undefined properties", () => {
    const input = { a: [1, "x", null, true], b: undefined, c: { d: -0 } };
    const out = toPlainJson(input);
    expect(out.causes).toEqual([]);
    expect(out.value).toEqual({ a: [1, "x", null, true], c: { d: 0 } });
    expect(out.value).not.toBe(input);
  });

  test("reports what JSON cannot hold, with paths", () => {
    const cyclic: Record<string, unknown> = { n: Number.NaN, f: () => 1, arr: [undefined], d: new Date(0) };
    cyclic.self = cyclic;
    Object.defineProperty(cyclic, "__proto__", { value: { polluted: true }, enumerable: true });
    Object.defineProperty(cyclic, "g", {
      enumerable: true,
      get() {
        throw new Error("boom");
      },
    });
    const out = toPlainJson(cyclic);
    const byPath = Object.fromEntries(out.causes.map((c) => [c.path.join("/"), c.reason]));
    expect(byPath).toEqual({
      n: "FieldValueInvalid",
      f: "FieldValueTypeInvalid",
      "arr/0": "FieldValueTypeInvalid",
      d: "FieldValueTypeInvalid",
      self: "FieldValueInvalid",
      ["__proto__"]: "FieldValueForbidden", // computed key: a plain one would set the prototype
      g: "FieldValueInvalid",
    });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test("limits depth and size", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = { x: deep };
    expect(toPlainJson(deep, { maxDepth: 10, maxNodes: 1000 }).causes[0]?.path).toHaveLength(11);
    const wide = Array.from({ length: 50 }, () => [1, 2, 3]);
    expect(toPlainJson(wide, { maxDepth: 10, maxNodes: 100 }).causes).toEqual([
      expect.objectContaining({ reason: "FieldValueTooMany" }),
    ]);
  });
});
