// Public entry of the dispatcher's Kubernetes-compatible API.
export {
  startApiServer,
  ApiServerConfigError,
  type ApiServer,
  type ApiTlsOptions,
  type StartApiServerOptions,
} from "./server.js";
export { beemeshKinds, beemeshRegistry, objectMetaSchema } from "./beemesh-kinds.js";
export {
  KindRegistry,
  kindFromCrd,
  apiVersionOf,
  KindDefinitionError,
  type ResourceKind,
  type PrinterColumn,
  type FieldCause,
  type ValidateResult,
} from "./kinds.js";
export { ResourceService, type Committed, type WriteOptions, type PatchType } from "./resource.js";
export { ApiError, type Status, type StatusReason } from "./status.js";
export {
  certAuthenticator,
  devAuthenticator,
  allowUsersAndControllers,
  type Authenticator,
  type Caller,
} from "./auth.js";
