// Interpreter of watchdog scenario scripts (STYLE §2, after etcd-io/raft's
// testdata): one command per line, `#` comments, golden transcript.
//
//   options seed=3 stepMs=50 slotTtlMs=10000 ...   (first, optional)
//   spec replicas=5 surge=1 unavailable=0 template=v1
//   add-replicas 5            start a, b, c, ... (placed by the dispatcher: they seek a slot)
//   run 10s                   advance simulated time (ms, s or m)
//   kill c,d                  the pod disappears without a word
//   app-dies c                the app container exits; the watchdog hands over and retires
//   fail-probes c 3           the next 3 liveness probes fail
//   flap c 12                 the next 12 probes alternate fail/pass (liveness and readiness)
//   partition a,b | c,d,e     heartbeats flow only within each group (the slot store stays shared)
//   heal
//   loss 0.3                  drop this fraction of heartbeats
//   skew c 3600000            c's wall clock is off by that many ms
//   store-cut c / store-restore c
//   delete                    the Deployment object is deleted
//   mark                      restart max-live
//   invariant max-live 6      from now on, fail at the first moment more than 6 pods exist
//   invariant min-ready 5     ... or fewer than 5 are ready; `invariant clear` drops them
//   expect live 5 | expect live <= 6 | expect max-live <= 6 | expect ready >= 5
//   expect template v2 5 | expect slots 5 | expect leader a | expect gone c | expect running c
//   status                    print pods, readiness, slots and leaders
import { WatchdogSim } from "../../../controllers/watchdog/logic/sim.js";
import type { WatchdogSimOptions } from "../../../controllers/watchdog/logic/sim.js";
import type { WatchdogOptions } from "../../../controllers/watchdog/logic/options.js";

export class ScriptError extends Error {
  override name = "ScriptError";
}

const WATCHDOG_KEYS = new Set([
  "intervalMs",
  "ttlIntervals",
  "failureThreshold",
  "successThreshold",
  "slotRenewMs",
  "slotTtlMs",
  "cloneGraceMs",
  "slotRetryMs",
  "startupGraceMs",
  "fenceMarginMs",
]);
const SIM_KEYS = new Set([
  "seed",
  "stepMs",
  "probeMs",
  "storeLatencyMs",
  "storeTimeoutMs",
  "readyDelayMs",
  "specDelayMs",
]);

function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (m === null) throw new ScriptError(`bad duration ${text}`);
  const n = Number(m[1]);
  return Math.round(m[2] === "s" ? n * 1000 : m[2] === "m" ? n * 60_000 : n);
}

function parseInt10(text: string | undefined, what: string): number {
  const n = Number(text);
  if (text === undefined || !Number.isInteger(n))
    throw new ScriptError(`${what}: expected an integer, got ${text}`);
  return n;
}

function parseKv(args: string[]): Map<string, string> {
  const kv = new Map<string, string>();
  for (const a of args) {
    const [k, v] = a.split("=");
    if (k === undefined || v === undefined) throw new ScriptError(`expected key=value, got ${a}`);
    kv.set(k, v);
  }
  return kv;
}

/** `5`, `<= 5`, `>= 5` → a predicate and its text. */
function parseComparison(args: string[]): { test: (n: number) => boolean; text: string } {
  if (args.length === 1) {
    const n = parseInt10(args[0], "count");
    return { test: (x) => x === n, text: `== ${n}` };
  }
  const [op, value] = args;
  const n = parseInt10(value, "count");
  if (op === "<=") return { test: (x) => x <= n, text: `<= ${n}` };
  if (op === ">=") return { test: (x) => x >= n, text: `>= ${n}` };
  throw new ScriptError(`expected N, <= N or >= N, got ${args.join(" ")}`);
}

function podNames(count: number, existing: number): string[] {
  const names: string[] = [];
  for (let i = existing; i < existing + count; i++) {
    names.push(i < 26 ? String.fromCharCode(97 + i) : `p${i}`);
  }
  return names;
}

export interface ScriptResult {
  transcript: string;
  sim: WatchdogSim;
}

