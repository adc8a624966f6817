// The verbs of a Kubernetes resource over an ObjectStore: create, get, list,
// watch, update, patch (merge, JSON, apply), delete, and the status and scale
// subresources. HTTP-free: handlers get plain values and throw ApiError.
import { cloneJson } from "../store/common.js";
import { randomUUID } from "node:crypto";
import {
  AlreadyExistsError,
  ConflictError,
  NotFoundError,
  ObjectTooLargeError,
  ResourceExpiredError,
  type FieldSelector,
  type KubeObject,
  type LabelSelector,
  type ObjectStore,
  type StoreEvent,
  type StoreWatch,
} from "../store/index.js";
import { apiVersionOf, type FieldCause, type ResourceKind } from "./kinds.js";
import {
  ApiError,
  alreadyExists,
  badRequest,
  conflict,
  expired,
  invalid,
  notFound,
  tooLarge,
  unsupportedMediaType,
} from "./status.js";
import { canonical, isPlainObject, jsonPatch, mergePatch, PatchError } from "./patch.js";
import { pruneUnknown, unknownFields } from "./structural.js";
import {
  ApplyConflictError,
  describePath,
  serverSideApply,
  trackUpdate,
  type Manager,
  type Scope,
} from "./managed-fields.js";
import { evalJsonPath } from "./table.js";

export type FieldValidation = "Strict" | "Warn" | "Ignore";

export interface WriteOptions {
  dryRun: boolean;
  fieldManager: string;
  fieldValidation: FieldValidation;
  /** Filled with warnings to send back (Warning headers). */
  warnings: string[];
}

export type PatchType = "merge" | "json" | "strategic" | "apply";

export const PATCH_MEDIA_TYPES: Record<string, PatchType> = {
  "application/merge-patch+json": "merge",
  "application/json-patch+json": "json",
  // Kubernetes refuses strategic merge for custom resources; kubectl's default patch type is
  // strategic, so it is taken as a merge patch (our lists are atomic, where the two agree).
  "application/strategic-merge-patch+json": "strategic",
  "application/apply-patch+yaml": "apply",
};

export interface Committed {
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: KubeObject;
  previous: KubeObject | undefined;
}

export interface ResourceServiceOptions {
  store: ObjectStore;
  now?: () => Date;
  newUid?: () => string;
  /** Called after every committed write made through this service. */
  onCommit?: (change: Committed) => void;
}

export interface ListQuery {
  namespace?: string;
  labelSelector?: LabelSelector;
  fieldSelector?: FieldSelector;
  limit?: number;
  continueToken?: string;
}

export interface ListPage {
  items: KubeObject[];
  resourceVersion: string;
  continueToken?: string;
  remainingItemCount?: number;
}

export interface DeleteOptions {
  dryRun: boolean;
  preconditions?: { uid?: string; resourceVersion?: string };
}

const MAX_WRITE_ATTEMPTS = 8;
const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAMESPACE_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && NAME_PATTERN.test(name);
}

export function isValidNamespace(ns: string): boolean {
  return ns.length > 0 && ns.length <= 63 && NAMESPACE_PATTERN.test(ns);
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

/** Everything but metadata and status: what a generation counts changes of. */
function specPart(obj: KubeObject): Record<string, unknown> {
  const rest: Record<string, unknown> = { ...obj };
  delete rest.metadata;
  delete rest.status;
  delete rest.apiVersion;
  delete rest.kind;
  return rest;
}

function toPath(jsonPath: string): string[] {
  return jsonPath.replace(/^\./, "").split(".");
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const seg of path.slice(0, -1)) {
    if (!isPlainObject(cur[seg])) cur[seg] = {};
    cur = cur[seg] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

interface ContinueToken {
  rv: string;
  ns: string;
  name: string;
}

function encodeContinue(t: ContinueToken): string {
  return Buffer.from(JSON.stringify(t)).toString("base64url");
}

function decodeContinue(text: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(text, "base64url").toString("utf8")) as Partial<ContinueToken>;
    if (typeof t.rv === "string" && typeof t.ns === "string" && typeof t.name === "string")
      return t as ContinueToken;
  } catch {
    // fall through
  }
  throw badRequest(`continue key is not valid: ${JSON.stringify(text)}`);
}

