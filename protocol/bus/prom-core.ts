// prom-client's Registry, Counter and Gauge from their own modules: the
// package index also loads cluster, the push gateway and @opentelemetry/api
// (about 1.4 MB of RSS), which the watchdog sidecar in every pod never uses.
// They are the very classes the index exports (one module cache); plain
// imports, so the sidecar bundle (hack/bundle-sidecars.ts) takes them in.
import RegistryClass from "prom-client/lib/registry.js";
import CounterClass from "prom-client/lib/counter.js";
import GaugeClass from "prom-client/lib/gauge.js";
import type * as PromClient from "prom-client";

export const Registry = RegistryClass;
export const Counter = CounterClass;
export const Gauge = GaugeClass;
export type Registry = PromClient.Registry;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
