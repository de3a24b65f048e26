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

/**
 * Runs `run` with a signal that aborts with a `TimeoutError` after `ms`; the timer is cleared as
 * soon as `run` settles. For per-frame reads and writes: `AbortSignal.timeout(ms)` stays alive
 * (signal and timer) until it fires, so a host forwarding a hundred frames a second with a 120 s
 * idle limit kept some 12,000 of them.
 */
export async function withTimeout<T>(ms: number, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')), ms)
  // As AbortSignal.timeout's: a pending read does not keep a stopping Node process alive.
  ;(timer as { unref?: () => void }).unref?.()
  try {
    return await run(controller.signal)
  } finally {
    clearTimeout(timer)
  }
}
