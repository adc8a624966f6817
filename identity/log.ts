// The slice of a structured logger identity code needs; controllers/common's
// Logger satisfies it, so identity does not depend on the controllers.
export interface IdentityLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLog: IdentityLog = { info: () => undefined, warn: () => undefined };
