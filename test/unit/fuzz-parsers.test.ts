// Seeded mutation fuzzing of every parser. Invariants, for every input:
// - the parser returns (never throws);
// - a refusal has at least one cause, each with a reason and a message, and a
//   non-empty field path, except FieldValueTypeInvalid at the root ("" means
//   "the input itself is not an object") — the documented exception;
// - no cause comes from a crashed rule ("<internal>");
// - an accepted value parses again to the same value (defaults are stable).
import { readFileSync } from "node:fs";
import { load } from "js-yaml";
import {
  parseBeemeshDeployment,
  parseBeemeshStatefulSet,
  parseBid,
  parseEnvelope,
  parseEvent,
  parseHeartbeat,
  parseLease,
  parseNodeStatus,
  parseProviderRecord,
  parseRemoveRequest,
  parseTask,
} from "../../protocol/index.js";
import {
  exampleBid,
  exampleEnvelope,
  exampleEvent,
  exampleHeartbeat,
  exampleLease,
  exampleNodeStatus,
  exampleProviderRecord,
  exampleRemoveRequest,
  exampleStatefulTask,
  exampleTask,
} from "../../protocol/examples.js";
import type { Parser } from "../../protocol/index.js";

const ITERATIONS = 10_000;
const SEED = 0xbee5;

/** mulberry32: small, fast, good enough to pick mutations reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const example = (file: string) => () =>
  load(readFileSync(new URL(`../../deploy/examples/${file}`, import.meta.url), "utf8"));

const targets: [string, () => unknown, Parser<unknown>][] = [
  ["web.yaml", example("web.yaml"), parseBeemeshDeployment],
  ["my-web-app.yaml", example("my-web-app.yaml"), parseBeemeshDeployment],
  ["my-raft-cluster.yaml", example("my-raft-cluster.yaml"), parseBeemeshStatefulSet],
  ["Task", exampleTask, parseTask],
  ["StatefulTask", exampleStatefulTask, parseTask],
  ["Bid", exampleBid, parseBid],
  ["Lease", exampleLease, parseLease],
  ["Event", exampleEvent, parseEvent],
  ["Heartbeat", exampleHeartbeat, parseHeartbeat],
  ["NodeStatus", exampleNodeStatus, parseNodeStatus],
  ["ProviderRecord", exampleProviderRecord, parseProviderRecord],
  ["RemoveRequest", exampleRemoveRequest, parseRemoveRequest],
  ["Envelope", exampleEnvelope, parseEnvelope],
];

type Container = Record<string, unknown> | unknown[];

function weirdValue(rand: () => number, root: unknown): unknown {
  const pick = Math.floor(rand() * 34);
  switch (pick) {
    case 0:
      return null;
    case 1:
      return undefined;
    case 2:
      return Number.NaN;
    case 3:
      return Number.POSITIVE_INFINITY;
    case 4:
      return Number.NEGATIVE_INFINITY;
    case 5:
      return -0;
    case 6:
      return 1e308;
    case 7:
      return -1e308;
    case 8:
      return 2 ** 53 + 1;
    case 9:
      return -1;
    case 10:
      return 1.5;
    case 11:
      return 2 ** 31;
    case 12:
      return "";
    case 13:
      return " ";
    case 14:
      return "a.b";
    case 15:
      return "*>";
    case 16:
      return "\u0000\ud800";
    case 17:
      return "x".repeat(10_000);
    case 18:
      return "__proto__";
    case 19:
      return rand() < 0.5;
    case 20:
      return [];
    case 21:
      return {};
    case 22:
      return [null, 1, "a"];
    case 23:
      return 10n;
    case 24:
      return Symbol("s");
    case 25:
      return () => 1;
    case 26:
      return new Date(0);
    case 27:
      return new Map([["a", 1]]);
    case 28:
      return Object.assign(Object.create(null) as object, { k: "v" });
    case 29:
      return root; // a cycle
    case 30: {
      let deep: unknown = "bottom";
      for (let i = 0; i < 200; i++) deep = rand() < 0.5 ? { d: deep } : [deep];
      return deep;
    }
    case 31:
      return Array.from({ length: 1000 }, (_, i) => i);
    case 32:
      return Math.floor(rand() * 1e6) - 5e5;
    default:
      return "Invalid_Name";
  }
}

const EXTRA_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "",
  "a.b",
  "extra",
  "spec",
  "status",
  "x".repeat(300),
];

/** Every container (object or array) in the tree with its parent chain. */
function containers(value: unknown, out: Container[] = [], seen = new Set<unknown>()): Container[] {
  if (typeof value !== "object" || value === null || seen.has(value)) return out;
  seen.add(value);
  out.push(value as Container);
  // Only data properties: an earlier mutation may have planted a throwing getter.
  for (const d of Object.values(Object.getOwnPropertyDescriptors(value)))
    if ("value" in d) containers(d.value, out, seen);
  return out;
}

