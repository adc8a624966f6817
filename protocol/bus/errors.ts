// Errors of the bus (STYLE §7: one class per failure, `name` set, cause kept).

export class BusError extends Error {
  override name = "BusError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`bus: ${message}`, options);
  }
}

/** The SVID handed to the bus cannot sign (no private key) or does not match the current identity. */
export class BusIdentityError extends BusError {
  override name = "BusIdentityError";
}

/** A request's reply was dropped by verification (the reason is the metric label). */
export class BusReplyRejectedError extends BusError {
  override name = "BusReplyRejectedError";
  constructor(
    readonly reason: string,
    detail: string,
  ) {
    super(`reply rejected (${reason}): ${detail}`);
  }
}
