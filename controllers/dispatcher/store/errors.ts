// One class per store failure; the API maps each to a metav1.Status reason.

export class StoreError extends Error {
  override name = "StoreError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`store: ${message}`, options);
  }
}

export class NotFoundError extends StoreError {
  override name = "NotFoundError";
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`${key} not found`, options);
  }
}

export class AlreadyExistsError extends StoreError {
  override name = "AlreadyExistsError";
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`${key} already exists`, options);
  }
}

/** The stored revision is not the one the writer read (optimistic concurrency). */
export class ConflictError extends StoreError {
  override name = "ConflictError";
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`${key} was modified concurrently`, options);
  }
}

/** A watch asked for changes the store no longer keeps. */
export class ResourceExpiredError extends StoreError {
  override name = "ResourceExpiredError";
  constructor(
    readonly requested: number,
    readonly oldest: number,
  ) {
    super(`too old resource version: ${requested} (${oldest})`);
  }
}

/** The encoded object is larger than the backend accepts. */
export class ObjectTooLargeError extends StoreError {
  override name = "ObjectTooLargeError";
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`object of ${bytes} bytes exceeds the store limit of ${limit} bytes`);
  }
}

export class StoreUnavailableError extends StoreError {
  override name = "StoreUnavailableError";
}
