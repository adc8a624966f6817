// Bundles the sidecars that run in every pod (the watchdog) into one ES module
// each, with lazily loaded parts (Workload API client, SVID directory, health
// server) split into chunks that load only when the config asks for them.
// Why: one minified file instead of ~400 modules holds far less source text
// and module bookkeeping in every pod: the watchdog idles at ~58 MB RSS
// instead of ~63 (bench/heal.ts). The other controllers run from tsc's dist/.
// Run: npx tsx hack/bundle-sidecars.ts [--outdir dist]   (npm run build does)
import { build } from "esbuild";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Entry point per sidecar; the bundle lands in <outdir>/sidecars/<name>/main.mjs. */
const SIDECARS = { watchdog: "controllers/watchdog/main.ts" } as const;
type SidecarName = keyof typeof SIDECARS;

/** Where a sidecar's bundle is, relative to the output directory (dist/ in the image: /app/dist). */
function sidecarBundlePath(name: SidecarName): string {
  return join("sidecars", name, "main.mjs");
}

/** Bundles every sidecar under `outdir`; returns the entry files written. */
export async function bundleSidecars(outdir: string): Promise<string[]> {
  const written: string[] = [];
  for (const [name, entry] of Object.entries(SIDECARS) as [SidecarName, string][]) {
    const out = join(outdir, dirname(sidecarBundlePath(name)));
    await build({
      entryPoints: { main: join(repo, entry) },
      outdir: out,
      bundle: true,
      splitting: true,
      format: "esm",
      platform: "node",
      target: "node22",
      minify: true,
      outExtension: { ".js": ".mjs" },
      // Bundled CommonJS dependencies call require() for Node's built-ins.
      banner: {
        js: "import { createRequire as __bmRequire } from 'node:module'; const require = __bmRequire(import.meta.url);",
      },
      logLevel: "warning",
      legalComments: "none",
    });
    written.push(join(outdir, sidecarBundlePath(name)));
  }
  return written;
}

const invokedDirectly =
  process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  const { values } = parseArgs({ options: { outdir: { type: "string", default: join(repo, "dist") } } });
  const outdir = resolve(values.outdir);
  bundleSidecars(outdir).then(
    (files) => {
      for (const f of files) process.stdout.write(`bundled ${relative(process.cwd(), f)}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`bundle-sidecars: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
