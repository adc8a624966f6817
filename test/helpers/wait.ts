// Bounded polling, for the rare state changes that raise no event to await.

export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
  constructor(what: string, timeoutMs: number, lastError?: unknown) {
    super(`wait: timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
  }
}

export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  what?: string;
}

/**
 * Resolves with the first truthy value of predicate (a thrown error counts as
 * "not yet"); rejects with WaitTimeoutError once timeoutMs has passed.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 25;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (performance.now() >= deadline)
      throw new WaitTimeoutError(opts.what ?? "condition", timeoutMs, lastError);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Races a promise against a deadline so a missing event fails the test instead of hanging it. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what = "promise"): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeoutError(what, timeoutMs)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
