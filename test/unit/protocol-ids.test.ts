// ULIDs with an injected clock and randomness, and deterministic task ids.
import { createHash } from "node:crypto";
import {
  UlidError,
  deterministicTaskId,
  encodeUlid,
  isUlid,
  parseTask,
  systemUlidSource,
  ulidFactory,
  ulidTime,
} from "../../protocol/index.js";
import { exampleTask } from "../../protocol/examples.js";

function fakeSource(start: number, randomFill = 0) {
  let now = start;
  let calls = 0;
  return {
    source: {
      now: () => now,
      randomBytes: (n: number) => {
        calls += 1;
        return new Uint8Array(n).fill(randomFill);
      },
    },
    advance: (ms: number) => {
      now += ms;
    },
    set: (ms: number) => {
      now = ms;
    },
    calls: () => calls,
  };
}

describe("ULID", () => {
  test("encodes known vectors", () => {
    expect(encodeUlid(0, new Uint8Array(10))).toBe("00000000000000000000000000");
    expect(encodeUlid(2 ** 48 - 1, new Uint8Array(10).fill(255))).toBe("7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    // 1469918176385 ms is the time of the ULID spec's example "01ARYZ6S41...".
    expect(encodeUlid(1469918176385, new Uint8Array(10)).slice(0, 10)).toBe("01ARYZ6S41");
    expect(ulidTime("01ARYZ6S41TSV4RRFFQ69G5FAV")).toBe(1469918176385);
  });

  test("refuses times outside 48 bits and wrong random lengths", () => {
    expect(() => encodeUlid(-1, new Uint8Array(10))).toThrow(UlidError);
    expect(() => encodeUlid(2 ** 48, new Uint8Array(10))).toThrow(UlidError);
    expect(() => encodeUlid(0, new Uint8Array(9))).toThrow(UlidError);
    expect(() => ulidTime("nope")).toThrow(UlidError);
  });

  test("uses the injected clock and randomness", () => {
    const fake = fakeSource(1_700_000_000_000, 0xab);
    const next = ulidFactory(fake.source);
    const id = next();
    expect(isUlid(id)).toBe(true);
    expect(ulidTime(id)).toBe(1_700_000_000_000);
    expect(id).toBe(encodeUlid(1_700_000_000_000, new Uint8Array(10).fill(0xab)));
  });

  test("is monotonic within a millisecond and when the clock steps back", () => {
    const fake = fakeSource(1000, 0x10);
    const next = ulidFactory(fake.source);
    const ids = [next(), next(), next()];
    fake.set(900); // clock stepped back
    ids.push(next());
    fake.advance(500);
    ids.push(next());
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(fake.calls()).toBe(2); // fresh randomness only when time moved forward
    expect(ulidTime(ids[3] as string)).toBe(1000);
  });

  test("overflowing the random part within one millisecond is an error, not a wrap", () => {
    const next = ulidFactory({ now: () => 5, randomBytes: (n) => new Uint8Array(n).fill(255) });
    next();
    expect(() => next()).toThrow(UlidError);
  });

  test("the system source yields distinct valid ULIDs", () => {
    const next = ulidFactory(systemUlidSource());
    const ids = new Set(Array.from({ length: 100 }, () => next()));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(isUlid(id)).toBe(true);
  });
});

describe("deterministicTaskId", () => {
  const base = { uid: "6f1e0c8e-6a4b-4b7e-9d7e-2f1c3b5a9e10", generation: 3, slot: 0 };

  test("is a pure function of (uid, generation, slot)", () => {
    expect(deterministicTaskId(base)).toBe(deterministicTaskId({ ...base }));
    // Pinned: dispatchers of different versions must agree on it.
    const digest = createHash("sha256")
      .update(`beemesh/task-id/v1\0${base.uid}\0${base.generation}\0${base.slot}`)
      .digest();
    expect(deterministicTaskId(base)).toBe(encodeUlid(0, new Uint8Array(digest.subarray(0, 10))));
    expect(deterministicTaskId(base)).toBe("0000000000JC4JKMVPAY8ATSE1");
  });

  test("changes with each input", () => {
    const id = deterministicTaskId(base);
    expect(deterministicTaskId({ ...base, uid: "other" })).not.toBe(id);
    expect(deterministicTaskId({ ...base, generation: 4 })).not.toBe(id);
    expect(deterministicTaskId({ ...base, slot: 1 })).not.toBe(id);
    expect(deterministicTaskId({ ...base, slot: "0" })).toBe(id); // slot is written as text
  });

  test("takes its time part from timeMs and stays a valid task id", () => {
    const created = Date.parse("2024-05-01T12:00:00Z");
    const id = deterministicTaskId({ ...base, timeMs: created });
    expect(ulidTime(id)).toBe(created);
    expect(id.slice(10)).toBe(deterministicTaskId(base).slice(10));
    expect(parseTask({ ...exampleTask(), task_id: id }).ok).toBe(true);
  });

  test("refuses a missing uid or a bad generation", () => {
    expect(() => deterministicTaskId({ ...base, uid: "" })).toThrow(UlidError);
    expect(() => deterministicTaskId({ ...base, generation: -1 })).toThrow(UlidError);
  });
});
