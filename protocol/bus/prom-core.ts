// prom-client's Registry, Counter and Gauge from their own modules: the
// package index also loads cluster, the push gateway and @opentelemetry/api
// (about 1.4 MB of RSS), which the watchdog sidecar in every pod never uses.
// The classes are the very ones the index exports (one module cache).
import { createRequire } from "node:module";
import type * as PromClient from "prom-client";

const require = createRequire(import.meta.url);

export const Registry = require("prom-client/lib/registry") as typeof PromClient.Registry;
export const Counter = require("prom-client/lib/counter") as typeof PromClient.Counter;
export const Gauge = require("prom-client/lib/gauge") as typeof PromClient.Gauge;
export type Registry = PromClient.Registry;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
