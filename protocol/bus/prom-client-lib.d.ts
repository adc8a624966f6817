// Types for the prom-client modules protocol/bus/prom-core.ts imports one by
// one (the package ships types for its index only).
declare module "prom-client/lib/registry.js" {
  import type { Registry } from "prom-client";
  const RegistryClass: typeof Registry;
  export default RegistryClass;
}
declare module "prom-client/lib/counter.js" {
  import type { Counter } from "prom-client";
  const CounterClass: typeof Counter;
  export default CounterClass;
}
declare module "prom-client/lib/gauge.js" {
  import type { Gauge } from "prom-client";
  const GaugeClass: typeof Gauge;
  export default GaugeClass;
}
