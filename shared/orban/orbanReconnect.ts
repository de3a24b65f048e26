import type { Logger } from '../logger.ts'
import type { OrbanAgentEmitter } from './orbanAgentEvents.ts'
import type { OrbanAgentState, OrbanAgentStop } from './orbanAgentTypes.ts'
import type { OrbanConnectOutcome } from './orbanConnection.ts'

export type OrbanReconnectInit = {
  /** First delay; doubles each failed try. */
  baseDelayMs: number
  maxDelayMs: number
  /** Consecutive failed tries before giving up. */
  maxAttempts: number
}

export type OrbanReconnectComponents = {
  connectOnce: () => Promise<OrbanConnectOutcome>
  events: OrbanAgentEmitter
  log: Logger
  setState: (next: OrbanAgentState) => void
  /** Ends the loop, and the pause between tries. */
  stopSignal: AbortSignal
}

/**
 * Connects again and again, pausing with exponential backoff between tries (a connection that got
 * registered starts the count over), until a connection says to stop, the tries run out or the
 * signal aborts.
 */
export async function runOrbanReconnects(init: OrbanReconnectInit, components: OrbanReconnectComponents): Promise<OrbanAgentStop> {
  const { baseDelayMs, maxDelayMs, maxAttempts } = init
  const { connectOnce, events, log, setState, stopSignal } = components
  let attempt = 0
  while (!stopSignal.aborted) {
    const outcome = await connectOnce()
    if (outcome.stop) return outcome.stop
    if (stopSignal.aborted) break
    if (outcome.registered) attempt = 0
    if (attempt >= maxAttempts) return { reason: 'reconnect_exhausted' }
    const delayMs = Math.min(baseDelayMs * 2 ** attempt, maxDelayMs)
    attempt++
    setState('backoff')
    events.emit('backoff', { attempt, delayMs })
    log.info({ attempt, delayMs }, 'orban agent: reconnecting after a pause')
    await sleep(delayMs, stopSignal)
  }
  return { reason: 'aborted' }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
