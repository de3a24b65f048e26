/**
 * A deadline for one wait: a timer and the caller's signal, both let go of when it is disposed.
 *
 * An origin waits for a token on every decode step. `AbortSignal.any([AbortSignal.timeout(ms),
 * signal])` with an abort listener per step made Node keep each step's composite signal, listener
 * and everything the listener's closure reached (the generation's inbox, route and streams) until
 * the timer fired, 30 s after a step that took milliseconds; the request's own deadline signal kept
 * its chain for the whole 5-minute API deadline. Here the timer is cleared and the listener removed
 * as soon as the wait is over.
 */
export type WaitDeadline = {
  /** Resolves when `arm`'s wake is called; rejects at the deadline (`onTimeout()`) or with the signal's reason. */
  wait(arm: (wake: () => void) => void): Promise<void>
  /** Clears the timer and the signal's listener. */
  dispose(): void
}

export function createWaitDeadline(ms: number, signal: AbortSignal | undefined, onTimeout: () => Error): WaitDeadline {
  let fail: ((reason: unknown) => void) | undefined
  let failed: { reason: unknown } | undefined
  const stop = (reason: unknown) => {
    failed = { reason }
    fail?.(reason)
    fail = undefined
  }
  const timer = setTimeout(() => stop(onTimeout()), ms)
  const onAbort = () => stop(signal!.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  return {
    wait(arm) {
      if (failed) return Promise.reject(failed.reason)
      if (signal?.aborted) return Promise.reject(signal.reason)
      return new Promise<void>((resolve, reject) => {
        fail = reject
        arm(() => {
          fail = undefined
          resolve()
        })
      })
    },
    dispose() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      fail = undefined
    },
  }
}