export class ResourceService {
  private readonly store: ObjectStore;
  private readonly now: () => Date;
  private readonly newUid: () => string;
  private readonly onCommit: ((change: Committed) => void) | undefined;

  constructor(opts: ResourceServiceOptions) {
    this.store = opts.store;
    this.now = opts.now ?? (() => new Date());
    this.newUid = opts.newUid ?? randomUUID;
    this.onCommit = opts.onCommit;
  }

  // ------------------------------------------------------------- reads ---

  async get(kind: ResourceKind, namespace: string, name: string): Promise<KubeObject> {
    const obj = isValidName(name) ? await this.store.get(kind, namespace, name) : undefined;
    if (!obj) throw notFound({ group: kind.group, plural: kind.plural, name });
    return obj;
  }

  async list(kind: ResourceKind, q: ListQuery): Promise<ListPage> {
    const result = await this.store.list(kind, {
      ...(q.namespace !== undefined ? { namespace: q.namespace } : {}),
      ...(q.labelSelector ? { labelSelector: q.labelSelector } : {}),
      ...(q.fieldSelector ? { fieldSelector: q.fieldSelector } : {}),
    });
    let items = result.items;
    let resourceVersion = String(result.revision);
    if (q.continueToken) {
      const from = decodeContinue(q.continueToken);
      resourceVersion = from.rv;
      items = items.filter((o) => {
        const ns = o.metadata.namespace.localeCompare(from.ns);
        return ns > 0 || (ns === 0 && o.metadata.name.localeCompare(from.name) > 0);
      });
    }
    if (q.limit !== undefined && q.limit > 0 && items.length > q.limit) {
      const page = items.slice(0, q.limit);
      const last = page[page.length - 1]!;
      return {
        items: page,
        resourceVersion,
        continueToken: encodeContinue({
          rv: resourceVersion,
          ns: last.metadata.namespace,
          name: last.metadata.name,
        }),
        remainingItemCount: items.length - page.length,
      };
    }
    return { items, resourceVersion };
  }

  async watch(
    kind: ResourceKind,
    q: {
      namespace?: string;
      labelSelector?: LabelSelector;
      fieldSelector?: FieldSelector;
      resourceVersion?: string;
    },
  ): Promise<StoreWatch> {
    let fromRevision: number | undefined;
    const rv = q.resourceVersion;
    if (rv !== undefined && rv !== "" && rv !== "0") {
      if (!/^[0-9]+$/.test(rv)) throw invalidResourceVersion(rv);
      fromRevision = Number(rv);
    }
    try {
      return await this.store.watch(kind, {
        ...(q.namespace !== undefined ? { namespace: q.namespace } : {}),
        ...(q.labelSelector ? { labelSelector: q.labelSelector } : {}),
        ...(q.fieldSelector ? { fieldSelector: q.fieldSelector } : {}),
        ...(fromRevision !== undefined ? { fromRevision } : {}),
      });
    } catch (err) {
      if (err instanceof ResourceExpiredError)
        throw expired(`too old resource version: ${err.requested} (${err.oldest})`);
      throw err;
    }
  }

  // ------------------------------------------------------------ writes ---

