// On a Kubernetes cluster the objects live in the API server, but the
// watchdog sidecars read their Deployment's spec from the beemesh-objects KV
// bucket (DESIGN §4). The mirror copies each CR there under the same key the
// dispatcher's own API would use, newest generation wins.
import type { Workload, WorkloadKind } from "../../../protocol/index.js";
import {
  AlreadyExistsError,
  ConflictError,
  NotFoundError,
  type KubeObject,
  type ObjectStore,
  type ResourceRef,
} from "../store/index.js";
import type { GoneWorkload } from "../fanout/fanout.js";
import { KIND_NAMES } from "../fanout/source.js";
import { canonicalJson, GROUP } from "../../../protocol/index.js";

const MAX_ATTEMPTS = 5;

function resOf(kind: WorkloadKind): ResourceRef {
  return { group: GROUP, plural: KIND_NAMES[kind].plural };
}

/** The object as stored: without the cluster's resourceVersion (the KV revision replaces it). */
function comparable(obj: KubeObject): string {
  const metadata = { ...obj.metadata };
  delete metadata.resourceVersion;
  delete metadata.managedFields;
  return canonicalJson({ ...obj, metadata });
}

export class ObjectMirror {
  constructor(private readonly store: ObjectStore) {}

  async upsert(kind: WorkloadKind, w: Workload): Promise<void> {
    const res = resOf(kind);
    const ns = w.metadata.namespace ?? "";
    const name = w.metadata.name ?? "";
    const next = JSON.parse(JSON.stringify(w)) as KubeObject;
    delete next.metadata.resourceVersion;
    delete next.metadata.managedFields;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const current = await this.store.get(res, ns, name);
      try {
        if (!current) {
          await this.store.create(res, next);
          return;
        }
        const sameObject = current.metadata.uid === w.metadata.uid;
        // An older event arriving late must not roll the copy back.
        if (sameObject && (current.metadata.generation ?? 0) > (w.metadata.generation ?? 0)) return;
        if (comparable(current) === comparable(next)) return;
        await this.store.update(res, next, Number(current.metadata.resourceVersion));
        return;
      } catch (err) {
        if (!(
          err instanceof ConflictError ||
          err instanceof AlreadyExistsError ||
          err instanceof NotFoundError
        ))
          throw err;
      }
    }
  }

  async remove(gone: GoneWorkload): Promise<void> {
    const res = resOf(gone.kind);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const current = await this.store.get(res, gone.ns, gone.name);
      if (!current) return;
      if (gone.uid !== undefined && current.metadata.uid !== gone.uid) return;
      try {
        await this.store.delete(res, gone.ns, gone.name, Number(current.metadata.resourceVersion));
        return;
      } catch (err) {
        if (err instanceof NotFoundError) return;
        if (!(err instanceof ConflictError)) throw err;
      }
    }
  }
}
