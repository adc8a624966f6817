// Batch shares on the wire and in the lease bucket (DESIGN §3.6): the share
// at replica 0 keeps the task's own key, later shares add their first replica;
// a Lease names the share it grants, and only a task lease may.
import { parseTaskLeaseKey, shareLeaseKey, taskIdOfLeaseKey } from "../../controllers/common/lease-record.js";
import { MAX_BATCH, parseLease, type Lease } from "../../protocol/index.js";

const ID = "01HF7YAT00SP7ZQ8GM4CVZ7K5V";

describe("share lease keys", () => {
  it.each([
    [0, `task.${ID}`],
    [1, `task.${ID}.1`],
    [250, `task.${ID}.250`],
  ])("share at %i lives at %s and reads back", (first, key) => {
    expect(shareLeaseKey(ID, first)).toBe(key);
    expect(parseTaskLeaseKey(key)).toEqual({ taskId: ID, first });
    expect(taskIdOfLeaseKey(key)).toBe(ID);
  });

  it.each(["identity.ns.db.0", "clone.ns.web.1.2", `task.${ID}.0`, `task.${ID}.01`, `task.${ID}.x`, "task."])(
    "%s is not a task share key",
    (key) => {
      expect(parseTaskLeaseKey(key)).toBeUndefined();
    },
  );

  it("refuses a negative or fractional share start", () => {
    expect(() => shareLeaseKey(ID, -1)).toThrow(RangeError);
    expect(() => shareLeaseKey(ID, 1.5)).toThrow(RangeError);
  });
});

describe("Lease.first", () => {
  const lease = (extra: Partial<Lease>): unknown => ({
    task_id: ID,
    winner_id: "node-1",
    expires_at: 1_800_000_000_000,
    version: 0,
    fencing_token: 7,
    granted: 50,
    ...extra,
  });

  it("a task lease may name the share it grants", () => {
    const r = parseLease(lease({ first: 100 }));
    expect(r.ok && r.value.first).toBe(100);
  });

  it("an identity lease may not", () => {
    const r = parseLease({
      ...(lease({ first: 1 }) as object),
      task_id: undefined,
      identity: "identity.ns.db.0",
      winner_id: "x",
    });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error.message).toMatch(/first/);
  });

  it("a share may not end past the largest batch", () => {
    expect(parseLease(lease({ first: MAX_BATCH - 50, granted: 50 })).ok).toBe(true);
    expect(parseLease(lease({ first: MAX_BATCH - 50, granted: 51 })).ok).toBe(false);
  });
});