  async create(
    kind: ResourceKind,
    namespace: string,
    body: unknown,
    opts: WriteOptions,
  ): Promise<KubeObject> {
    const candidate = this.checkTypeMeta(kind, body);
    const meta = candidate.metadata as unknown as Record<string, unknown> | undefined;
    let name = typeof meta?.name === "string" ? meta.name : "";
    if (name === "" && typeof meta?.generateName === "string" && meta.generateName !== "") {
      name = `${meta.generateName}${randomSuffix(5)}`;
    }
    this.checkNamespace(candidate, namespace);
    if (name === "") {
      throw invalid({ group: kind.group, kind: kind.kind, name: "" }, [
        {
          field: "metadata.name",
          reason: "FieldValueRequired",
          message: "Required value: name or generateName is required",
        },
      ]);
    }
    const now = rfc3339(this.now());
    const draft: KubeObject = {
      ...this.withKnownFields(kind, candidate, opts),
      apiVersion: apiVersionOf(kind),
      kind: kind.kind,
    };
    draft.metadata = {
      ...draft.metadata,
      name,
      namespace,
      uid: this.newUid(),
      creationTimestamp: now,
      generation: 1,
    };
    delete draft.metadata.resourceVersion;
    delete draft.metadata.deletionTimestamp;
    delete draft.metadata.deletionGracePeriodSeconds;
    if (kind.hasStatus) delete draft.status;
    const explicitFields = draft.metadata.managedFields;
    draft.metadata.managedFields =
      explicitFields && explicitFields.length > 0
        ? explicitFields
        : trackUpdate(undefined, draft, this.manager(kind, opts, "Update"), "main", now);
    return this.storeNew(kind, this.validated(kind, draft), opts);
  }

  /** Stores a validated new object (unless a dry run) and tells the watchers. */
  private async storeNew(kind: ResourceKind, value: KubeObject, opts: WriteOptions): Promise<KubeObject> {
    if (opts.dryRun) return value;
    try {
      const stored = await this.store.create(kind, value);
      this.committed({ type: "ADDED", object: stored, previous: undefined });
      return stored;
    } catch (err) {
      if (err instanceof AlreadyExistsError)
        throw alreadyExists({ group: kind.group, plural: kind.plural, name: value.metadata.name });
      throw mapStoreError(err);
    }
  }

  /** PUT of the object or of its status. */
  async replace(
    kind: ResourceKind,
    namespace: string,
    name: string,
    body: unknown,
    opts: WriteOptions,
    subresource?: "status",
  ): Promise<KubeObject> {
    const candidate = this.checkTypeMeta(kind, body);
    this.checkNamespace(candidate, namespace);
    this.checkName(candidate, name);
    const requestedRv = candidate.metadata?.resourceVersion;
    return this.readModifyWrite(
      kind,
      namespace,
      name,
      requestedRv !== undefined && requestedRv !== "",
      async (old) => {
        if (requestedRv && requestedRv !== old.metadata.resourceVersion) throw conflictOf(kind, name);
        const merged = { ...candidate, metadata: { ...candidate.metadata, name, namespace } } as KubeObject;
        return this.prepareUpdate(kind, old, merged, opts, subresource ?? "main", "track");
      },
    );
  }

  async patch(
    kind: ResourceKind,
    namespace: string,
    name: string,
    type: PatchType,
    patch: unknown,
    opts: WriteOptions & { force: boolean },
    subresource?: "status",
  ): Promise<{ object: KubeObject; created: boolean }> {
    if (type === "apply") return this.apply(kind, namespace, name, patch, opts, subresource);
    const expectsRv =
      isPlainObject(patch) &&
      isPlainObject(patch.metadata) &&
      typeof patch.metadata.resourceVersion === "string";
    const object = await this.readModifyWrite(kind, namespace, name, expectsRv, async (old) => {
      const patched = applyPatch(type, old, patch);
      if (!isPlainObject(patched)) throw badRequest("the patch must produce an object");
      const candidate = patched as KubeObject;
      const rv = candidate.metadata?.resourceVersion;
      if (rv !== undefined && rv !== old.metadata.resourceVersion) throw conflictOf(kind, name);
      return this.prepareUpdate(
        kind,
        old,
        this.keepIdentity(candidate, old),
        opts,
        subresource ?? "main",
        "track",
      );
    });
    return { object, created: false };
  }

