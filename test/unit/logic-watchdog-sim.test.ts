// Seeded random fault injection over the watchdog simulator: kills, app
// deaths, liveness blips, partitions, heartbeat loss, template changes,
// clones landing behind a partition, store cuts. Asserts the clone-slot bound
// (never more than replicas + maxSurge pods while every pod reaches the store,
// or always with strict fencing) and convergence to exactly `replicas` pods of
// the current template once the faults stop.
import { mulberry32, WatchdogSim } from "../../controllers/watchdog/logic/sim.js";

interface Mode {
  name: string;
  storeCuts: boolean;
  strict: boolean;
  isolatedClones: number;
}

const MODES: Mode[] = [
  { name: "shared store", storeCuts: false, strict: false, isolatedClones: 0.2 },
  { name: "store cuts, strict fencing", storeCuts: true, strict: true, isolatedClones: 0.2 },
  { name: "store cuts, availability first", storeCuts: true, strict: false, isolatedClones: 0 },
];
const SEEDS = Array.from({ length: 25 }, (_, i) => i + 1);

function scenario(seed: number, mode: Mode): { sim: WatchdogSim; replicas: number; bound: number } {
  const rnd = mulberry32(seed * 7919);
  const sim = new WatchdogSim({
    seed,
    isolatedCloneProbability: mode.isolatedClones,
    watchdog: { strictFencing: mode.strict },
  });
  const replicas = 3 + Math.floor(rnd() * 5);
  const surge = 1 + Math.floor(rnd() * 2);
  const unavailable = Math.floor(rnd() * 2);
  sim.setSpec({ replicas, max_surge: surge, max_unavailable: unavailable });
  sim.addReplicas(Array.from({ length: replicas }, (_, i) => String.fromCharCode(97 + i)));
  sim.run(5000);
  const bound = replicas + surge;
  if (!mode.storeCuts || mode.strict) {
    sim.addInvariant("bound", (x) => (x.live().length > bound ? `${x.live().length} pods > ${bound}` : null));
  }
  for (let round = 0; round < 12; round++) {
    const live = sim.live();
    const r = rnd();
    const pick = live[Math.floor(rnd() * live.length)];
    if (r < 0.25 && pick !== undefined) sim.kill(pick);
    else if (r < 0.4 && pick !== undefined) sim.appDies(pick);
    else if (r < 0.6) {
      const shuffled = [...live].sort(() => rnd() - 0.5);
      const cut = 1 + Math.floor(rnd() * Math.max(1, shuffled.length - 1));
      sim.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
    } else if (r < 0.7) sim.heal();
    else if (r < 0.8) sim.setLoss(rnd() * 0.5);
    else if (r < 0.85) sim.setLoss(0);
    else if (r < 0.9 && pick !== undefined) {
      sim.forceProbes(pick, [
        { live: false, ready: false },
        { live: true, ready: true },
        { live: false, ready: false },
      ]);
    } else if (r < 0.95) sim.setSpec({ replicas, template_hash: `v${round + 2}` });
    else if (mode.storeCuts && pick !== undefined) sim.setStoreReachable(pick, false);
    if (mode.storeCuts && rnd() < 0.3) for (const p of sim.live()) sim.setStoreReachable(p, true);
    sim.run(1000 + Math.floor(rnd() * 8000));
  }
  sim.setIsolatedCloneProbability(0);
  sim.heal();
  sim.setLoss(0);
  for (const p of sim.live()) sim.setStoreReachable(p, true);
  sim.run(5000);
  sim.heal(); // clones that were in flight at the first heal
  sim.run(90_000);
  return { sim, replicas, bound };
}

describe.each(MODES)("watchdog under random faults: $name", (mode) => {
  it.each(SEEDS)("seed %i keeps the bound and converges", (seed) => {
    const { sim, replicas } = scenario(seed, mode);
    const template = sim.currentSpec()?.template_hash ?? "";
    expect(sim.live()).toHaveLength(replicas);
    expect(sim.liveWithTemplate(template)).toHaveLength(replicas);
    expect(sim.heldSlots()).toHaveLength(replicas);
  });
});

describe("watchdog simulator", () => {
  it("replays a seed exactly", () => {
    const a = scenario(11, MODES[0] as Mode)
      .sim.trace()
      .join("\n");
    const b = scenario(11, MODES[0] as Mode)
      .sim.trace()
      .join("\n");
    expect(a).toBe(b);
    expect(a.length).toBeGreaterThan(0);
  });

  it("fails loudly when an invariant breaks", () => {
    const sim = new WatchdogSim({ seed: 1 });
    sim.setSpec({ replicas: 3 });
    sim.addReplicas(["a", "b", "c"]);
    sim.addInvariant("at most 2", (x) => (x.live().length > 2 ? "too many" : null));
    expect(() => sim.run(100)).toThrow(/invariant at most 2: too many/);
  });
});
