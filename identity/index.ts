// Public entry of the identity module (DESIGN §5): SPIFFE IDs, the CA, SVID
// verification, node join, the Workload API and the spiffe-helper.
// nats-config.ts is exported by its owner from its own path.
export * from "./spiffe-id.js";
export * from "./ca.js";
export { x509, generateKeyPair, exportPkcs8Pem, importPkcs8Pem, SIGN_ALG } from "./crypto.js";
export type { CryptoKeyPair } from "./crypto.js";
export * from "./verify.js";
export * from "./der.js";
export * from "./join.js";
export * from "./join-http.js";
export * from "./spiffe-helper.js";
export * from "./workload-api/index.js";
export type { Clock } from "./clock.js";
export { systemClock } from "./clock.js";
export type { IdentityLog } from "./log.js";
export { silentLog } from "./log.js";
