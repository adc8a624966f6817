// SPIFFE ID rules from the SPIFFE ID standard (spiffe/spiffe standards/SPIFFE-ID.md §2).
import { SpiffeIdError, isMemberOf, parseSpiffeId, principalOf, spiffeId } from "../../identity/spiffe-id.js";

describe("parseSpiffeId accepts valid IDs", () => {
  test.each([
    ["spiffe://beemesh.local", "beemesh.local", "", []],
    ["spiffe://beemesh.local/node/n1", "beemesh.local", "/node/n1", ["node", "n1"]],
    [
      "spiffe://td-1_x.example/a/B/c.d/e-f/g_h",
      "td-1_x.example",
      "/a/B/c.d/e-f/g_h",
      ["a", "B", "c.d", "e-f", "g_h"],
    ],
    ["spiffe://1.2.3.4/x", "1.2.3.4", "/x", ["x"]],
    ["spiffe://td/...", "td", "/...", ["..."]],
    ["spiffe://td/.a/a.", "td", "/.a/a.", [".a", "a."]],
  ])("%s", (input, td, path, segments) => {
    const id = parseSpiffeId(input);
    expect(id.trustDomain).toBe(td);
    expect(id.path).toBe(path);
    expect(id.segments).toEqual(segments);
    expect(id.toString()).toBe(input);
  });
});

describe("parseSpiffeId rejects", () => {
  const longPath = "/" + "a".repeat(2048 - "spiffe://td/".length + 1);
  test.each([
    ["empty", "", /cannot be empty/],
    ["missing scheme", "beemesh.local/node/n1", /scheme/],
    ["other scheme", "https://beemesh.local/node/n1", /scheme/],
    ["uppercase scheme", "SPIFFE://beemesh.local/x", /scheme/],
    ["scheme without slashes", "spiffe:beemesh.local/x", /scheme/],
    ["missing trust domain", "spiffe:///path", /trust domain is missing/],
    ["bare scheme", "spiffe://", /trust domain is missing/],
    ["uppercase trust domain", "spiffe://Beemesh.local/x", /trust domain characters/],
    ["trust domain with space", "spiffe://bee mesh/x", /trust domain characters/],
    ["trust domain with percent", "spiffe://bee%20mesh/x", /trust domain characters/],
    ["trust domain with unicode", "spiffe://bééé/x", /trust domain characters/],
    ["port", "spiffe://beemesh.local:8443/x", /port is not allowed/],
    ["userinfo", "spiffe://user@beemesh.local/x", /user info is not allowed/],
    ["userinfo and password", "spiffe://user:pw@beemesh.local/x", /user info is not allowed/],
    ["query", "spiffe://beemesh.local/x?y=1", /query is not allowed/],
    ["fragment", "spiffe://beemesh.local/x#frag", /fragment is not allowed/],
    ["query on trust domain", "spiffe://beemesh.local?x", /query is not allowed/],
    ["root trailing slash", "spiffe://beemesh.local/", /trailing slash/],
    ["path trailing slash", "spiffe://beemesh.local/node/", /trailing slash/],
    ["empty segment", "spiffe://beemesh.local//node", /empty segments/],
    ["empty middle segment", "spiffe://beemesh.local/a//b", /empty segments/],
    ["dot segment", "spiffe://beemesh.local/a/./b", /dot segments/],
    ["dot-dot segment", "spiffe://beemesh.local/a/../b", /dot segments/],
    ["final dot segment", "spiffe://beemesh.local/a/..", /dot segments/],
    ["percent-encoded segment", "spiffe://beemesh.local/a%2Fb", /path segment characters/],
    ["segment with space", "spiffe://beemesh.local/a b", /path segment characters/],
    ["segment with colon", "spiffe://beemesh.local/a:b", /path segment characters/],
    ["segment with at", "spiffe://beemesh.local/a@b", /path segment characters/],
    ["segment with unicode", "spiffe://beemesh.local/caf\u00e9", /path segment characters/],
    ["longer than 2048 bytes", "spiffe://td" + longPath, /2048 bytes/],
  ])("%s", (_name, input, message) => {
    expect(() => parseSpiffeId(input)).toThrow(SpiffeIdError);
    expect(() => parseSpiffeId(input)).toThrow(message);
  });

  test("the 2048 limit counts bytes, not characters", () => {
    const exactly = "spiffe://td/" + "a".repeat(2048 - "spiffe://td/".length);
    expect(Buffer.byteLength(exactly)).toBe(2048);
    expect(parseSpiffeId(exactly).toString()).toBe(exactly);
    // 2047 ASCII bytes plus one 2-byte character: 2048 characters but 2049 bytes.
    const multiByte = "spiffe://td/" + "a".repeat(2048 - "spiffe://td/".length - 1) + "\u00e9";
    expect(multiByte.length).toBe(2048);
    expect(() => parseSpiffeId(multiByte)).toThrow(/2048 bytes/);
  });

  test("the trust domain is at most 255 characters", () => {
    expect(parseSpiffeId(`spiffe://${"a".repeat(255)}/x`).trustDomain).toHaveLength(255);
    expect(() => parseSpiffeId(`spiffe://${"a".repeat(256)}/x`)).toThrow(/too long/);
  });

  test("errors carry the input and the component prefix", () => {
    let caught: unknown;
    try {
      parseSpiffeId("spiffe://td/a/../b");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SpiffeIdError);
    expect((caught as SpiffeIdError).name).toBe("SpiffeIdError");
    expect((caught as SpiffeIdError).input).toBe("spiffe://td/a/../b");
    expect((caught as SpiffeIdError).message).toMatch(/^identity: /);
  });
});

