// `beemeshctl events`: the audit log (stream SCHEDULER_EVENTS) read with an
// ordered consumer, every envelope verified as the bus verifies it, shown as
// a table or JSON lines.
import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { SvidVerifier } from "../../identity/verify.js";
import { parseSpiffeId } from "../../identity/spiffe-id.js";
import { STREAMS, parseEvent, subjects, type Event } from "../../protocol/index.js";
import { DEFAULT_SKEW_MS, EnvelopeVerifier, NonceCache, createAuthorizer } from "../../protocol/bus/index.js";
import {
  CliError,
  EXIT,
  UsageError,
  boolOpt,
  checkNamespace,
  outputOpt,
  parseDuration,
  stringOpt,
  type Command,
} from "./common.js";
import { NATS_OPTIONS, connectMesh, natsSettings } from "./nats-client.js";
import { parseResourceArgs } from "./resources.js";
import { formatTable, formatTime, truncate } from "./table.js";

export const EVENT_HEADERS = ["TIME", "KIND", "NS/NAME", "STATUS", "NODE", "TASK", "DETAILS"] as const;

/** Widths the live (--watch) table starts from, so later rows line up without knowing them in advance. */
const MIN_WIDTHS = [20, 11, 16, 13, 10, 26, 0];
const DETAILS_MAX = 100;

/** What DETAILS shows: pod, ordinal, attempt, fencing token, details text, reasons. */
export function eventDetails(ev: Event): string {
  const parts: string[] = [];
  if (ev.pod !== undefined) parts.push(`pod=${ev.pod}`);
  if (ev.ordinal !== undefined) parts.push(`ordinal=${ev.ordinal}`);
  if (ev.attempt !== undefined && ev.attempt > 0) parts.push(`attempt=${ev.attempt}`);
  if (ev.fencing_token !== undefined) parts.push(`fence=${ev.fencing_token}`);
  if (ev.details) parts.push(ev.details);
  if (ev.reasons && ev.reasons.length > 0) parts.push(`reasons: ${ev.reasons.join("; ")}`);
  return parts.join(" ");
}

/** One table row (pure). `wide` keeps DETAILS whole. */
export function eventRow(ev: Event, opts: { wide?: boolean } = {}): string[] {
  const details = eventDetails(ev) || "-";
  return [
    formatTime(ev.ts),
    ev.kind,
    `${ev.ns}/${ev.parent}`,
    ev.status,
    ev.node_id ?? "-",
    ev.task_id,
    opts.wide ? details : truncate(details, DETAILS_MAX),
  ];
}

/** A row padded to fixed widths (the live table); cells wider than their column push the rest right. */
export function formatRow(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
    .join("   ")
    .trimEnd();
}

export function columnWidths(rows: readonly (readonly string[])[]): number[] {
  return EVENT_HEADERS.map((h, i) =>
    Math.max(h.length, MIN_WIDTHS[i] ?? 0, ...rows.map((r) => (r[i] ?? "").length)),
  );
}

export interface EventFilter {
  kind?: Event["kind"];
  ns?: string;
  name?: string;
}

/** -n and --for as a subject filter (pure): --for alone means its object in namespace "default". */
export function eventFilter(namespace: string | undefined, forRef: string | undefined): EventFilter {
  if (forRef === undefined) return namespace === undefined ? {} : { ns: namespace };
  const refs = parseResourceArgs([forRef]);
  const ref = refs[0];
  if (refs.length !== 1 || ref?.name === undefined)
    throw new UsageError("--for takes TYPE/NAME, e.g. bmd/web");
  const kind = ref.type.kind === "BeemeshStatefulSet" ? "StatefulSet" : "Deployment";
  return { kind, ns: namespace ?? "default", name: ref.name };
}

