// The committed-change feed for the dispatcher's fan-out: one stream of
// events over several resources, each with the object before the change, so
// a consumer can act on create and on a new generation:
//
//   for await (const { resource, event } of watchResources(store, kinds, {})) {
//     if (event.type === "ADDED" || event.object.metadata.generation !== event.previous?.metadata.generation) ...
//   }
//
// Every API server sees every change here (they share the bucket), unlike the
// API's onCommit hook, which sees only the writes made through that server.
import type { ObjectStore, ResourceRef, StoreEvent, WatchOptions } from "./types.js";
import { AsyncQueue } from "./queue.js";

export interface ResourceEvent {
  resource: ResourceRef;
  event: StoreEvent;
}

export interface ResourceEvents extends AsyncIterable<ResourceEvent> {
  stop(): void;
}

export async function watchResources(
  store: ObjectStore,
  resources: readonly ResourceRef[],
  opts: WatchOptions = {},
): Promise<ResourceEvents> {
  const watches = await Promise.all(resources.map((r) => store.watch(r, opts)));
  const stopAll = () => watches.forEach((w) => w.stop());
  const queue = new AsyncQueue<ResourceEvent>(stopAll);
  let open = watches.length;
  watches.forEach((w, i) => {
    const resource = resources[i]!;
    void (async () => {
      try {
        for await (const event of w) queue.push({ resource, event });
        if (--open === 0) queue.end();
      } catch (err) {
        queue.fail(err);
      }
    })();
  });
  return Object.assign(queue, { stop: () => queue.end() });
}

/** True when the change asks for new pods: a new object, or a spec change (generation bump). */
export function needsRollout(event: StoreEvent): boolean {
  if (event.type === "ADDED") return true;
  if (event.type !== "MODIFIED") return false;
  return event.object.metadata.generation !== event.previous?.metadata.generation;
}
