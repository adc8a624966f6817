import { NonceCache } from "../../protocol/bus/nonce-cache.js";

describe("NonceCache", () => {
  test("a nonce is fresh once, then a replay", () => {
    const c = new NonceCache({ windowMs: 1000 });
    expect(c.check("a", 100, 100)).toBe("fresh");
    expect(c.check("a", 100, 150)).toBe("replay");
    expect(c.check("b", 100, 150)).toBe("fresh");
  });

  test("entries older than the window are forgotten", () => {
    const c = new NonceCache({ windowMs: 1000 });
    c.check("a", 100, 100);
    c.check("b", 900, 900);
    expect(c.size).toBe(2);
    c.check("c", 1500, 1500);
    expect(c.size).toBe(2); // a (ts 100) < 1500 - 1000 is gone; b stays
    expect(c.check("b", 900, 1600)).toBe("replay");
  });

  test("when full, the oldest ts goes and becomes a floor nothing older passes", () => {
    const c = new NonceCache({ windowMs: 1_000_000, maxEntries: 3 });
    for (const [k, ts] of [
      ["a", 50],
      ["b", 10],
      ["c", 30],
    ] as const)
      expect(c.check(k, ts, 100)).toBe("fresh");
    expect(c.check("d", 40, 100)).toBe("fresh");
    expect(c.size).toBe(3);
    // "b" (ts 10) was evicted: a replay of it is still refused, by the floor.
    expect(c.check("b", 10, 100)).toBe("below_floor");
    expect(c.check("e", 5, 100)).toBe("below_floor");
    expect(c.check("a", 50, 100)).toBe("replay");
    expect(c.check("f", 11, 100)).toBe("fresh");
  });

  test("heap order holds over many random inserts", () => {
    const c = new NonceCache({ windowMs: 10, maxEntries: 1_000_000 });
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const live = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const now = i;
      const ts = now - Math.floor(rand() * 10);
      const key = `k${i}`;
      expect(c.check(key, ts, now)).toBe("fresh");
      live.set(key, ts);
      for (const [k, t] of live) if (t < now - 10) live.delete(k);
      expect(c.size).toBe(live.size);
    }
  });

  test("rejects a nonsensical bound", () => {
    expect(() => new NonceCache({ windowMs: 1, maxEntries: 0 })).toThrow(RangeError);
  });
});
