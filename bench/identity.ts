// Identity throughput: SVIDs issued per second (P-256 key generation included,
// as a node agent does for each pod), the same with a caller-supplied key (the
// CSR-style path the Workload API uses), and SVID verifications per second
// without and with the fingerprint cache. Run: npx tsx bench/identity.ts
// Options: --seconds N (per measurement, default 3), --out PATH.
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createCa, issueSvid } from "../identity/ca.js";
import { generateKeyPair } from "../identity/crypto.js";
import { spiffeId } from "../identity/spiffe-id.js";
import { SvidVerifier, verifySvidChain } from "../identity/verify.js";

interface Measurement {
  name: string;
  ops: number;
  seconds: number;
  perSecond: number;
  meanMs: number;
}

/** Runs op sequentially until `seconds` pass (and at least `minOps` times), bounded by `maxOps`. */
async function measure(
  name: string,
  seconds: number,
  op: (i: number) => Promise<unknown>,
): Promise<Measurement> {
  const maxOps = 1_000_000;
  const minOps = 20;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let ops = 0;
  while (ops < maxOps && (ops < minOps || process.hrtime.bigint() - start < budget)) {
    await op(ops);
    ops++;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  return { name, ops, seconds: elapsed, perSecond: ops / elapsed, meanMs: (elapsed * 1000) / ops };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "3" },
      out: { type: "string", default: resolve(import.meta.dirname, "results/identity.json") },
    },
  });
  const seconds = Number(values.seconds);
  if (!(seconds > 0)) throw new Error("--seconds must be positive");

  const ca = await createCa({ trustDomain: "bench.local" });
  const results: Measurement[] = [];

  // Warm-up so JIT and WebCrypto setup do not count.
  for (let i = 0; i < 10; i++)
    await issueSvid(ca, { id: spiffeId("bench.local", "node", `w${i}`), role: "r" });

  results.push(
    await measure("issue_svid_with_keygen", seconds, (i) =>
      issueSvid(ca, {
        id: spiffeId("bench.local", "ns", "default", "deployment", "web", `web-${i}`),
        role: "workload",
      }),
    ),
  );

  const keys = await generateKeyPair();
  results.push(
    await measure("issue_svid_given_key", seconds, (i) =>
      issueSvid(ca, {
        id: spiffeId("bench.local", "ns", "default", "deployment", "web", `web-${i}`),
        role: "workload",
        publicKey: keys.publicKey,
      }),
    ),
  );

  const sample = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      issueSvid(ca, { id: spiffeId("bench.local", "node", `n${i}`), role: "r" }),
    ),
  );
  results.push(
    await measure("verify_svid_uncached", seconds, (i) =>
      verifySvidChain(sample[i % sample.length]!.certDer, [ca.cert], Date.now(), "bench.local"),
    ),
  );
  const verifier = new SvidVerifier({ bundle: [ca.cert], trustDomain: "bench.local" });
  for (const s of sample) await verifier.verify(s.certDer);
  results.push(
    await measure("verify_svid_cached", seconds, (i) => verifier.verify(sample[i % sample.length]!.certDer)),
  );

  for (const r of results) {
    console.log(
      `${r.name.padEnd(24)} ${r.perSecond.toFixed(1).padStart(10)}/s  (${r.ops} ops, mean ${r.meanMs.toFixed(3)} ms)`,
    );
  }
  const report = {
    bench: "identity",
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    secondsPerMeasurement: seconds,
    svidsIssuedPerSecond: results[0]!.perSecond,
    cacheStats: verifier.stats(),
    results,
  };
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, JSON.stringify(report, null, 2) + "\n");
  console.log(`SVIDs issued per second (key generation included): ${report.svidsIssuedPerSecond.toFixed(1)}`);
  console.log(`wrote ${values.out}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