  private async apply(
    kind: ResourceKind,
    namespace: string,
    name: string,
    config: unknown,
    opts: WriteOptions & { force: boolean },
    subresource?: "status",
  ): Promise<{ object: KubeObject; created: boolean }> {
    const applied = this.checkTypeMeta(kind, config);
    this.checkNamespace(applied, namespace);
    this.checkName(applied, name);
    const cleaned = this.withKnownFields(kind, applied, opts);
    cleaned.metadata = { ...cleaned.metadata, name, namespace };
    const scope: Scope = subresource === "status" ? "status" : "main";
    const manager = this.manager(kind, opts, "Apply", subresource);
    for (let attempt = 1; ; attempt++) {
      const old = isValidName(name) ? await this.store.get(kind, namespace, name) : undefined;
      const time = rfc3339(this.now());
      if (!old) {
        if (subresource) throw notFound({ group: kind.group, plural: kind.plural, name });
        const result = this.applyOrConflict(kind, undefined, cleaned, manager, opts.force, scope, time);
        try {
          const object = await this.createFromApply(kind, namespace, result, opts);
          return { object, created: true };
        } catch (err) {
          if (err instanceof ApiError && err.reason === "AlreadyExists" && attempt < MAX_WRITE_ATTEMPTS)
            continue;
          throw err;
        }
      }
      const result = this.applyOrConflict(kind, old, cleaned, manager, opts.force, scope, time);
      const { next } = this.prepareUpdate(kind, old, this.keepIdentity(result, old), opts, scope, "given");
      try {
        return { object: await this.commitUpdate(kind, old, next, opts), created: false };
      } catch (err) {
        if (err instanceof ConflictError && attempt < MAX_WRITE_ATTEMPTS) continue;
        throw mapWriteError(kind, name, err);
      }
    }
  }

  private applyOrConflict(
    kind: ResourceKind,
    live: KubeObject | undefined,
    config: KubeObject,
    manager: Manager,
    force: boolean,
    scope: Scope,
    time: string,
  ): KubeObject {
    try {
      return serverSideApply(live, config, manager, { force, scope, time });
    } catch (err) {
      if (!(err instanceof ApplyConflictError)) throw err;
      // kube-apiserver's wording, which kubectl shows as it is.
      const owner = (c: { manager: string; apiVersion: string }) =>
        `conflict with "${c.manager}" using ${c.apiVersion}`;
      const causes: FieldCause[] = err.conflicts.map((c) => ({
        reason: "FieldManagerConflict",
        message: owner(c),
        field: describePath(c.path),
      }));
      const lines = err.conflicts.map((c) => `${owner(c)}: ${describePath(c.path)}`);
      const message =
        lines.length === 1
          ? `Apply failed with 1 conflict: ${lines[0]}`
          : `Apply failed with ${lines.length} conflicts: ${lines.join("\n- ")}`;
      throw new ApiError(409, "Conflict", message, { causes });
    }
  }

  private async createFromApply(
    kind: ResourceKind,
    namespace: string,
    applied: KubeObject,
    opts: WriteOptions,
  ): Promise<KubeObject> {
    const now = rfc3339(this.now());
    const draft: KubeObject = { ...applied, apiVersion: apiVersionOf(kind), kind: kind.kind };
    draft.metadata = {
      ...draft.metadata,
      namespace,
      uid: this.newUid(),
      creationTimestamp: now,
      generation: 1,
    };
    delete draft.metadata.resourceVersion;
    if (kind.hasStatus) delete draft.status;
    return this.storeNew(kind, this.validated(kind, draft), opts);
  }

