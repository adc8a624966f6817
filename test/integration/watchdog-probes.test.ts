// The app's probes as the watchdog runs them (probes.ts) against real local
// sockets: httpGet (status codes, named ports, headers, timeouts), tcpSocket,
// exec, and the initial delay. Only 127.0.0.1.
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import type { AddressInfo } from "node:net";
import type { Container } from "../../protocol/index.js";
import type { ControllerClock } from "../../controllers/common/clock.js";
import { ContainerProbes, localExec, runProbe, type ExecRunner } from "../../controllers/watchdog/probes.js";
import { freePort } from "../helpers/nats-server.js";

let http: Server;
let httpPort: number;
let tcp: TcpServer;
let tcpPort: number;
let status = 200;
let lastHeaders: Record<string, string | string[] | undefined> = {};

beforeAll(async () => {
  http = createServer((req, res) => {
    lastHeaders = req.headers;
    if (req.url === "/slow") return; // never answers
    res.writeHead(req.url === "/healthz" ? status : 404);
    res.end();
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  httpPort = (http.address() as AddressInfo).port;
  tcp = createTcpServer((s) => s.end());
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  tcpPort = (tcp.address() as AddressInfo).port;
});

afterAll(async () => {
  http.closeAllConnections();
  await new Promise((r) => http.close(r));
  await new Promise((r) => tcp.close(r));
});

const signal = new AbortController().signal;
const app = (over: Partial<Container> = {}): Container => ({ name: "app", image: "x", ...over });
const opts = { host: "127.0.0.1", exec: localExec, signal };

describe("runProbe", () => {
  it("httpGet passes on 2xx/3xx and fails on 5xx, 404 and refused connections", async () => {
    status = 200;
    expect((await runProbe({ httpGet: { path: "/healthz", port: httpPort } }, app(), opts)).ok).toBe(true);
    status = 302;
    expect((await runProbe({ httpGet: { path: "/healthz", port: httpPort } }, app(), opts)).ok).toBe(true);
    status = 503;
    expect(await runProbe({ httpGet: { path: "/healthz", port: httpPort } }, app(), opts)).toEqual({
      ok: false,
      detail: "HTTP 503",
    });
    expect((await runProbe({ httpGet: { path: "/nope", port: httpPort } }, app(), opts)).ok).toBe(false);
    const closed = await freePort();
    expect((await runProbe({ httpGet: { port: closed } }, app(), opts)).ok).toBe(false);
  });

  it("resolves a named port and sends the probe's headers", async () => {
    status = 200;
    const c = app({ ports: [{ name: "http", containerPort: httpPort }] });
    const r = await runProbe(
      { httpGet: { path: "/healthz", port: "http", httpHeaders: [{ name: "X-Probe", value: "yes" }] } },
      c,
      opts,
    );
    expect(r.ok).toBe(true);
    expect(lastHeaders["x-probe"]).toBe("yes");
    expect((await runProbe({ httpGet: { port: "metrics" } }, c, opts)).detail).toMatch(
      /no port named metrics/,
    );
  });

  it("httpGet fails after timeoutSeconds when the app does not answer", async () => {
    const t0 = performance.now();
    const r = await runProbe({ httpGet: { path: "/slow", port: httpPort }, timeoutSeconds: 1 }, app(), opts);
    expect(r.ok).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(900);
  });

  it("tcpSocket passes when something listens", async () => {
    expect((await runProbe({ tcpSocket: { port: tcpPort } }, app(), opts)).ok).toBe(true);
    expect((await runProbe({ tcpSocket: { port: await freePort() } }, app(), opts)).ok).toBe(false);
  });

  it("exec passes on exit 0 only", async () => {
    expect(await runProbe({ exec: { command: ["true"] } }, app(), opts)).toEqual({
      ok: true,
      detail: "exit 0",
    });
    expect((await runProbe({ exec: { command: ["sh", "-c", "exit 3"] } }, app(), opts)).detail).toBe(
      "exit 3",
    );
    expect((await runProbe({ exec: { command: [] } }, app(), opts)).ok).toBe(false);
  });
});

describe("ContainerProbes", () => {
  it("reports live and ready from the two probes; ready needs live", async () => {
    status = 200;
    const p = new ContainerProbes(
      app({
        livenessProbe: { tcpSocket: { port: tcpPort } },
        readinessProbe: { httpGet: { path: "/healthz", port: httpPort }, periodSeconds: 2 },
      }),
    );
    expect(p.periodMs).toBe(2000);
    expect(await p.check(signal)).toEqual({ live: true, ready: true });
    status = 500;
    expect(await p.check(signal)).toEqual({ live: true, ready: false });
    const dead = new ContainerProbes(
      app({
        livenessProbe: { tcpSocket: { port: await freePort() } },
        readinessProbe: { httpGet: { path: "/healthz", port: httpPort } },
      }),
    );
    status = 200;
    expect(await dead.check(signal)).toEqual({ live: false, ready: false });
  });

  it("without probes the app is live and ready; without readiness, ready follows liveness", async () => {
    expect(await new ContainerProbes(app()).check(signal)).toEqual({ live: true, ready: true });
    const exec: ExecRunner = async () => 1;
    expect(
      await new ContainerProbes(app({ livenessProbe: { exec: { command: ["x"] } } }), { exec }).check(signal),
    ).toEqual({ live: false, ready: false });
  });

  it("counts liveness as passed and readiness as not during initialDelaySeconds", async () => {
    let t = 0;
    const clock: ControllerClock = {
      now: () => 0,
      monotonic: () => t,
      setTimeout: () => 0,
      clearTimeout: () => undefined,
    };
    let calls = 0;
    const exec: ExecRunner = async () => {
      calls++;
      return 0;
    };
    const probe = { exec: { command: ["x"] }, initialDelaySeconds: 5 };
    const p = new ContainerProbes(app({ livenessProbe: probe, readinessProbe: probe }), { exec, clock });
    expect(await p.check(signal)).toEqual({ live: true, ready: false });
    expect(calls).toBe(0);
    t = 5000;
    expect(await p.check(signal)).toEqual({ live: true, ready: true });
    expect(calls).toBe(2);
  });
});
