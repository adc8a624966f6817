// The watchdog sidecar runs in every pod, so its memory floor (bench/heal.ts:
// idle RSS <= 60 MB) depends on what it loads. This walks the import graph of
// its entry point in the source tree (value imports and dynamic imports; a
// type-only import is erased) and checks that none of the heavy libraries it
// no longer needs comes back: the certificate library (@peculiar/x509 with
// reflect-metadata and tsyringe), protobufjs/proto-loader and grpc-js.
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ENTRY = join(repo, "controllers/watchdog/main.ts");
/** The development-only identity source (BEEMESH_SVID_DIR) may load x509: pods use the Workload API. */
const DEV_ONLY = new Set([join(repo, "controllers/common/svid-dir.ts")]);

const FORBIDDEN_PACKAGES = [
  "@peculiar/x509",
  "reflect-metadata",
  "tsyringe",
  "@grpc/grpc-js",
  "@grpc/proto-loader",
  "protobufjs",
];
const FORBIDDEN_MODULES = [
  "identity/crypto.ts",
  "identity/ca.ts",
  "identity/workload-api/index.ts",
  "identity/workload-api/proto.ts",
  "identity/workload-api/server.ts",
  "identity/workload-api/client.ts",
];

/** Module specifiers a file loads at run time: static value imports, re-exports, side effects, import(). */
function runtimeSpecifiers(source: string): string[] {
  const out: string[] = [];
  const fromClause = /(?:^|[\n;])\s*(import|export)\s+(type\s+)?[^;]*?\sfrom\s+["']([^"']+)["']/g;
  for (const m of source.matchAll(fromClause)) if (m[2] === undefined) out.push(m[3]!);
  for (const m of source.matchAll(/(?:^|[\n;])\s*import\s+["']([^"']+)["']/g)) out.push(m[1]!);
  for (const m of source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) out.push(m[1]!);
  return out;
}

function graph(entry: string): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>(); // package -> first file importing it
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (files.has(file) || DEV_ONLY.has(file)) continue;
    files.add(file);
    for (const spec of runtimeSpecifiers(readFileSync(file, "utf8"))) {
      if (spec.startsWith(".")) {
        const ts = resolve(dirname(file), spec).replace(/\.js$/, ".ts");
        if (!existsSync(ts)) throw new Error(`${relative(repo, file)}: cannot resolve ${spec}`);
        todo.push(ts);
      } else if (!spec.startsWith("node:")) {
        const pkg = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
        if (!packages.has(pkg)) packages.set(pkg, relative(repo, file));
      }
    }
  }
  return { files, packages };
}

test("the import scanner sees value imports and skips type-only ones", () => {
  const src = [
    'import type { A } from "type-only";',
    'import {\n  b,\n  type C,\n} from "./multi.js";',
    'export { d } from "re-export";',
    'export type { E } from "type-re-export";',
    'import "side-effect";',
    'const m = await import("./lazy.js");',
  ].join("\n");
  expect(runtimeSpecifiers(src).sort()).toEqual(["./lazy.js", "./multi.js", "re-export", "side-effect"]);
});

test("the watchdog's import graph holds no certificate library, protobufjs or grpc-js", () => {
  const { files, packages } = graph(ENTRY);
  // It does reach what it needs: the bus, the verifier and the Workload API client.
  for (const needed of [
    "protocol/bus/bus.ts",
    "identity/verify.ts",
    "identity/workload-api/der-client.ts",
    "controllers/watchdog/workload-svid.ts",
  ]) {
    expect(files).toContain(join(repo, needed));
  }
  const bad = FORBIDDEN_PACKAGES.filter((p) => packages.has(p)).map((p) => `${p} (from ${packages.get(p)})`);
  expect(bad).toEqual([]);
  const badModules = FORBIDDEN_MODULES.filter((m) => files.has(join(repo, m)));
  expect(badModules).toEqual([]);
});