  async delete(
    kind: ResourceKind,
    namespace: string,
    name: string,
    opts: DeleteOptions,
  ): Promise<KubeObject> {
    for (let attempt = 1; ; attempt++) {
      const old = await this.get(kind, namespace, name);
      const pre = opts.preconditions;
      if (pre?.uid && pre.uid !== old.metadata.uid) {
        throw conflictOf(
          kind,
          name,
          `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid ?? ""}`,
        );
      }
      if (pre?.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
        throw conflictOf(
          kind,
          name,
          `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion ?? ""}`,
        );
      }
      try {
        if ((old.metadata.finalizers ?? []).length > 0) {
          // Finalizers hold the object until their owners remove them; mark it as going.
          if (old.metadata.deletionTimestamp) return old;
          const next: KubeObject = {
            ...old,
            metadata: {
              ...old.metadata,
              deletionTimestamp: rfc3339(this.now()),
              deletionGracePeriodSeconds: 0,
              generation: (old.metadata.generation ?? 1) + 1,
            },
          };
          if (opts.dryRun) return next;
          return await this.commitUpdate(kind, old, next, { dryRun: false });
        }
        if (opts.dryRun) return old;
        const gone = await this.store.delete(kind, namespace, name, Number(old.metadata.resourceVersion));
        this.committed({ type: "DELETED", object: gone, previous: old });
        return gone;
      } catch (err) {
        if (err instanceof ConflictError && !pre?.resourceVersion && attempt < MAX_WRITE_ATTEMPTS) continue;
        if (err instanceof NotFoundError) throw notFound({ group: kind.group, plural: kind.plural, name });
        throw mapWriteError(kind, name, err);
      }
    }
  }

  async deleteCollection(kind: ResourceKind, q: ListQuery, opts: DeleteOptions): Promise<KubeObject[]> {
    const { items } = await this.list(kind, { ...q, limit: undefined, continueToken: undefined });
    const out: KubeObject[] = [];
    for (const item of items) {
      try {
        out.push(
          await this.delete(kind, item.metadata.namespace, item.metadata.name, { dryRun: opts.dryRun }),
        );
      } catch (err) {
        if (!(err instanceof ApiError && err.reason === "NotFound")) throw err;
      }
    }
    return out;
  }

  // ------------------------------------------------------------- scale ---

  toScale(kind: ResourceKind, obj: KubeObject): Record<string, unknown> {
    const scale = kind.scale!;
    const specReplicas = evalJsonPath(obj, scale.specReplicasPath)[0];
    const statusReplicas = evalJsonPath(obj, scale.statusReplicasPath)[0];
    const selector = scale.labelSelectorPath ? evalJsonPath(obj, scale.labelSelectorPath)[0] : undefined;
    return {
      kind: "Scale",
      apiVersion: "autoscaling/v1",
      metadata: {
        name: obj.metadata.name,
        namespace: obj.metadata.namespace,
        uid: obj.metadata.uid,
        resourceVersion: obj.metadata.resourceVersion,
        creationTimestamp: obj.metadata.creationTimestamp,
      },
      spec: { replicas: typeof specReplicas === "number" ? specReplicas : 0 },
      status: {
        replicas: typeof statusReplicas === "number" ? statusReplicas : 0,
        ...(typeof selector === "string" && selector !== "" ? { selector } : {}),
      },
    };
  }

  async getScale(kind: ResourceKind, namespace: string, name: string): Promise<Record<string, unknown>> {
    return this.toScale(kind, await this.get(kind, namespace, name));
  }

