// beemeshctl: the Beemesh command-line tool. Identity (CA, SVIDs, join),
// kubeconfigs, thin apply/get/delete/rollout over the dispatcher's API, and
// the mesh's own views (events, nodes) over NATS.
//
// Exit codes: 0 success, 1 the command failed, 2 the command line is wrong.
// Every failure is one line on stderr: "error: <what went wrong>".
import { homedir } from "node:os";
import { pathToFileURL } from "node:url";
import {
  EXIT,
  UsageError,
  asErrorLike,
  commandHelp,
  commandName,
  describeError,
  parseCommandArgs,
  type CliContext,
  type Command,
} from "./commands/common.js";

interface Entry {
  path: readonly string[];
  summary: string;
  /** Loaded only when run or asked for --help, so `beemeshctl ca init` does not load NATS. */
  load(): Promise<Command>;
}

export const COMMANDS: readonly Entry[] = [
  {
    path: ["ca", "init"],
    summary: "Create the CA (idempotent) and print its hash",
    load: async () => (await import("./commands/identity.js")).caInit,
  },
  {
    path: ["svid", "issue"],
    summary: "Issue an SVID (chain, key, bundle) into a directory",
    load: async () => (await import("./commands/identity.js")).svidIssue,
  },
  {
    path: ["join-token", "create"],
    summary: "Create a single-use join token for a node",
    load: async () => (await import("./commands/identity.js")).joinTokenCreate,
  },
  {
    path: ["join"],
    summary: "Trade a join token for this node's SVID",
    load: async () => (await import("./commands/identity.js")).joinNode,
  },
  {
    path: ["kubeconfig"],
    summary: "Write a kubeconfig with a user SVID",
    load: async () => (await import("./commands/kubeconfig.js")).kubeconfig,
  },
  {
    path: ["apply"],
    summary: "Create or update objects from files (server-side apply)",
    load: async () => (await import("./commands/resources.js")).apply,
  },
  {
    path: ["get"],
    summary: "Show bmd / bmss objects",
    load: async () => (await import("./commands/resources.js")).get,
  },
  {
    path: ["delete"],
    summary: "Delete bmd / bmss objects",
    load: async () => (await import("./commands/resources.js")).del,
  },
  {
    path: ["rollout", "status"],
    summary: "Wait for a rollout to finish, printing progress",
    load: async () => (await import("./commands/rollout.js")).rolloutStatusCommand,
  },
  {
    path: ["events"],
    summary: "Show scheduling events (SCHEDULER_EVENTS) over NATS",
    load: async () => (await import("./commands/events.js")).events,
  },
  {
    path: ["nodes"],
    summary: "List node agents (beemesh-nodes KV) over NATS",
    load: async () => (await import("./commands/nodes.js")).nodes,
  },
];

export function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => commandName(c).length));
  return [
    "beemeshctl: the Beemesh command-line tool",
    "",
    "Usage:",
    "  beemeshctl <command> [options]",
    "  beemeshctl <command> --help",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${commandName(c).padEnd(width)}  ${c.summary}`),
    "",
    "Environment: KUBECONFIG (API commands), BEEMESH_NATS_URL and BEEMESH_SVID_DIR (events, nodes),",
    "BEEMESH_JOIN_TOKEN (join), BEEMESH_DEBUG=1 (stack traces with errors).",
    "",
    "Exit codes: 0 success, 1 failure, 2 wrong usage.",
    "",
  ].join("\n");
}

/** The entry whose path is the longest prefix of argv's leading words. */
export function findCommand(argv: readonly string[]): { entry: Entry; rest: string[] } | undefined {
  let best: Entry | undefined;
  for (const e of COMMANDS) {
    if (e.path.every((w, i) => argv[i] === w) && (!best || e.path.length > best.path.length)) best = e;
  }
  return best ? { entry: best, rest: argv.slice(best.path.length) } : undefined;
}

/** Commands under a group word (`ca` → `ca init`), for `beemeshctl ca`. */
function groupHelp(word: string): string | undefined {
  const members = COMMANDS.filter((c) => c.path.length > 1 && c.path[0] === word);
  if (members.length === 0) return undefined;
  return ["Commands:", ...members.map((c) => `  ${commandName(c)}  ${c.summary}`), ""].join("\n");
}

/** Runs one command line; never throws, returns the exit code. */
export async function runCli(argv: readonly string[], ctx: CliContext): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    ctx.io.err(topHelp());
    return EXIT.usage;
  }
  if (first === "--help" || first === "-h" || first === "help") {
    const rest = argv.slice(1);
    const found = rest.length > 0 ? findCommand(rest) : undefined;
    if (found) ctx.io.out(commandHelp(await found.entry.load()));
    else if (rest.length > 0 && groupHelp(rest[0]!)) ctx.io.out(groupHelp(rest[0]!)!);
    else ctx.io.out(topHelp());
    return EXIT.ok;
  }
  const found = findCommand(argv);
  if (!found) {
    const group = groupHelp(first);
    const wantsHelp = argv.includes("--help") || argv.includes("-h");
    if (group) {
      if (wantsHelp) {
        ctx.io.out(group);
        return EXIT.ok;
      }
      ctx.io.err(
        `error: ${JSON.stringify(argv.slice(0, 2).join(" "))} is not a command; try one of:\n${group}`,
      );
      return EXIT.usage;
    }
    ctx.io.err(`error: unknown command ${JSON.stringify(first)} (see 'beemeshctl --help')\n`);
    return EXIT.usage;
  }
  let cmd: Command;
  try {
    cmd = await found.entry.load();
  } catch (err) {
    ctx.io.err(`error: cannot load ${commandName(found.entry)}: ${describeError(err)}\n`);
    return EXIT.failure;
  }
  try {
    const { help, values, positionals } = parseCommandArgs(cmd, found.rest);
    if (help) {
      ctx.io.out(commandHelp(cmd));
      return EXIT.ok;
    }
    return await cmd.run({ values, positionals }, ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.io.err(`error: ${err.message} (see 'beemeshctl ${commandName(cmd)} --help')\n`);
      return EXIT.usage;
    }
    ctx.io.err(`error: ${describeError(err)}\n`);
    const stack = asErrorLike(err)?.stack;
    if (ctx.env["BEEMESH_DEBUG"] && stack) ctx.io.err(stack + "\n");
    return EXIT.failure;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

async function main(): Promise<void> {
  const ac = new AbortController();
  // The first signal stops watches cleanly; a second one leaves at once.
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (ac.signal.aborted) process.exit(130);
      ac.abort();
    });
  }
  const code = await runCli(process.argv.slice(2), {
    io: {
      out: (t) => void process.stdout.write(t),
      err: (t) => void process.stderr.write(t),
      readStdin,
    },
    env: { ...process.env },
    now: Date.now,
    signal: ac.signal,
    cwd: process.cwd(),
    homeDir: homedir(),
  });
  // Let stdout drain before leaving; open handles (a closed NATS socket) must not keep us alive.
  process.exitCode = code;
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  process.exit(code);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
