// Bus envelope throughput on one core: signing, verifying (certificate cache
// warm, every nonce fresh) and both, plus where verification spends its time.
// Run: npx tsx bench/bus.ts [--messages N]; writes bench/results/bus.json.
import { KeyObject, verify as ecdsaVerify } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createCa, issueSvid } from "../identity/ca.js";
import { spiffeId } from "../identity/spiffe-id.js";
import { SvidVerifier } from "../identity/verify.js";
import { parseEnvelope, parseHeartbeat } from "../protocol/parse.js";
import {
  EnvelopeSigner,
  EnvelopeVerifier,
  NonceCache,
  createAuthorizer,
  encodeEnvelope,
} from "../protocol/bus/index.js";
import type { Heartbeat } from "../protocol/schema/messages.js";
import { signingBytes } from "../protocol/canonical.js";

const TD = "beemesh.local";
const SUBJECT = "beemesh.watchdog.default.web";

function heartbeat(seq: number, ts: number): Heartbeat {
  return {
    pod: "web-0",
    node: "node-1",
    ns: "default",
    parent: "web",
    generation: 3,
    healthy: true,
    ready: true,
    started_at: ts - 60_000,
    spec_revision: 7,
    template_hash: "0123456789abcdef",
    slot: null,
    retiring: false,
    pending: [],
    seq,
    ts,
  };
}

function rate(n: number, ms: number): number {
  return Math.round((n / ms) * 1000);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { messages: { type: "string", default: "20000" } } });
  const n = Number(values.messages);
  if (!Number.isInteger(n) || n < 100) throw new Error("--messages must be an integer >= 100");

  const ca = await createCa({ trustDomain: TD });
  const svid = await issueSvid(ca, {
    id: spiffeId(TD, "ns", "default", "deployment", "web", "web-0"),
    role: "watchdog",
  });
  const signer = new EnvelopeSigner(svid);
  const now = Date.now();
  const svids = new SvidVerifier({ bundle: ca.certPem, trustDomain: TD, now: () => now });
  const verifier = new EnvelopeVerifier({
    svids,
    authorize: createAuthorizer(),
    nonces: new NonceCache({ windowMs: 30_000, maxEntries: n * 2 + 10 }),
    now: () => now,
  });
  const spec = { type: "Heartbeat", parse: parseHeartbeat };

  // Warm up JIT and the certificate cache.
  for (let i = 0; i < 500; i++) {
    const r = await verifier.verify(
      SUBJECT,
      encodeEnvelope(signer.sign(SUBJECT, "Heartbeat", heartbeat(1_000_000 + i, now), now)),
      spec,
    );
    if (!r.ok) throw new Error(`bench: warm-up message rejected: ${r.reason} ${r.detail}`);
  }

  let t = performance.now();
  const encoded: Uint8Array[] = new Array(n);
  for (let i = 0; i < n; i++)
    encoded[i] = encodeEnvelope(signer.sign(SUBJECT, "Heartbeat", heartbeat(i, now), now));
  const signMs = performance.now() - t;

  t = performance.now();
  let accepted = 0;
  for (let i = 0; i < n; i++) if ((await verifier.verify(SUBJECT, encoded[i]!, spec)).ok) accepted++;
  const verifyMs = performance.now() - t;
  if (accepted !== n) throw new Error(`bench: ${n - accepted} messages rejected`);

  // Breakdown of verification: JSON + envelope schema, canonical bytes, payload schema.
  const decoder = new TextDecoder();
  t = performance.now();
  const parsed = encoded.map((d) => parseEnvelope(JSON.parse(decoder.decode(d))));
  const envelopeMs = performance.now() - t;
  t = performance.now();
  for (const p of parsed) {
    if (!p.ok) throw new Error("bench: envelope did not parse");
    const e = p.value;
    signingBytes({
      type: e.type,
      subject: SUBJECT,
      payload: e.payload,
      nonce: e.nonce,
      ts: e.ts,
      spiffe_id: e.sig.spiffe_id,
    });
  }
  const canonicalMs = performance.now() - t;
  t = performance.now();
  for (const p of parsed) if (p.ok) parseHeartbeat(p.value.payload);
  const payloadMs = performance.now() - t;
  const publicKey = KeyObject.from((await svids.verify(svid.certDer)).publicKey);
  const signed = parsed.slice(0, Math.min(n, 5000)).map((p) => {
    if (!p.ok) throw new Error("bench: envelope did not parse");
    const e = p.value;
    const bytes = signingBytes({
      type: e.type,
      subject: SUBJECT,
      payload: e.payload,
      nonce: e.nonce,
      ts: e.ts,
      spiffe_id: e.sig.spiffe_id,
    });
    return { bytes, sig: Buffer.from(e.sig.value, "base64") };
  });
  t = performance.now();
  for (const s of signed) {
    if (!ecdsaVerify("sha256", s.bytes, { key: publicKey, dsaEncoding: "ieee-p1363" }, s.sig))
      throw new Error("bench: bad signature");
  }
  const ecdsaMs = performance.now() - t;

  const result = {
    bench: "bus",
    messages: n,
    node: process.version,
    cpu: cpus()[0]?.model ?? "unknown",
    envelope_bytes: encoded[0]!.length,
    per_core: {
      sign_per_sec: rate(n, signMs),
      verify_per_sec: rate(n, verifyMs),
      sign_and_verify_per_sec: rate(n, signMs + verifyMs),
    },
    verify_breakdown_us_per_msg: {
      total: +((verifyMs * 1000) / n).toFixed(2),
      json_and_envelope_schema: +((envelopeMs * 1000) / n).toFixed(2),
      canonical_bytes: +((canonicalMs * 1000) / n).toFixed(2),
      payload_schema: +((payloadMs * 1000) / n).toFixed(2),
      ecdsa_p256_verify: +((ecdsaMs * 1000) / signed.length).toFixed(2),
    },
    cert_cache: svids.stats(),
    at: new Date().toISOString(),
  };
  const dir = join(import.meta.dirname, "results");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "bus.json"), JSON.stringify(result, null, 2) + "\n");
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
