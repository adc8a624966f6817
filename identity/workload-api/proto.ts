// Loads workload.proto (the SPIFFE Workload API) with @grpc/proto-loader, for
// the server (node agent) and raw stubs in tests. Clients use codec.ts and
// x509-client.ts instead, which need no protobufjs.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { SECURITY_HEADER, SECURITY_HEADER_VALUE, type X509SvidRequestMsg } from "./codec.js";

// The message shapes and the security header live in codec.ts (no protobufjs there).
export { SECURITY_HEADER, SECURITY_HEADER_VALUE } from "./codec.js";
export type {
  X509SvidRequestMsg,
  X509SvidMsg,
  X509SvidResponseMsg,
  X509BundlesResponseMsg,
} from "./codec.js";

/** The client stub as grpc-js builds it from the service definition. */
export interface WorkloadApiStub extends grpc.Client {
  FetchX509SVID(
    request: X509SvidRequestMsg,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<unknown>;
  FetchX509Bundles(
    request: X509SvidRequestMsg,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<unknown>;
  FetchJWTSVID(
    request: { audience: string[]; spiffe_id?: string },
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<unknown>,
  ): grpc.ClientUnaryCall;
  FetchJWTBundles(
    request: X509SvidRequestMsg,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<unknown>;
  ValidateJWTSVID(
    request: { audience: string; svid: string },
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<unknown>,
  ): grpc.ClientUnaryCall;
}

export class WorkloadApiProtoError extends Error {
  override name = "WorkloadApiProtoError";
  constructor(message: string) {
    super(`identity: workload api: ${message}`);
  }
}

/** Next to this module in the source tree; `tsc` does not copy .proto files, so dist falls back to the source. */
function protoPath(): string {
  const candidates = [
    fileURLToPath(new URL("./workload.proto", import.meta.url)),
    fileURLToPath(new URL("../../../identity/workload-api/workload.proto", import.meta.url)),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found)
    throw new WorkloadApiProtoError(`workload.proto not found (looked in ${candidates.join(", ")})`);
  return found;
}

let cached: grpc.ServiceClientConstructor | undefined;

/** The SpiffeWorkloadAPI service (its `.service` is what a server adds). Loaded once. */
export function workloadApiService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const def = protoLoader.loadSync(protoPath(), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const ctor = grpc.loadPackageDefinition(def)["SpiffeWorkloadAPI"];
  if (typeof ctor !== "function")
    throw new WorkloadApiProtoError("SpiffeWorkloadAPI service missing from workload.proto");
  cached = ctor as grpc.ServiceClientConstructor;
  return cached;
}

/** A raw stub on a unix socket; it adds no metadata by itself (WorkloadApiClient does). */
export function createWorkloadApiStub(
  socketPath: string,
  options: grpc.ChannelOptions = {},
): WorkloadApiStub {
  const Ctor = workloadApiService();
  return new Ctor(
    `unix:${socketPath}`,
    grpc.credentials.createInsecure(),
    options,
  ) as unknown as WorkloadApiStub;
}

/** The security header as grpc-js metadata, for raw stubs. */
export function securityMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(SECURITY_HEADER, SECURITY_HEADER_VALUE);
  return md;
}