  /** PUT or PATCH of /scale: `change` turns the current Scale into the wanted one. */
  async writeScale(
    kind: ResourceKind,
    namespace: string,
    name: string,
    change: (current: Record<string, unknown>) => unknown,
    opts: WriteOptions,
  ): Promise<Record<string, unknown>> {
    const scale = kind.scale!;
    let explicitRv = false;
    const object = await this.readModifyWrite(
      kind,
      namespace,
      name,
      false,
      async (old) => {
        const wanted = change(this.toScale(kind, old));
        if (!isPlainObject(wanted)) throw badRequest("a Scale must be an object");
        const meta = isPlainObject(wanted.metadata) ? wanted.metadata : {};
        if (typeof meta.resourceVersion === "string" && meta.resourceVersion !== "") {
          explicitRv = true;
          if (meta.resourceVersion !== old.metadata.resourceVersion) throw conflictOf(kind, name);
        }
        const replicas = isPlainObject(wanted.spec) ? wanted.spec.replicas : undefined;
        if (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 0) {
          throw invalid({ group: "autoscaling", kind: "Scale", name }, [
            {
              field: "spec.replicas",
              reason: "FieldValueInvalid",
              message: `Invalid value: ${JSON.stringify(replicas ?? null)}: must be a non-negative integer`,
            },
          ]);
        }
        const next = cloneJson(old) as unknown as Record<string, unknown>;
        setPath(next, toPath(scale.specReplicasPath), replicas);
        return this.prepareUpdate(kind, old, next as KubeObject, opts, "main", "track");
      },
      () => explicitRv,
    );
    return this.toScale(kind, object);
  }

  // ----------------------------------------------------------- helpers ---

  /**
   * Reads, transforms and compare-and-sets, retrying when another writer got
   * in between, unless the caller named the resourceVersion it expected.
   */
  private async readModifyWrite(
    kind: ResourceKind,
    namespace: string,
    name: string,
    pinned: boolean,
    transform: (old: KubeObject) => Promise<{ next: KubeObject; opts: Pick<WriteOptions, "dryRun"> }>,
    pinnedLate: () => boolean = () => false,
  ): Promise<KubeObject> {
    for (let attempt = 1; ; attempt++) {
      const old = await this.get(kind, namespace, name);
      const { next, opts } = await transform(old);
      try {
        return await this.commitUpdate(kind, old, next, opts);
      } catch (err) {
        if (err instanceof ConflictError && !pinned && !pinnedLate() && attempt < MAX_WRITE_ATTEMPTS)
          continue;
        throw mapWriteError(kind, name, err);
      }
    }
  }

