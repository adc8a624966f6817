// beemesh spiffe-helper: keeps SVID files fresh for a workload that reads
// certificates from disk. Usage:
//   spiffe-helper --socket /run/spiffe/agent.sock --dir /certs [--pid N | --pid-file F]
//                 [--signal SIGHUP] [--cert svid.pem] [--key svid_key.pem] [--bundle svid_bundle.pem] [--once]
// The socket may also come from SPIFFE_ENDPOINT_SOCKET (unix:///path or a path), read here in main only.
import { parseArgs } from "node:util";
import { constants } from "node:os";
import type { NotifyTarget } from "../identity/spiffe-helper.js";
import { DEFAULT_FILE_NAMES, runSpiffeHelper } from "../identity/spiffe-helper.js";

function fail(message: string): never {
  process.stderr.write(`spiffe-helper: ${message}\n`);
  process.exit(2);
}

function socketFromEnv(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return value.startsWith("unix://") ? value.slice("unix://".length) : value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      socket: { type: "string" },
      dir: { type: "string" },
      cert: { type: "string", default: DEFAULT_FILE_NAMES.cert },
      key: { type: "string", default: DEFAULT_FILE_NAMES.key },
      bundle: { type: "string", default: DEFAULT_FILE_NAMES.bundle },
      pid: { type: "string" },
      "pid-file": { type: "string" },
      signal: { type: "string", default: "SIGHUP" },
      once: { type: "boolean", default: false },
    },
    strict: true,
  });
  const socketPath = values.socket ?? socketFromEnv(process.env["SPIFFE_ENDPOINT_SOCKET"]);
  if (!socketPath) fail("--socket (or SPIFFE_ENDPOINT_SOCKET) is required");
  if (!values.dir) fail("--dir is required");
  if (!(values.signal in constants.signals)) fail(`unknown signal ${values.signal}`);
  let notify: NotifyTarget | undefined;
  if (values.pid && values["pid-file"]) fail("give --pid or --pid-file, not both");
  if (values.pid) {
    const pid = Number(values.pid);
    if (!Number.isInteger(pid) || pid <= 0) fail("--pid must be a positive integer");
    notify = { pid };
  } else if (values["pid-file"]) {
    notify = { pidFile: values["pid-file"] };
  }

  const ac = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => ac.abort());
  await runSpiffeHelper({
    socketPath,
    dir: values.dir,
    fileNames: { cert: values.cert, key: values.key, bundle: values.bundle },
    renewSignal: values.signal as NodeJS.Signals,
    signal: ac.signal,
    once: values.once,
    log: {
      info: (msg, fields) => process.stderr.write(JSON.stringify({ level: "info", msg, ...fields }) + "\n"),
      warn: (msg, fields) => process.stderr.write(JSON.stringify({ level: "warn", msg, ...fields }) + "\n"),
    },
    ...(notify ? { notify } : {}),
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`spiffe-helper: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
