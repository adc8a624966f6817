// apply / get / delete of BeemeshDeployments and BeemeshStatefulSets through
// the dispatcher's API. Deliberately thin: kubectl is the main client, these
// exist so a bare host needs nothing but beemeshctl.
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { dump as dumpYaml, loadAll as loadAllYaml } from "js-yaml";
import { API_VERSION, GROUP, RESOURCES, VERSION, parseWorkload } from "../../protocol/index.js";
import {
  API_OPTIONS,
  NAMESPACE_OPTION,
  ApiClient,
  ApiStatusError,
  kubeconfigPath,
  loadKubeconfig,
} from "./api-client.js";
import {
  CliError,
  EXIT,
  UsageError,
  boolOpt,
  checkNamespace,
  outputOpt,
  stringOpt,
  stringsOpt,
  type CliContext,
  type Command,
  type OptionSpec,
  type ParsedValues,
} from "./common.js";
import { formatTable } from "./table.js";

export interface ResourceType {
  kind: string;
  plural: string;
  singular: string;
  shortName: string;
}

/** Every name kubectl would accept for a resource: short, singular, plural, and plural.group. */
export function resolveResource(text: string): ResourceType {
  const t = text.toLowerCase();
  for (const r of RESOURCES) {
    const names = [
      r.shortName,
      r.singular,
      r.plural,
      `${r.plural}.${GROUP}`,
      `${r.singular}.${GROUP}`,
      r.kind.toLowerCase(),
    ];
    if (names.includes(t))
      return { kind: r.kind, plural: r.plural, singular: r.singular, shortName: r.shortName };
  }
  const known = RESOURCES.map((r) => `${r.shortName} (${r.plural})`).join(", ");
  throw new UsageError(`unknown resource type ${JSON.stringify(text)}; known: ${known}`);
}

export function resourceByKind(kind: string): ResourceType | undefined {
  const r = RESOURCES.find((x) => x.kind === kind);
  return r && { kind: r.kind, plural: r.plural, singular: r.singular, shortName: r.shortName };
}

export interface ResourceRef {
  type: ResourceType;
  name?: string;
}

/** `bmd`, `bmd web`, `bmd/web`, `bmd/web bmss/db`: what get and delete take. */
export function parseResourceArgs(positionals: readonly string[]): ResourceRef[] {
  if (positionals.length === 0) throw new UsageError("name a resource type: bmd or bmss");
  const first = positionals[0]!;
  if (!first.includes("/")) {
    const type = resolveResource(first);
    const names = positionals.slice(1);
    for (const n of names)
      if (n.includes("/")) throw new UsageError(`give TYPE NAME or TYPE/NAME, not both (${n})`);
    return names.length === 0 ? [{ type }] : names.map((name) => ({ type, name }));
  }
  return positionals.map((p) => {
    const slash = p.indexOf("/");
    const name = p.slice(slash + 1);
    if (slash < 0 || name === "" || name.includes("/"))
      throw new UsageError(`expected TYPE/NAME, got ${JSON.stringify(p)}`);
    return { type: resolveResource(p.slice(0, slash)), name };
  });
}

export function collectionPath(type: ResourceType, namespace: string | undefined): string {
  const base = `/apis/${GROUP}/${VERSION}`;
  return namespace === undefined
    ? `${base}/${type.plural}`
    : `${base}/namespaces/${encodeURIComponent(namespace)}/${type.plural}`;
}

export function itemPath(type: ResourceType, namespace: string, name: string): string {
  return `${collectionPath(type, namespace)}/${encodeURIComponent(name)}`;
}

/** `beemeshdeployment.beemesh.io/web`, as kubectl names objects in its output. */
export function qualifiedName(type: ResourceType, name: string): string {
  return `${type.singular}.${GROUP}/${name}`;
}

