/**
 * The network is saturated for this request: every generation slot is taken and the queue (or
 * this client's share of it) is full, or the request waited past its deadline. Answered with 429
 * and `Retry-After`.
 */
export class SaturatedError extends Error {
  /** Seconds after which a retry has a fair chance. */
  readonly retryAfterS: number
  constructor(message: string, retryAfterS: number) {
    super(message)
    this.name = 'SaturatedError'
    this.retryAfterS = retryAfterS
  }
}

export type FairQueueInit = {
  /** Generations running at once. */
  slots: number
  /** Requests waiting for a slot, all clients together. */
  maxQueued: number
  /** Requests one client may have waiting: one heavy client cannot fill the queue. @default maxQueued */
  maxQueuedPerClient?: number
}

type Waiter = { client: string; resolve: (release: () => void) => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort: () => void }

/**
 * Generation slots handed out fairly between clients: when a slot frees it goes to the waiting
 * client served least recently (round robin; each client's requests in their arrival order), not
 * to whoever queued the most. Waiting is bounded in count (per client and in all) and
 * in time (the request's own signal: its deadline, or the client leaving).
 */
export function createFairQueue(init: FairQueueInit) {
  const perClient = init.maxQueuedPerClient ?? init.maxQueued
  let running = 0
  let queued = 0
  /** Waiting requests per client; insertion order of the map is the turn order. */
  const waiting = new Map<string, Waiter[]>()
  /** Slots each client holds now, and when each client last got one (a grant counter): whose turn it is. */
  const holding = new Map<string, number>()
  const lastServed = new Map<string, number>()
  let grants = 0
  /** Mean time a slot is held, s (for Retry-After). */
  let meanHoldS = 1

  const retryAfter = () => Math.max(1, Math.ceil((meanHoldS * (queued + 1)) / Math.max(1, init.slots)))

  const grant = (client: string): (() => void) => {
    running++
    holding.set(client, (holding.get(client) ?? 0) + 1)
    lastServed.set(client, ++grants)
    const t0 = performance.now()
    let released = false
    return () => {
      if (released) return
      released = true
      running--
      const held = holding.get(client)! - 1
      if (held > 0) holding.set(client, held)
      else holding.delete(client)
      // A client with nothing running or waiting is forgotten (the maps stay as small as the traffic).
      if (held <= 0 && !waiting.has(client)) lastServed.delete(client)
      meanHoldS = 0.8 * meanHoldS + 0.2 * ((performance.now() - t0) / 1000)
      next()
    }
  }

  /** Hands free slots out: each to the first waiter of the waiting client served least recently. */
  const next = () => {
    while (running < init.slots && queued > 0) {
      let client = ''
      let turn = Infinity
      for (const c of waiting.keys()) {
        const t = lastServed.get(c) ?? 0
        if (t < turn) (client = c), (turn = t)
      }
      const list = waiting.get(client)!
      const w = list.shift()!
      queued--
      if (list.length === 0) waiting.delete(client)
      w.signal?.removeEventListener('abort', w.onAbort)
      w.resolve(grant(client))
    }
  }

  return {
    /**
     * A slot for `client`'s request: at once when one is free, else after the requests ahead of it
     * in turn. Rejects with SaturatedError when the queue or the client's share is full, and with
     * the signal's reason when it aborts while waiting. Call the result when the work is done.
     */
    acquire(client: string, signal?: AbortSignal): Promise<() => void> {
      signal?.throwIfAborted()
      if (running < init.slots && queued === 0) return Promise.resolve(grant(client))
      const mine = waiting.get(client)?.length ?? 0
      if (mine >= perClient) return Promise.reject(new SaturatedError(`saturated: this client already has ${mine} requests waiting; retry later`, retryAfter()))
      if (queued >= init.maxQueued) return Promise.reject(new SaturatedError(`saturated: ${running} generations running and ${queued} waiting; retry later`, retryAfter()))
      return new Promise((resolve, reject) => {
        const w: Waiter = {
          client,
          resolve,
          reject,
          signal,
          onAbort: () => {
            const list = waiting.get(client)
            const at = list?.indexOf(w) ?? -1
            if (at < 0) return
            list!.splice(at, 1)
            queued--
            if (list!.length === 0) waiting.delete(client)
            if (list!.length === 0 && !holding.has(client)) lastServed.delete(client)
            reject(signal!.reason)
          },
        }
        signal?.addEventListener('abort', w.onAbort, { once: true })
        const list = waiting.get(client)
        if (list) list.push(w)
        else waiting.set(client, [w])
        queued++
      })
    },
    /** Generations running now. */
    running: () => running,
    /** Requests waiting now. */
    queued: () => queued,
    retryAfterS: retryAfter,
  }
}

export type FairQueue = ReturnType<typeof createFairQueue>
