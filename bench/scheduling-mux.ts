// Many simulated node agents over a few NATS connections (bench only): each
// agent signs with its own node SVID, but messages for a subject family are
// received once per connection, verified once, and fanned out to the agents
// listening on that exact subject. That keeps 10,000 agents in one process
// affordable; the per-agent logic is the real NodeAgent.
import type { Msg, Subscription } from "@nats-io/transport-node";
import type { Svid } from "../identity/ca.js";
import {
  EnvelopeSigner,
  encodeEnvelope,
  type Bus,
  type BusSubscription,
  type MessageSpec,
  type Received,
} from "../protocol/bus/index.js";
import type { AgentBus } from "../controllers/scheduler-bidder/agent.js";

/** An async queue a subscriber iterates; push never blocks. */
class Queue<T> implements AsyncIterator<T> {
  private readonly items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private closed = false;

  push(item: T): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w({ value: item, done: false });
    } else this.items.push(item);
  }

  close(): void {
    this.closed = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiter = resolve));
  }
}

interface Route {
  spec: MessageSpec<unknown>;
  queues: Set<Queue<Received<unknown>>>;
}

export interface MuxStats {
  /** Messages the connection received on its wildcard subscriptions. */
  received: number;
  /** Deliveries to individual agents after fan-out. */
  delivered: number;
  /** Messages agents published through the mux. */
  published: number;
}

/** One shared connection; `view(svid)` is the AgentBus of one agent on it. */
export class MuxBus {
  readonly stats: MuxStats = { received: 0, delivered: 0, published: 0 };
  private readonly routes = new Map<string, Route>();
  private readonly subs: Subscription[] = [];
  private readonly loops: Promise<void>[] = [];

  constructor(
    readonly bus: Bus,
    wildcards: string[],
  ) {
    for (const w of wildcards) {
      const sub = bus.nc.subscribe(w);
      this.subs.push(sub);
      this.loops.push(this.pump(sub));
    }
  }

  private async pump(sub: Subscription): Promise<void> {
    for await (const m of sub) {
      this.stats.received++;
      const route = this.routes.get(m.subject);
      if (route === undefined || route.queues.size === 0) continue;
      const accepted = await this.bus.verify(m.subject, m.data, route.spec);
      if (accepted === undefined) continue;
      const received: Received<unknown, Msg> = { ...accepted, msg: m };
      for (const q of route.queues) {
        q.push(received);
        this.stats.delivered++;
      }
    }
  }

  view(svid: Svid): AgentBus {
    const signer = new EnvelopeSigner(svid);
    const bus = this.bus;
    const stats = this.stats;
    const envelope = (subject: string, type: string, payload: unknown) =>
      encodeEnvelope(signer.sign(subject, type, payload, Date.now()));
    return {
      prefix: bus.prefix,
      nc: bus.nc,
      publish(subject, type, payload) {
        stats.published++;
        bus.nc.publish(subject, envelope(subject, type, payload));
      },
      publishDurable(subject, type, payload, opts = {}) {
        stats.published++;
        return bus.js.publish(subject, envelope(subject, type, payload), {
          msgID: opts.msgID,
          timeout: opts.timeoutMs,
        });
      },
      reply(to, type, payload) {
        const replySubject = to.msg.reply;
        if (!replySubject) throw new Error(`mux: message on ${to.subject} has no reply subject`);
        bus.nc.publish(replySubject, envelope(replySubject, type, payload));
      },
      subscribe: <T>(subject: string, spec: MessageSpec<T>): BusSubscription<T> => {
        let route = this.routes.get(subject);
        if (route === undefined) {
          route = { spec: spec as MessageSpec<unknown>, queues: new Set() };
          this.routes.set(subject, route);
        }
        const queue = new Queue<Received<unknown>>();
        route.queues.add(queue);
        const r = route;
        return {
          subject,
          [Symbol.asyncIterator]: () => queue as unknown as AsyncIterator<Received<T>>,
          unsubscribe: () => {
            r.queues.delete(queue);
            queue.close();
          },
          drain: async () => {
            r.queues.delete(queue);
            queue.close();
          },
        };
      },
    };
  }

  async close(): Promise<void> {
    for (const s of this.subs) s.unsubscribe();
    for (const route of this.routes.values()) for (const q of route.queues) q.close();
    await Promise.allSettled(this.loops);
    await this.bus.close();
  }
}
