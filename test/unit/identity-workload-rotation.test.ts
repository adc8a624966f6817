// When the Workload API server rotates an SVID and retries a failed issuance.
import { MIN_ROTATION_DELAY_MS, retryDelayMs, rotationDelayMs } from "../../identity/workload-api/index.js";

describe("rotationDelayMs", () => {
  test.each([
    ["fresh 1 h SVID rotates in 30 min", 0, 3_600_000, 0, 1_800_000],
    ["fresh 2 s SVID rotates in 1 s", 1000, 3000, 1000, 1000],
    ["half life measured from issuance, not from a backdated notBefore", 10_000, 12_000, 10_500, 500],
    ["past half life rotates at the floor", 0, 2000, 1500, MIN_ROTATION_DELAY_MS],
    ["expired rotates at the floor", 0, 2000, 5000, MIN_ROTATION_DELAY_MS],
  ])("%s", (_name, issuedAt, notAfter, now, expected) => {
    expect(rotationDelayMs(issuedAt, notAfter, now)).toBe(expected);
  });
});

describe("retryDelayMs", () => {
  test("doubles from the base and stops at the cap", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => retryDelayMs(n, 1000, 30_000))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
    expect(retryDelayMs(1000, 1000, 60_000)).toBe(60_000);
  });
});