export const events: Command = {
  path: ["events"],
  summary: "Show scheduling events from the SCHEDULER_EVENTS stream",
  usage: "events [-n NS] [--for bmd/NAME] [--since 10m] [--watch] [-o json|wide] --svid-dir DIR [--nats URL]",
  details:
    "Reads the audit log over NATS with an SVID (any role that may read the stream, e.g. user).\n" +
    "Every event is verified like the bus verifies it (certificate chain, signature, sender\n" +
    "allowed for its subject, timestamp within 30 s of when the stream stored it); events that\n" +
    "fail are left out and reported on stderr. Without -n, events of every namespace are shown.",
  options: {
    namespace: { type: "string", short: "n", placeholder: "NS", description: "only this namespace" },
    for: {
      type: "string",
      placeholder: "TYPE/NAME",
      description: "only events of this object (bmd/NAME, bmss/NAME)",
    },
    since: { type: "string", placeholder: "DURATION", description: "only events newer than this (e.g. 10m)" },
    watch: { type: "boolean", short: "w", description: "keep printing new events until interrupted" },
    output: {
      type: "string",
      short: "o",
      placeholder: "FORMAT",
      description: "json (one event per line) or wide",
    },
    ...NATS_OPTIONS,
  },
  async run({ values }, ctx) {
    const ns = stringOpt(values, "namespace");
    const filter = eventFilter(ns === undefined ? undefined : checkNamespace(ns), stringOpt(values, "for"));
    const sinceText = stringOpt(values, "since");
    const sinceMs = sinceText === undefined ? undefined : parseDuration(sinceText, "--since");
    const output = outputOpt(values, ["json", "wide"] as const);
    const watch = boolOpt(values, "watch");
    const settings = natsSettings(values, ctx);
    const subject = subjects(settings.prefix).eventsFilter(filter);

    const mesh = await connectMesh(settings, { reconnect: watch });
    try {
      // Judge each envelope at the time the stream stored it, so an old event is not "stale" today.
      let at = ctx.now();
      const trustDomain = parseSpiffeId(mesh.svid.spiffeId).trustDomain;
      const verifier = new EnvelopeVerifier({
        svids: new SvidVerifier({ bundle: mesh.svid.bundlePem, trustDomain, now: () => at }),
        authorize: createAuthorizer({ prefix: settings.prefix }),
        nonces: new NonceCache({ windowMs: DEFAULT_SKEW_MS }),
        now: () => at,
      });

      const js = jetstream(mesh.nc);
      const start =
        sinceMs !== undefined
          ? { opt_start_time: new Date(ctx.now() - sinceMs).toISOString() }
          : { deliver_policy: DeliverPolicy.All };
      let consumer;
      // Without --watch the snapshot ends at the stream's last message now, even while events keep coming.
      let lastSeqAtStart = Number.POSITIVE_INFINITY;
      try {
        if (!watch) {
          const info = await (await jetstreamManager(mesh.nc)).streams.info(STREAMS.events);
          lastSeqAtStart = info.state.last_seq;
        }
        consumer = await js.consumers.get(STREAMS.events, { filter_subjects: subject, ...start });
      } catch (err) {
        if (isStreamNotFound(err)) {
          throw new CliError(
            `stream ${STREAMS.events} does not exist yet (no dispatcher has set up the mesh)`,
          );
        }
        throw err;
      }
      const pendingAtStart = (await consumer.info(true)).num_pending;

      const rows: string[][] = [];
      let widths: number[] | undefined;
      let dropped = 0;
      const flushSnapshot = () => {
        if (output === "json" || widths !== undefined) return;
        widths = columnWidths(rows);
        if (rows.length > 0) ctx.io.out(formatTable([...EVENT_HEADERS], rows));
        else if (watch) ctx.io.out(formatRow([...EVENT_HEADERS], widths) + "\n");
        else ctx.io.err("No events found.\n");
      };
      const emit = (msg: JsMsg, ev: Event, sender: string) => {
        if (output === "json") {
          ctx.io.out(
            JSON.stringify({ ...ev, time: formatTime(ev.ts), sender, subject: msg.subject, seq: msg.seq }) +
              "\n",
          );
        } else if (widths === undefined) rows.push(eventRow(ev, { wide: output === "wide" }));
        else ctx.io.out(formatRow(eventRow(ev, { wide: output === "wide" }), widths) + "\n");
      };

      if (pendingAtStart === 0 && !watch) {
        ctx.io.err("No events found.\n");
        return EXIT.ok;
      }
      if (pendingAtStart === 0) flushSnapshot();
      const messages = await consumer.consume({ max_messages: 256 });
      const onAbort = () => void messages.close().catch(() => undefined);
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      if (ctx.signal.aborted) onAbort();
      try {
        for await (const msg of messages) {
          at = msg.time.getTime();
          const outcome = await verifier.verify(msg.subject, msg.data, { type: "Event", parse: parseEvent });
          if (outcome.ok) emit(msg, outcome.value.payload, outcome.value.sender.toString());
          else {
            dropped++;
            ctx.io.err(
              `warning: dropped event #${msg.seq} on ${msg.subject}: ${outcome.reason} (${outcome.detail})\n`,
            );
          }
          if (msg.info.pending === 0 || msg.seq >= lastSeqAtStart) {
            flushSnapshot();
            if (!watch) break;
          }
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        await messages.close().catch(() => undefined);
      }
      flushSnapshot();
      if (dropped > 0 && !watch)
        ctx.io.err(`warning: ${dropped} event(s) failed verification and are not shown\n`);
      return EXIT.ok;
    } finally {
      await mesh.close();
    }
  },
};

function isStreamNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return true;
  return err instanceof Error && /stream not found/i.test(err.message);
}
