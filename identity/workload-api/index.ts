// Public entry of the SPIFFE Workload API module.
export {
  WorkloadApiServer,
  WorkloadApiError,
  rotationDelayMs,
  retryDelayMs,
  MIN_ROTATION_DELAY_MS,
} from "./server.js";
export type { IssueSvidFn, WorkloadApiServerOptions } from "./server.js";
export {
  WorkloadApiClient,
  WorkloadApiResponseError,
  parseX509SvidResponse,
  parseX509BundlesResponse,
} from "./client.js";
export type { X509Context, X509SvidEntry, WorkloadApiClientOptions } from "./client.js";
export {
  SECURITY_HEADER,
  SECURITY_HEADER_VALUE,
  createWorkloadApiStub,
  securityMetadata,
  workloadApiService,
  WorkloadApiProtoError,
} from "./proto.js";
export type { WorkloadApiStub, X509SvidMsg, X509SvidResponseMsg, X509BundlesResponseMsg } from "./proto.js";