  private async commitUpdate(
    kind: ResourceKind,
    old: KubeObject,
    next: KubeObject,
    opts: Pick<WriteOptions, "dryRun">,
  ): Promise<KubeObject> {
    // The last finalizer gone from an object being deleted: it goes now.
    const finishing =
      next.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers ?? []).length === 0;
    if (opts.dryRun)
      return { ...next, metadata: { ...next.metadata, resourceVersion: old.metadata.resourceVersion } };
    if (same(forCompare(old), forCompare(next))) return old;
    const revision = Number(old.metadata.resourceVersion);
    if (finishing) {
      const gone = await this.store.delete(kind, old.metadata.namespace, old.metadata.name, revision);
      this.committed({ type: "DELETED", object: gone, previous: old });
      return gone;
    }
    const stored = await this.store.update(kind, next, revision);
    this.committed({ type: "MODIFIED", object: stored, previous: old });
    return stored;
  }

  /**
   * The server's part of an update: identity and system fields from the old
   * object, status or spec kept depending on the endpoint, generation bumped
   * on a spec change, ownership tracked, the result validated.
   */
  private prepareUpdate(
    kind: ResourceKind,
    old: KubeObject,
    candidate: KubeObject,
    opts: WriteOptions,
    scope: Scope,
    managed: "track" | "given",
  ): { next: KubeObject; opts: WriteOptions } {
    const cleaned = managed === "track" ? this.withKnownFields(kind, candidate, opts) : candidate;
    let next: KubeObject;
    if (scope === "status") {
      next = { ...cloneJson(old), status: cleaned.status };
      if (cleaned.status === undefined) delete next.status;
      if (managed === "given") next.metadata.managedFields = cleaned.metadata.managedFields;
    } else {
      next = { ...cleaned, apiVersion: apiVersionOf(kind), kind: kind.kind };
      if (kind.hasStatus) {
        if (old.status === undefined) delete next.status;
        else next.status = old.status;
      }
      next.metadata = {
        ...cleaned.metadata,
        name: old.metadata.name,
        namespace: old.metadata.namespace,
        uid: old.metadata.uid,
        creationTimestamp: old.metadata.creationTimestamp,
        generation: old.metadata.generation ?? 1,
      };
      if (old.metadata.deletionTimestamp) next.metadata.deletionTimestamp = old.metadata.deletionTimestamp;
      else delete next.metadata.deletionTimestamp;
      if (old.metadata.deletionGracePeriodSeconds !== undefined) {
        next.metadata.deletionGracePeriodSeconds = old.metadata.deletionGracePeriodSeconds;
      } else delete next.metadata.deletionGracePeriodSeconds;
    }
    const candidateUid = candidate.metadata?.uid;
    if (candidateUid && candidateUid !== old.metadata.uid) {
      throw conflictOf(
        kind,
        old.metadata.name,
        `Precondition failed: UID in precondition: ${candidateUid}, UID in object meta: ${old.metadata.uid ?? ""}`,
      );
    }
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    if (managed === "track") {
      const given = next.metadata.managedFields;
      const explicit = given !== undefined && !same(given, old.metadata.managedFields);
      if (explicit && given.length === 0) delete next.metadata.managedFields;
      else if (!explicit) {
        const time = rfc3339(this.now());
        next.metadata.managedFields = trackUpdate(
          old,
          next,
          this.manager(kind, opts, "Update", scope === "status" ? "status" : undefined),
          scope,
          time,
        );
      }
    }
    const value = this.validated(kind, next);
    const generation = old.metadata.generation ?? 1;
    value.metadata.generation = same(specPart(old), specPart(value)) ? generation : generation + 1;
    value.metadata.resourceVersion = old.metadata.resourceVersion;
    return { next: value, opts };
  }

  private keepIdentity(candidate: KubeObject, old: KubeObject): KubeObject {
    return {
      ...candidate,
      apiVersion: old.apiVersion,
      kind: old.kind,
      metadata: { ...candidate.metadata, name: old.metadata.name, namespace: old.metadata.namespace },
    };
  }

  private checkTypeMeta(kind: ResourceKind, body: unknown): KubeObject {
    if (!isPlainObject(body)) throw badRequest("the request body must be a JSON or YAML object");
    const apiVersion = body.apiVersion;
    const k = body.kind;
    if (typeof k !== "string" || k === "") throw badRequest(`Object 'Kind' is missing in the request body`);
    if (typeof apiVersion !== "string" || apiVersion === "") {
      throw badRequest(`Object 'apiVersion' is missing in the request body`);
    }
    if (apiVersion !== apiVersionOf(kind)) {
      throw badRequest(
        `the API version in the data (${apiVersion}) does not match the expected API version (${apiVersionOf(kind)})`,
      );
    }
    if (k !== kind.kind)
      throw badRequest(`the kind in the data (${k}) does not match the expected kind (${kind.kind})`);
    if (body.metadata !== undefined && !isPlainObject(body.metadata)) {
      throw invalid({ group: kind.group, kind: kind.kind, name: "" }, [
        { field: "metadata", reason: "FieldValueTypeInvalid", message: "Invalid value: must be an object" },
      ]);
    }
    return { ...body, metadata: (body.metadata ?? {}) as unknown as KubeObject["metadata"] } as KubeObject;
  }

  private checkNamespace(obj: KubeObject, namespace: string): void {
    const ns = (obj.metadata as unknown as Record<string, unknown>).namespace;
    if (ns !== undefined && ns !== "" && ns !== namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
  }

  private checkName(obj: KubeObject, name: string): void {
    const given = (obj.metadata as unknown as Record<string, unknown> | undefined)?.name;
    if (given !== undefined && given !== name) {
      throw badRequest(
        `the name of the object (${String(given)}) does not match the name on the URL (${name})`,
      );
    }
  }

  /** Unknown fields: refused (Strict), warned about and dropped (Warn), or dropped (Ignore). */
  private withKnownFields(kind: ResourceKind, obj: KubeObject, opts: WriteOptions): KubeObject {
    const unknown = unknownFields(kind.schema, obj);
    if (unknown.length === 0) return cloneJson(obj);
    if (opts.fieldValidation === "Strict") {
      const list = unknown.map((f) => `unknown field "${f}"`).join(", ");
      throw badRequest(
        `${kind.kind} in version "${kind.version}" cannot be handled as a ${kind.kind}: strict decoding error: ${list}`,
        unknown.map((f) => ({ field: f, reason: "FieldValueInvalid", message: `unknown field "${f}"` })),
      );
    }
    if (opts.fieldValidation === "Warn") for (const f of unknown) opts.warnings.push(`unknown field "${f}"`);
    return pruneUnknown(kind.schema, obj);
  }

  private validated(kind: ResourceKind, obj: KubeObject): KubeObject {
    const result = kind.validate(kind.derive ? kind.derive(obj) : obj);
    if (!result.ok) {
      throw invalid(
        { group: kind.group, kind: kind.kind, name: obj.metadata?.name ?? "" },
        result.causes.map(kubeCause),
      );
    }
    return result.value;
  }

  private manager(
    kind: ResourceKind,
    opts: WriteOptions,
    operation: Manager["operation"],
    subresource?: string,
  ): Manager {
    return {
      manager: opts.fieldManager,
      operation,
      apiVersion: apiVersionOf(kind),
      ...(subresource ? { subresource } : {}),
    };
  }

  private committed(change: Committed): void {
    try {
      this.onCommit?.(change);
    } catch {
      // A hook's failure must not turn a committed write into an error.
    }
  }
}

