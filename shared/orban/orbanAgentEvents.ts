import type { Logger } from '../logger.ts'
import type { OrbanAgentEvents } from './orbanAgentTypes.ts'

export type OrbanAgentEmitter = {
  on<E extends keyof OrbanAgentEvents>(event: E, listener: (value: OrbanAgentEvents[E]) => void): () => void
  /** Calls every listener; one that throws is logged and does not stop the others. */
  emit<E extends keyof OrbanAgentEvents>(event: E, value: OrbanAgentEvents[E]): void
}

/** The agent's typed events. */
export function createOrbanAgentEmitter(log: Logger): OrbanAgentEmitter {
  const listeners = new Map<keyof OrbanAgentEvents, Set<(value: never) => void>>()
  function on<E extends keyof OrbanAgentEvents>(event: E, listener: (value: OrbanAgentEvents[E]) => void): () => void {
    let set = listeners.get(event)
    if (!set) listeners.set(event, (set = new Set()))
    const stored = listener as (value: never) => void
    set.add(stored)
    return () => void set.delete(stored)
  }
  function emit<E extends keyof OrbanAgentEvents>(event: E, value: OrbanAgentEvents[E]) {
    for (const listener of listeners.get(event) ?? []) {
      try {
        ;(listener as (v: OrbanAgentEvents[E]) => void)(value)
      } catch (e) {
        log.error({ event, err: e }, 'orban agent listener threw')
      }
    }
  }
  return { on, emit }
}