/** The client and namespace an API command works with (-n beats the kubeconfig's context). */
export async function apiSession(
  values: ParsedValues,
  ctx: CliContext,
): Promise<{ client: ApiClient; namespace: string }> {
  const ns = stringOpt(values, "namespace");
  if (ns !== undefined) checkNamespace(ns);
  const target = await loadKubeconfig(
    kubeconfigPath(stringOpt(values, "kubeconfig"), ctx),
    stringOpt(values, "context"),
  );
  return { client: new ApiClient(target), namespace: checkNamespace(ns ?? target.namespace) };
}

// ------------------------------------------------------------------ get ---

export interface TableLike {
  columnDefinitions: { name: string; priority: number }[];
  rows: { cells: unknown[]; object?: { metadata?: { namespace?: string } } }[];
}

function isTable(v: unknown): v is TableLike {
  if (typeof v !== "object" || v === null) return false;
  const t = v as Record<string, unknown>;
  return t["kind"] === "Table" && Array.isArray(t["columnDefinitions"]) && Array.isArray(t["rows"]);
}

function cellText(v: unknown): string {
  if (v === null || v === undefined) return "<none>";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** A meta.k8s.io Table as kubectl prints it; wide shows the priority > 0 columns too. */
export function renderTable(table: TableLike, opts: { wide: boolean; withNamespace: boolean }): string {
  const shown = table.columnDefinitions
    .map((c, i) => ({ c, i }))
    .filter(({ c }) => opts.wide || c.priority === 0);
  const headers = shown.map(({ c }) => c.name.toUpperCase());
  const rows = table.rows.map((r) => shown.map(({ i }) => cellText(r.cells[i])));
  if (opts.withNamespace) {
    headers.unshift("NAMESPACE");
    table.rows.forEach((r, i) => rows[i]!.unshift(r.object?.metadata?.namespace ?? "<none>"));
  }
  return formatTable(headers, rows);
}

const TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

export const get: Command = {
  path: ["get"],
  summary: "Show BeemeshDeployments (bmd) or BeemeshStatefulSets (bmss)",
  usage: "get bmd|bmss [NAME] [-n NS | -A] [-o yaml|json|wide|name]",
  positionals: "TYPE [NAME...] | TYPE/NAME...",
  options: {
    namespace: NAMESPACE_OPTION,
    "all-namespaces": { type: "boolean", short: "A", description: "list across all namespaces" },
    output: { type: "string", short: "o", placeholder: "FORMAT", description: "yaml, json, wide or name" },
    ...API_OPTIONS,
  },
  async run({ values, positionals }, ctx) {
    const refs = parseResourceArgs(positionals);
    const output = outputOpt(values, ["yaml", "json", "wide", "name"] as const);
    const all = boolOpt(values, "all-namespaces");
    if (all && refs.some((r) => r.name !== undefined))
      throw new UsageError("-A lists; it cannot be combined with a name");
    const { client, namespace } = await apiSession(values, ctx);
    for (const ref of refs) {
      const ns = all ? undefined : namespace;
      const path =
        ref.name === undefined ? collectionPath(ref.type, ns) : itemPath(ref.type, namespace, ref.name);
      if (output === "json" || output === "yaml" || output === "name") {
        const obj = (await client.json("GET", path)) as Record<string, unknown>;
        if (output === "json") ctx.io.out(JSON.stringify(obj, null, 2) + "\n");
        else if (output === "yaml") ctx.io.out(dumpYaml(obj, { noRefs: true }));
        else {
          const items =
            ref.name === undefined
              ? ((obj["items"] as { metadata: { name: string } }[] | undefined) ?? [])
              : [obj as { metadata: { name: string } }];
          for (const item of items) ctx.io.out(qualifiedName(ref.type, item.metadata.name) + "\n");
        }
        continue;
      }
      const table = await client.json("GET", path, { accept: TABLE_ACCEPT });
      if (!isTable(table)) throw new CliError(`GET ${path}: the server did not answer with a Table`);
      if (table.rows.length === 0) {
        ctx.io.err(all ? "No resources found\n" : `No resources found in ${namespace} namespace.\n`);
        continue;
      }
      ctx.io.out(renderTable(table, { wide: output === "wide", withNamespace: all }));
    }
    return EXIT.ok;
  },
};

// ---------------------------------------------------------------- apply ---

export interface ManifestDoc {
  type: ResourceType;
  name: string;
  namespace: string;
  body: Record<string, unknown>;
}

/**
 * The workload objects in a (multi-document) YAML or JSON text, each checked
 * against the schema the API uses, so a typo is reported before anything is sent.
 */
export function parseManifests(
  text: string,
  source: string,
  namespace: string,
  explicitNamespace: boolean,
): ManifestDoc[] {
  let docs: unknown[];
  try {
    docs = loadAllYaml(text).filter((d) => d !== null && d !== undefined);
  } catch (err) {
    throw new CliError(`${source} is not YAML or JSON`, { cause: err });
  }
  const out: ManifestDoc[] = [];
  const expand = (d: unknown): unknown[] => {
    // A v1 List (what `kubectl get -o yaml` prints) holds its objects in items.
    if (typeof d === "object" && d !== null && (d as Record<string, unknown>)["kind"] === "List") {
      const items = (d as Record<string, unknown>)["items"];
      return Array.isArray(items) ? items : [];
    }
    return [d];
  };
  for (const [i, doc] of docs.flatMap(expand).entries()) {
    const where = `${source} (document ${i + 1})`;
    if (typeof doc !== "object" || doc === null || Array.isArray(doc))
      throw new CliError(`${where} is not an object`);
    const body = doc as Record<string, unknown>;
    if (body["apiVersion"] !== API_VERSION) {
      throw new CliError(
        `${where}: apiVersion must be ${API_VERSION}, got ${JSON.stringify(body["apiVersion"])}`,
      );
    }
    const type = typeof body["kind"] === "string" ? resourceByKind(body["kind"]) : undefined;
    if (!type) throw new CliError(`${where}: kind must be one of ${RESOURCES.map((r) => r.kind).join(", ")}`);
    const meta = (
      typeof body["metadata"] === "object" && body["metadata"] !== null ? body["metadata"] : {}
    ) as Record<string, unknown>;
    const name = meta["name"];
    if (typeof name !== "string" || name === "") throw new CliError(`${where}: metadata.name is required`);
    const docNs =
      typeof meta["namespace"] === "string" && meta["namespace"] !== "" ? meta["namespace"] : undefined;
    if (docNs !== undefined && explicitNamespace && docNs !== namespace) {
      throw new CliError(`${where}: the namespace from the object (${docNs}) does not match -n ${namespace}`);
    }
    const ns = docNs ?? namespace;
    const checked = parseWorkload({ ...body, metadata: { ...meta, namespace: ns } });
    if (!checked.ok)
      throw new CliError(`${where}: ${checked.error.toStatus({ kind: type.kind, name }).message}`);
    out.push({ type, name, namespace: ns, body: { ...body, metadata: { ...meta, namespace: ns } } });
  }
  if (out.length === 0) throw new CliError(`${source} holds no objects`);
  return out;
}

async function readManifestFiles(
  files: string[],
  ctx: CliContext,
): Promise<{ text: string; source: string }[]> {
  if (files.length === 0) throw new UsageError("-f FILE is required");
  return Promise.all(
    files.map(async (f) =>
      f === "-"
        ? { text: await ctx.io.readStdin(), source: "stdin" }
        : { text: await readFile(resolve(ctx.cwd, f), "utf8"), source: f },
    ),
  );
}

export const FIELD_MANAGER = "beemeshctl";

/** -f FILE, repeatable (- is stdin). */
function filenameOption(description: string): OptionSpec {
  return { type: "string", short: "f", multiple: true, placeholder: "FILE", description };
}

export const apply: Command = {
  path: ["apply"],
  summary: "Create or update objects from YAML files (server-side apply)",
  usage: "apply -f FILE [-f FILE]... [-n NS] [--force-conflicts] [--dry-run]",
  details: "FILE may be - for stdin; a file may hold several documents. Field manager: beemeshctl.",
  options: {
    filename: filenameOption("manifest file"),
    namespace: {
      type: "string",
      short: "n",
      placeholder: "NS",
      description: "namespace for objects that name none",
    },
    "force-conflicts": { type: "boolean", description: "take over fields another manager owns" },
    "dry-run": { type: "boolean", description: "let the server validate without storing" },
    ...API_OPTIONS,
  },
  async run({ values }, ctx) {
    const inputs = await readManifestFiles(stringsOpt(values, "filename"), ctx);
    const { client, namespace } = await apiSession(values, ctx);
    const explicit = stringOpt(values, "namespace") !== undefined;
    const docs = inputs.flatMap((i) => parseManifests(i.text, i.source, namespace, explicit));
    const query = new URLSearchParams({ fieldManager: FIELD_MANAGER });
    if (boolOpt(values, "force-conflicts")) query.set("force", "true");
    if (boolOpt(values, "dry-run")) query.set("dryRun", "All");
    for (const d of docs) {
      const res = await client.request("PATCH", `${itemPath(d.type, d.namespace, d.name)}?${query}`, {
        body: JSON.stringify(d.body),
        contentType: "application/apply-patch+yaml",
      });
      const verb = res.status === 201 ? "created" : "serverside-applied";
      ctx.io.out(
        `${qualifiedName(d.type, d.name)} ${verb}${boolOpt(values, "dry-run") ? " (server dry run)" : ""}\n`,
      );
    }
    return EXIT.ok;
  },
};

// --------------------------------------------------------------- delete ---

export const del: Command = {
  path: ["delete"],
  summary: "Delete objects by type and name, or those in a file",
  usage: "delete (bmd|bmss NAME... | TYPE/NAME... | -f FILE) [-n NS] [--ignore-not-found]",
  positionals: "TYPE NAME... | TYPE/NAME...",
  options: {
    filename: filenameOption("delete the objects in this file"),
    namespace: NAMESPACE_OPTION,
    "ignore-not-found": { type: "boolean", description: "treat a missing object as deleted" },
    ...API_OPTIONS,
  },
  async run({ values, positionals }, ctx) {
    const files = stringsOpt(values, "filename");
    if (files.length > 0 && positionals.length > 0) throw new UsageError("give -f FILE or names, not both");
    const refs = files.length > 0 ? [] : parseResourceArgs(positionals);
    if (refs.some((r) => r.name === undefined))
      throw new UsageError("name the objects to delete (delete bmd NAME)");
    const { client, namespace } = await apiSession(values, ctx);
    let targets: { type: ResourceType; name: string; namespace: string }[];
    if (files.length > 0) {
      const explicit = stringOpt(values, "namespace") !== undefined;
      targets = (await readManifestFiles(files, ctx)).flatMap((i) =>
        parseManifests(i.text, i.source, namespace, explicit),
      );
    } else {
      targets = refs.map((r) => ({ type: r.type, name: r.name!, namespace }));
    }
    let failed = 0;
    for (const t of targets) {
      try {
        await client.request("DELETE", itemPath(t.type, t.namespace, t.name));
        ctx.io.out(`${t.type.singular}.${GROUP} "${t.name}" deleted\n`);
      } catch (err) {
        if (err instanceof ApiStatusError && err.code === 404 && boolOpt(values, "ignore-not-found"))
          continue;
        if (!(err instanceof ApiStatusError) || targets.length === 1) throw err;
        // Keep going through the list as kubectl does; report each failure on its own line.
        ctx.io.err(`error: ${err.message}\n`);
        failed++;
      }
    }
    return failed > 0 ? EXIT.failure : EXIT.ok;
  },
};
