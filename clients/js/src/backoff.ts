/**
 * Reconnect delays: exponential, capped, with jitter so that thousands of clients dropped by one
 * deploy do not all come back in the same millisecond.
 */

/** How the client waits between connection attempts. */
export type BackoffOptions = {
  /** Delay before the first retry, in ms (before jitter). Default 500. */
  initialDelayMs?: number
  /** The cap, in ms: no wait is ever longer. Default 10 000. */
  maxDelayMs?: number
  /** Growth per failed attempt. Default 2. */
  factor?: number
  /** Fraction of the delay that is random: the wait is in [delay * (1 - jitter), delay]. Default 0.5. */
  jitter?: number
  /**
   * A connection that stayed open this long, in ms, starts the backoff over when it is lost
   * (unless the server closed it with 4029, rate limited). Default 5 000.
   */
  stableAfterMs?: number
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  initialDelayMs: 500,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.5,
  stableAfterMs: 5_000,
}

/** Check and complete `options`; throws a RangeError naming the bad field. */
export function backoffOptions(options: BackoffOptions = {}): Required<BackoffOptions> {
  const merged = { ...DEFAULT_BACKOFF, ...options }
  const positive = (name: keyof BackoffOptions, value: number, min: number) => {
    if (!Number.isFinite(value) || value < min) {
      throw new RangeError(`reconnect.${name} must be a finite number >= ${min}, not ${value}`)
    }
  }
  positive('initialDelayMs', merged.initialDelayMs, 0)
  positive('maxDelayMs', merged.maxDelayMs, 0)
  positive('factor', merged.factor, 1)
  positive('jitter', merged.jitter, 0)
  positive('stableAfterMs', merged.stableAfterMs, 0)
  if (merged.jitter > 1) throw new RangeError(`reconnect.jitter must be at most 1, not ${merged.jitter}`)
  if (merged.maxDelayMs < merged.initialDelayMs) {
    throw new RangeError('reconnect.maxDelayMs must be at least reconnect.initialDelayMs')
  }
  return merged
}

/**
 * The wait before attempt number `attempt` (1 for the first retry), in ms.
 * `random` is injectable for tests (Math.random by default).
 */
export function backoffDelay(
  attempt: number,
  options: Required<Omit<BackoffOptions, 'stableAfterMs'>>,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, attempt - 1)
  // Past ~60 doublings the number is Infinity anyway; min() caps it either way.
  const raw = options.initialDelayMs * Math.pow(options.factor, Math.min(exponent, 64))
  const capped = Math.min(options.maxDelayMs, raw)
  return capped * (1 - options.jitter * random())
}
