// The shared clock pieces (controllers/common): the manual clock tests and
// simulations drive, sleep() on any clock, and the heap under both.
import { ManualClock, sleep } from "../../controllers/common/clock.js";
import { MinHeap } from "../../controllers/common/min-heap.js";

describe("MinHeap", () => {
  it("pops in order, ties as the comparator says", () => {
    const input = [5, 3, 9, 1, 3, 7, 0, 8, 2, 6];
    const heap = new MinHeap<number>((a, b) => a < b);
    for (const n of input) heap.push(n);
    expect(heap.size).toBe(input.length);
    expect(heap.peek()).toBe(0);
    const out: number[] = [];
    for (let n = heap.pop(); n !== undefined; n = heap.pop()) out.push(n);
    expect(out).toEqual([...input].sort((a, b) => a - b));
    expect(heap.size).toBe(0);
  });
});

describe("ManualClock", () => {
  it("fires timers in due order, then in the order they were set, and only when advanced that far", async () => {
    const clock = new ManualClock(100);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.monotonic()}`), 20);
    await clock.advance(15);
    expect(fired).toEqual(["a@110"]);
    expect(clock.pending).toBe(2);
    await clock.advance(5);
    expect(fired).toEqual(["a@110", "b@120", "c@120"]);
    expect(clock.now()).toBe(120);
    expect(clock.pending).toBe(0);
  });

  it("a cleared timer never fires and stops counting as pending", async () => {
    const clock = new ManualClock();
    let fired = 0;
    const handle = clock.setTimeout(() => fired++, 10);
    clock.setTimeout(() => fired++, 30);
    clock.clearTimeout(handle);
    clock.clearTimeout(handle);
    expect(clock.pending).toBe(1);
    await clock.advance(20);
    expect(fired).toBe(0);
    await clock.advance(10);
    expect(fired).toBe(1);
  });

  it("sleep() resolves when the clock reaches it, and at once for 0", async () => {
    const clock = new ManualClock();
    let woke = false;
    const slept = sleep(clock, 50).then(() => (woke = true));
    await clock.advance(49);
    expect(woke).toBe(false);
    await clock.advance(1);
    await slept;
    expect(woke).toBe(true);
    await expect(sleep(clock, 0)).resolves.toBeUndefined();
    expect(clock.pending).toBe(0);
  });
});
