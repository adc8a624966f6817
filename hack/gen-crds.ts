// Writes crds/*.yaml from the TypeBox schemas (npm run gen:crds).
// With --check, writes nothing and exits 1 when a committed file is stale.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildCrds, crdFileName } from "../protocol/index.js";
import { crdToYaml } from "../protocol/crd-yaml.js";

function main(argv: readonly string[]): number {
  const check = argv.includes("--check");
  const outDir = join(dirname(fileURLToPath(import.meta.url)), "..", "crds");
  mkdirSync(outDir, { recursive: true });
  let stale = 0;
  for (const crd of buildCrds()) {
    const file = join(outDir, crdFileName(crd));
    const text = crdToYaml(crd);
    if (check) {
      let current: string;
      try {
        current = readFileSync(file, "utf8");
      } catch {
        current = ""; // a missing file is stale too
      }
      if (current !== text) {
        stale += 1;
        console.error(`gen-crds: ${file} is out of date (run npm run gen:crds)`);
      }
    } else {
      writeFileSync(file, text);
      console.log(`gen-crds: wrote ${file}`);
    }
  }
  return stale === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