/** Kubernetes phrases causes as "Invalid value: <v>: <why>" / "Required value"; keep protocol wording otherwise. */
function kubeCause(c: FieldCause): FieldCause {
  return { field: c.field, reason: c.reason, message: c.message };
}

function forCompare(obj: KubeObject): KubeObject {
  const meta = { ...obj.metadata };
  delete meta.resourceVersion;
  // Ownership timestamps alone do not make a write.
  const managed = (meta.managedFields ?? []).map((e) => ({ ...e, time: undefined }));
  return { ...obj, metadata: { ...meta, managedFields: managed } };
}

function applyPatch(type: PatchType, old: KubeObject, patch: unknown): unknown {
  try {
    if (type === "json") return jsonPatch(old, patch);
    if (!isPlainObject(patch)) throw new PatchError("a merge patch must be a JSON object");
    return mergePatch(old, patch);
  } catch (err) {
    if (err instanceof PatchError)
      throw badRequest(`the server rejected our request due to an error in our request: ${err.message}`);
    throw err;
  }
}

function conflictOf(kind: ResourceKind, name: string, why?: string): ApiError {
  return conflict({ group: kind.group, plural: kind.plural, name }, why);
}

function invalidResourceVersion(rv: string): ApiError {
  return badRequest(`resourceVersion: Invalid value: ${JSON.stringify(rv)}: must be a non-negative integer`);
}

function mapStoreError(err: unknown): unknown {
  if (err instanceof ObjectTooLargeError) return tooLarge(err.limit);
  return err;
}

function mapWriteError(kind: ResourceKind, name: string, err: unknown): unknown {
  if (err instanceof ConflictError) return conflictOf(kind, name);
  if (err instanceof NotFoundError) return notFound({ group: kind.group, plural: kind.plural, name });
  return mapStoreError(err);
}

const SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

function randomSuffix(n: number): string {
  let out = "";
  for (let i = 0; i < n; i++) out += SUFFIX_ALPHABET[Math.floor(Math.random() * SUFFIX_ALPHABET.length)];
  return out;
}

export function parsePatchType(contentType: string): PatchType {
  const base = contentType.split(";")[0]!.trim().toLowerCase();
  const type = PATCH_MEDIA_TYPES[base];
  if (!type) throw unsupportedMediaType(base, Object.keys(PATCH_MEDIA_TYPES));
  return type;
}

export type { StoreEvent };
