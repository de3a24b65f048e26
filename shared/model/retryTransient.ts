/**
 * Retries an idempotent read of a model file when the network failed it, not the server's answer:
 * fetch rejects with a TypeError ("fetch failed", "terminated") on a refused or reset connection,
 * a keep-alive socket the server closed as it was reused, or a body cut off. One such failure among
 * the dozens of range reads of a shard load failed the whole load in the soak (a loaded machine
 * makes the keep-alive race likely), and the Oracle then kept that agent out of the assignment for
 * 30–120 s while the only copy of its layers was missing.
 */
export type RetryTransientOptions = {
  /** Tries in all. @default 4 */
  attempts?: number
  /** Wait before the second try; doubled each time. @default 200 */
  baseDelayMs?: number
  /** Aborting stops the retries (the abort's error is thrown). */
  signal?: AbortSignal
}

/** A failure of the connection or the transfer: what fetch reports as a TypeError. */
export const isTransientNetworkError = (e: unknown): boolean => e instanceof TypeError

export async function retryTransient<T>(read: () => Promise<T>, opts: RetryTransientOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 4
  const base = opts.baseDelayMs ?? 200
  for (let attempt = 1; ; attempt++) {
    try {
      return await read()
    } catch (e) {
      if (attempt >= attempts || !isTransientNetworkError(e) || opts.signal?.aborted) throw e
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => (clearTimeout(timer), reject(opts.signal!.reason))
        const timer = setTimeout(() => (opts.signal?.removeEventListener('abort', onAbort), resolve()), base * 2 ** (attempt - 1))
        opts.signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
  }
}