describe("spiffeId builder", () => {
  test("builds and validates each segment", () => {
    expect(spiffeId("beemesh.local", "node", "n1").toString()).toBe("spiffe://beemesh.local/node/n1");
    expect(spiffeId("beemesh.local").toString()).toBe("spiffe://beemesh.local");
    expect(() => spiffeId("beemesh.local", "a/b")).toThrow(/path segment characters/);
    expect(() => spiffeId("beemesh.local", "")).toThrow(/empty segments/);
    expect(() => spiffeId("beemesh.local", "..")).toThrow(/dot segments/);
    expect(() => spiffeId("BEEMESH")).toThrow(/trust domain characters/);
  });

  test("round-trips through parse", () => {
    const id = spiffeId("beemesh.local", "ns", "default", "deployment", "web", "web-0");
    expect(parseSpiffeId(id.toString())).toEqual(
      expect.objectContaining({ path: id.path, segments: id.segments }),
    );
  });

  test("isMemberOf compares trust domains", () => {
    expect(isMemberOf(parseSpiffeId("spiffe://a.b/x"), "a.b")).toBe(true);
    expect(isMemberOf(parseSpiffeId("spiffe://a.b/x"), "a.bc")).toBe(false);
  });
});

describe("principalOf (DESIGN §5 ID layout)", () => {
  test.each([
    ["spiffe://td/controller/dispatcher/d-1", { kind: "controller", name: "dispatcher", instance: "d-1" }],
    ["spiffe://td/node/n1", { kind: "node", nodeId: "n1" }],
    [
      "spiffe://td/ns/default/deployment/web/web-abc",
      { kind: "workload", ns: "default", workloadKind: "deployment", parent: "web", pod: "web-abc" },
    ],
    ["spiffe://td/user/alice", { kind: "user", name: "alice" }],
    ["spiffe://td/node/n1/extra", { kind: "other" }],
    ["spiffe://td/controller/dispatcher", { kind: "other" }],
    ["spiffe://td/ns/default/deployment/web", { kind: "other" }],
    ["spiffe://td", { kind: "other" }],
    ["spiffe://td/something", { kind: "other" }],
  ])("%s", (input, principal) => {
    expect(principalOf(parseSpiffeId(input))).toEqual(principal);
  });
});
