// Public entry of the bus: the connection, the envelope, the authorization table.
export {
  Bus,
  type BusOptions,
  type BusLogger,
  type BusSubscription,
  type Received,
  type RequestOptions,
  type SvidSource,
} from "./bus.js";
export {
  EnvelopeSigner,
  EnvelopeVerifier,
  encodeEnvelope,
  newNonce,
  REJECT_REASONS,
  DEFAULT_SKEW_MS,
  SIGNATURE_ALG,
  type Accepted,
  type MessageSpec,
  type RejectReason,
  type Rejected,
  type VerifyOutcome,
} from "./envelope.js";
export * from "./authz.js";
export { NonceCache, type NonceVerdict } from "./nonce-cache.js";
export { busMetrics, counterValue, type BusMetrics } from "./metrics.js";
export * from "./errors.js";