export function runWatchdogScript(text: string): ScriptResult {
  const out: string[] = [];
  let sim: WatchdogSim | null = null;
  let added = 0;
  const ensure = (opts: WatchdogSimOptions = {}): WatchdogSim => (sim ??= new WatchdogSim(opts));

  const lines = text.split("\n");
  lines.forEach((raw, idx) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const [cmd = "", ...args] = line.split(/\s+/);
    out.push(`> ${line}`);
    const fail = (msg: string): never => {
      throw new ScriptError(
        `line ${idx + 1} (${line}): ${msg}\n--- transcript so far ---\n${out.join("\n")}`,
      );
    };
    try {
      switch (cmd) {
        case "options": {
          if (sim !== null) fail("options must come first");
          const kv = parseKv(args);
          const watchdog: WatchdogOptions = {};
          const simOpts: Record<string, number> = {};
          for (const [k, v] of kv) {
            if (WATCHDOG_KEYS.has(k)) (watchdog as Record<string, number>)[k] = Number(v);
            else if (SIM_KEYS.has(k)) simOpts[k] = Number(v);
            else if (k === "strictFencing") watchdog.strictFencing = v === "true";
            else fail(`unknown option ${k}`);
          }
          ensure({ ...simOpts, watchdog });
          return;
        }
        case "spec": {
          const kv = parseKv(args);
          ensure().setSpec({
            replicas: parseInt10(
              kv.get("replicas") ?? String(ensure().currentSpec()?.replicas ?? ""),
              "replicas",
            ),
            ...(kv.has("surge") ? { max_surge: parseInt10(kv.get("surge"), "surge") } : {}),
            ...(kv.has("unavailable")
              ? { max_unavailable: parseInt10(kv.get("unavailable"), "unavailable") }
              : {}),
            ...(kv.has("template") ? { template_hash: kv.get("template") ?? "" } : {}),
          });
          return;
        }
        case "add-replicas": {
          const n = parseInt10(args[0], "add-replicas");
          const names = podNames(n, added);
          added += n;
          ensure().addReplicas(names);
          out.push(`started ${names.join(",")}`);
          return;
        }
        case "run": {
          const s = ensure();
          s.drainTrace();
          s.run(parseDuration(args[0] ?? ""));
          out.push(...s.drainTrace());
          return;
        }
        case "kill":
          for (const n of (args[0] ?? "").split(",")) ensure().kill(n);
          ensure().drainTrace();
          return;
        case "app-dies":
          ensure().appDies(args[0] ?? "");
          out.push(...ensure().drainTrace());
          return;
        case "fail-probes": {
          const n = parseInt10(args[1], "fail-probes");
          ensure().forceProbes(
            args[0] ?? "",
            Array.from({ length: n }, () => ({ live: false, ready: false })),
          );
          return;
        }
        case "flap": {
          const n = parseInt10(args[1], "flap");
          ensure().forceProbes(
            args[0] ?? "",
            Array.from({ length: n }, (_, i) => ({ live: i % 2 === 1, ready: i % 2 === 1 })),
          );
          return;
        }
        case "partition": {
          const groups = args
            .join(" ")
            .split("|")
            .map((g) =>
              g
                .trim()
                .split(",")
                .filter((x) => x !== ""),
            );
          ensure().partition(groups);
          ensure().drainTrace();
          return;
        }
        case "heal":
          ensure().heal();
          ensure().drainTrace();
          return;
        case "loss":
          ensure().setLoss(Number(args[0]));
          ensure().drainTrace();
          return;
        case "skew":
          ensure().setWallSkew(args[0] ?? "", parseInt10(args[1], "skew"));
          return;
        case "store-cut":
        case "store-restore":
          ensure().setStoreReachable(args[0] ?? "", cmd === "store-restore");
          ensure().drainTrace();
          return;
        case "delete":
          ensure().deleteSpec();
          ensure().drainTrace();
          return;
        case "mark":
          ensure().markMax();
          return;
        case "invariant": {
          const s = ensure();
          const [what, value] = args;
          if (what === "clear") {
            s.removeInvariant("max-live");
            s.removeInvariant("min-ready");
            return;
          }
          const n = parseInt10(value, "invariant");
          if (what === "max-live") {
            s.addInvariant("max-live", (x) =>
              x.live().length > n ? `${x.live().length} live > ${n}: ${x.live().join(",")}` : null,
            );
          } else if (what === "min-ready") {
            s.addInvariant("min-ready", (x) =>
              x.ready().length < n ? `${x.ready().length} ready < ${n}: ${x.ready().join(",")}` : null,
            );
          } else {
            fail(`unknown invariant ${what}`);
          }
          return;
        }
        case "expect": {
          const s = ensure();
          const [what, ...rest] = args;
          let actual: number | string;
          let ok: boolean;
          let expected: string;
          switch (what) {
            case "live":
            case "max-live":
            case "ready":
            case "slots": {
              const c = parseComparison(rest);
              actual =
                what === "live"
                  ? s.live().length
                  : what === "max-live"
                    ? s.maxLiveSinceMark()
                    : what === "ready"
                      ? s.ready().length
                      : s.heldSlots().length;
              ok = c.test(actual);
              expected = c.text;
              break;
            }
            case "template": {
              const c = parseComparison(rest.slice(1));
              actual = s.liveWithTemplate(rest[0] ?? "").length;
              ok = c.test(actual);
              expected = c.text;
              break;
            }
            case "leader": {
              const leaders = [...s.leaders().values()];
              actual = [...new Set(leaders)].join(",");
              expected = rest[0] ?? "";
              ok = leaders.length > 0 && leaders.every((l) => l === expected);
              break;
            }
            case "gone":
            case "running": {
              const name = rest[0] ?? "";
              actual = s.live().includes(name) ? "running" : "gone";
              expected = what;
              ok = actual === expected;
              break;
            }
            default:
              return fail(`unknown expectation ${what}`);
          }
          if (!ok) fail(`expected ${what} ${expected}, got ${actual}`);
          out.push("ok");
          return;
        }
        case "status": {
          const s = ensure();
          const live = [...s.live()].sort();
          const ready = new Set(s.ready());
          out.push(`t=${s.now}ms live=${live.length} ready=${ready.size} max-live=${s.maxLiveSinceMark()}`);
          out.push(`pods: ${live.map((p) => (ready.has(p) ? p : `${p}(not ready)`)).join(" ")}`);
          out.push(
            `slots: ${s
              .heldSlots()
              .map((k) => k.replace(/^.*slot-/, ""))
              .join(",")}`,
          );
          const leaders = [...s.leaders()].sort(([a], [b]) => (a < b ? -1 : 1));
          out.push(`leaders: ${leaders.map(([p, l]) => `${p}->${l ?? "-"}`).join(" ")}`);
          return;
        }
        default:
          fail(`unknown command ${cmd}`);
      }
    } catch (err) {
      if (err instanceof ScriptError) throw err;
      fail(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    }
  });
  if (sim === null) throw new ScriptError("empty script");
  return { transcript: `${out.join("\n")}\n`, sim };
}