function mutate(root: unknown, rand: () => number): unknown {
  if (rand() < 0.01) return weirdValue(rand, root);
  const all = containers(root);
  const target = all[Math.floor(rand() * all.length)];
  if (!target) return root;
  const keys = Object.keys(target);
  const key = keys[Math.floor(rand() * keys.length)];
  const op = Math.floor(rand() * 7);
  try {
    applyOp(target, key, op, root, rand);
  } catch {
    // Moving array items can trip a getter planted by an earlier round; the input stays as it is.
  }
  return root;
}

function applyOp(
  target: Container,
  key: string | undefined,
  op: number,
  root: unknown,
  rand: () => number,
): void {
  const set = (k: string | number, v: unknown) =>
    Object.defineProperty(target, k, { value: v, enumerable: true, writable: true, configurable: true });
  switch (op) {
    case 0: // delete
      if (key === undefined) break;
      if (Array.isArray(target)) target.splice(Number(key), 1);
      else delete target[key];
      break;
    case 1: // change type / weird value
    case 2:
      if (key !== undefined) set(Array.isArray(target) ? Number(key) : key, weirdValue(rand, root));
      break;
    case 3: // extra key, prototype-pollution names included
      set(EXTRA_KEYS[Math.floor(rand() * EXTRA_KEYS.length)] as string, weirdValue(rand, root));
      break;
    case 4: // wrap in an array or object
      if (key !== undefined) {
        const current: unknown = Object.getOwnPropertyDescriptor(target, key)?.value;
        set(Array.isArray(target) ? Number(key) : key, rand() < 0.5 ? [current] : { wrapped: current });
      }
      break;
    case 5: // duplicate array items
      if (Array.isArray(target) && target.length > 0) {
        for (let j = 0, n = target.length; j < n; j++)
          target.push(Object.getOwnPropertyDescriptor(target, j)?.value);
      } else if (key !== undefined) set(key, [weirdValue(rand, root), weirdValue(rand, root)]);
      break;
    default: // a getter that throws
      Object.defineProperty(target, key ?? "boom", {
        enumerable: true,
        configurable: true,
        get() {
          throw new Error("getter exploded");
        },
      });
  }
}

describe("parser fuzzing", () => {
  test(`${ITERATIONS} seeded mutations never throw and always explain a refusal`, () => {
    const rand = prng(SEED);
    let refused = 0;
    let accepted = 0;
    const problems: string[] = [];
    const perTarget = new Map<string, { tried: number; refused: number }>();
    for (let i = 0; i < ITERATIONS; i++) {
      const [name, make, parse] = targets[i % targets.length] as (typeof targets)[number];
      let input: unknown = make();
      const rounds = 1 + Math.floor(rand() * 3);
      for (let r = 0; r < rounds; r++) input = mutate(input, rand);
      let result;
      try {
        result = parse(input);
      } catch (err) {
        problems.push(`#${i} ${name}: threw ${String(err)}`);
        continue;
      }
      const stats = perTarget.get(name) ?? { tried: 0, refused: 0 };
      stats.tried += 1;
      perTarget.set(name, stats);
      if (result.ok) {
        accepted += 1;
        const again = parse(result.value);
        if (!again.ok)
          problems.push(`#${i} ${name}: accepted value does not re-parse: ${again.error.message}`);
        else if (JSON.stringify(again.value) !== JSON.stringify(result.value))
          problems.push(`#${i} ${name}: re-parse changed the value`);
        continue;
      }
      refused += 1;
      stats.refused += 1;
      const causes = result.error.causes;
      if (causes.length === 0) problems.push(`#${i} ${name}: refusal without causes`);
      for (const c of causes) {
        if (c.field === "" && c.reason !== "FieldValueTypeInvalid")
          problems.push(`#${i} ${name}: empty path for ${c.reason}: ${c.message}`);
        if (c.field.startsWith("<internal>")) problems.push(`#${i} ${name}: a rule crashed: ${c.message}`);
        if (!c.reason || !c.message) problems.push(`#${i} ${name}: cause without reason or message`);
      }
      if (problems.length > 20) break;
    }
    console.log(
      `fuzz: seed ${SEED}, tried ${ITERATIONS}, refused ${refused}, accepted ${accepted}\n` +
        [...perTarget].map(([n, s]) => `  ${n}: tried ${s.tried}, refused ${s.refused}`).join("\n"),
    );
    expect(problems).toEqual([]);
    expect(refused + accepted).toBe(ITERATIONS);
    // A fuzzer that refuses nothing, or everything, is not exploring.
    expect(refused).toBeGreaterThan(ITERATIONS / 2);
    expect(accepted).toBeGreaterThan(50);
    // Prototype pollution attempts left no trace.
    expect(({} as Record<string, unknown>).k).toBeUndefined();
  });
});
