// Public entry of the SPIFFE Workload API module. A process that only needs
// its SVID (the watchdog) imports der-client.js directly: this entry also
// loads the server (grpc-js, proto-loader) and the x509 client.
export {
  WorkloadApiServer,
  WorkloadApiError,
  rotationDelayMs,
  retryDelayMs,
  MIN_ROTATION_DELAY_MS,
} from "./server.js";
export type { IssueSvidFn, WorkloadApiServerOptions } from "./server.js";
export { WorkloadApiClient, WorkloadApiResponseError } from "./client.js";
export type { X509Context, X509SvidEntry, WorkloadApiClientOptions } from "./client.js";
export { WorkloadApiDerClient, parseX509SvidDerResponse, parseX509BundlesDerResponse } from "./der-client.js";
export type { X509DerContext, X509SvidDer } from "./der-client.js";
export {
  SECURITY_HEADER,
  SECURITY_HEADER_VALUE,
  WorkloadApiCodecError,
  decodeX509SvidResponse,
  decodeX509BundlesResponse,
  encodeX509SvidResponse,
  encodeX509BundlesResponse,
} from "./codec.js";
export { GrpcStatus, GrpcStatusError, UnixGrpcChannel } from "./grpc-stream.js";
export {
  createWorkloadApiStub,
  securityMetadata,
  workloadApiService,
  WorkloadApiProtoError,
} from "./proto.js";
export type { WorkloadApiStub, X509SvidMsg, X509SvidResponseMsg, X509BundlesResponseMsg } from "./proto.js";
