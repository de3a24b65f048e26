/** A unit of work on one shard: one session's decode step, or its prefill (run in slices). */
export type BatchJob = {
  /** The session; its jobs run in the order they were submitted, never two at once. */
  key: string
  /** One position of a cached session: may share a step with other sessions' decodes. */
  decode: boolean
  /** Ends the job with an error the runner threw. */
  fail(error: unknown): void
}

export type BatchSchedulerInit<J extends BatchJob> = {
  /**
   * Runs decode jobs of distinct sessions as one step (one ONNX Runtime run), and settles each;
   * false when nothing ran (every job failed before the run), so its time says nothing of a run's.
   */
  runDecode(jobs: J[]): Promise<boolean | void>
  /**
   * Runs the next slice of each prefill job (of distinct sessions, one run when there are several)
   * and settles each after its last slice; resolves with the jobs that finished.
   */
  runPrefill(jobs: J[]): Promise<J[]>
  /**
   * A prefill job's next slice: its positions, and whether it may share a run. When the oldest
   * prefill's may, the others that may and have as many positions share its run (no padding), up
   * to `maxBatch` jobs and `maxPrefillPositions` positions. @default every prefill runs alone
   */
  prefillSlice?(job: J): { positions: number; batchable: boolean }
  /** Most positions of one batched prefill run. @default 256 */
  maxPrefillPositions?: number
  /** Most decode rows in one step; 1 runs every job alone. @default 16 */
  maxBatch?: number
  /**
   * Longest wait for a session whose next decode step is due, as a share of the recent decode
   * runs' time (see `createBatchScheduler`); 0 runs whatever is waiting at once. @default 1.5
   */
  gatherShare?: number
  /** Clock in ms, for tests. @default performance.now */
  now?: () => number
}

export type BatchScheduler<J extends BatchJob> = {
  submit(job: J): void
  /** The session ended here: its next step is no longer expected. */
  forget(key: string): void
  /** Jobs waiting or running. */
  pending(): number
  /** Jobs waiting for a run: not the decode steps of the batch running now, nor the prefill whose slice is running. */
  waiting(): number
  /** Resolves once nothing is waiting or running. */
  idle(): Promise<void>
}

/**
 * Continuous batching on one shard: each round runs the decode steps of every session that has
 * one waiting (up to `maxBatch`) as one batch, then one slice of the oldest waiting prefill, with
 * the slices of the same length of other waiting prefills in the same run (prompts that arrive
 * together start together, and their sessions' decode steps then share runs from the first). A
 * session joins the batch with its first decode after its prefill and leaves when it stops
 * sending steps; a long prompt costs the other sessions one slice's time per round, not its whole
 * prefill. One run at a time: ONNX Runtime sessions are not re-entrant on every backend.
 *
 * Steps of a pipeline's sessions reach a shard one frame at a time. Run at once, a round would take
 * the first arrivals and leave the rest to the next round, each paying the weight read again; the
 * groups then drift apart at every shard and never merge. So a round with room waits a little for
 * the sessions whose next step is due: each session's next arrival is predicted from the interval
 * between its last two, and the round waits (until they are in, at most `gatherShare` times the
 * recent decode runs' time) for those predicted within that window. Sessions due later are not
 * waited for. A group that fell behind arrives while the run before it is running, about one run
 * later: the window of 1.5 runs merges it, once, and the merged group then needs no waiting. A
 * decode run costs far less than its rows run apart (ONNX Runtime's own timings, a 1.1 B model's
 * float32 shard of 8 layers on 2 cores: 41 ms for one row, 83 ms for 16), so a group merged saves
 * most of a run at every shard in every later round. Where hosts share cores the wait costs
 * nothing (the others run meanwhile); on a host of its own it idles the shard once.
 */
export function createBatchScheduler<J extends BatchJob>(init: BatchSchedulerInit<J>): BatchScheduler<J> {
  const maxBatch = Math.max(1, init.maxBatch ?? 16)
  const gatherShare = Math.max(0, init.gatherShare ?? 1.5)
  const now = init.now ?? (() => performance.now())
  const queue: J[] = []
  /** Per decoding session: when its last decode step arrived, and the smoothed interval between its arrivals. */
  const arrivals = new Map<string, { at: number; interval: number | undefined }>()
  /** Smoothed duration of a decode run, ms. */
  let runMs: number | undefined
  /** Wakes a round that is waiting for due sessions, when a job arrives. */
  let onArrival: (() => void) | undefined
  /** Set and cleared synchronously, so a job submitted as the pump finishes starts a new one. */
  let active = false
  let running: Promise<void> = Promise.resolve()
  const maxPrefillPositions = Math.max(1, init.maxPrefillPositions ?? 256)
  /** The prefills whose slices are running (each stays queued until its last slice). */
  let slicing: J[] = []

  /**
   * Per session, only its oldest job is eligible; of those, the decodes (up to maxBatch) and the
   * oldest prefill with the prefills whose next slices match its length.
   */
  const pick = (): { decodes: J[]; prefills: J[] } => {
    const seen = new Set<string>()
    const decodes: J[] = []
    const prefills: J[] = []
    let first: { positions: number; batchable: boolean } | undefined
    for (const job of queue) {
      if (seen.has(job.key)) continue
      seen.add(job.key)
      if (job.decode) {
        if (decodes.length < maxBatch) decodes.push(job)
      } else if (!prefills.length) {
        prefills.push(job)
        first = init.prefillSlice?.(job)
      } else if (first?.batchable && prefills.length < maxBatch && (prefills.length + 1) * first.positions <= maxPrefillPositions) {
        const next = init.prefillSlice!(job)
        if (next.batchable && next.positions === first.positions) prefills.push(job)
      }
    }
    return { decodes, prefills }
  }
  const remove = (job: J) => {
    const i = queue.indexOf(job)
    if (i >= 0) queue.splice(i, 1)
  }

  const pump = async () => {
    // The loop's last check and clearing `active` happen in one turn (one function, no await
    // between them): a job submitted after that check starts a new pump.
    try {
      while (queue.length) {
        // Sessions whose step just ended (or whose frame just arrived) submit their next one first,
        // so it shares this round rather than waiting for the next.
        await nextMacrotask()
        const { decodes, prefills } = await gather()
        if (decodes.length) {
          for (const j of decodes) remove(j)
          const started = now()
          let ran: boolean | void = true
          try {
            ran = await init.runDecode(decodes)
          } catch (e) {
            for (const j of decodes) j.fail(e)
          }
          const ms = now() - started
          if (ran !== false) runMs = runMs === undefined ? ms : 0.8 * runMs + 0.2 * ms
        }
        if (prefills.length) {
          let finished = prefills
          slicing = prefills
          try {
            finished = await init.runPrefill(prefills)
          } catch (e) {
            for (const j of prefills) j.fail(e)
          } finally {
            slicing = []
          }
          for (const j of finished) remove(j)
        }
      }
    } finally {
      active = false
    }
  }

  /**
   * Whether a session not waiting now has its next decode step predicted before `until`. A session
   * late by more than `window` has stopped sending steps (it ended, paused, or was evicted): it is
   * no longer expected, so it costs at most one wait.
   */
  const someDue = (until: number, window: number): boolean => {
    const queued = new Set(queue.map((j) => j.key))
    const t = now()
    for (const [key, a] of arrivals) {
      if (a.interval === undefined || queued.has(key)) continue
      const next = a.at + a.interval
      if (t > next + window) arrivals.delete(key)
      else if (next <= until) return true
    }
    return false
  }

  /**
   * The round's jobs (pick), after waiting while it has room and a session's step is due within
   * the window, until that step arrives or the window ends.
   */
  const gather = async (): Promise<ReturnType<typeof pick>> => {
    let picked = pick()
    if (maxBatch <= 1 || !gatherShare || runMs === undefined) return picked
    const window = gatherShare * runMs
    const deadline = now() + window
    while (picked.decodes.length && picked.decodes.length < maxBatch) {
      const left = deadline - now()
      if (left <= 0 || !someDue(deadline, window)) break
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left)
        function done() {
          clearTimeout(timer)
          onArrival = undefined
          resolve()
        }
        onArrival = done
      })
      picked = pick()
    }
    return picked
  }

  return {
    submit(job) {
      queue.push(job)
      if (maxBatch > 1 && job.decode) {
        const t = now()
        const last = arrivals.get(job.key)
        // The interval between arrivals, smoothed: half the last gap, half the interval before it.
        const interval = last && (last.interval === undefined ? t - last.at : (last.interval + t - last.at) / 2)
        arrivals.set(job.key, { at: t, interval })
      } else arrivals.delete(job.key)
      onArrival?.()
      if (active) return
      active = true
      running = pump()
    },
    forget(key) {
      arrivals.delete(key)
    },
    pending: () => queue.length,
    waiting: () => queue.length - slicing.filter((j) => queue.includes(j)).length,
    async idle() {
      while (active) await running
    },
  }
}

const setImmediateFn = (globalThis as { setImmediate?: (callback: () => void) => unknown }).setImmediate

/**
 * Resolves after every pending microtask and the I/O callbacks already due: setImmediate in Node
 * (microseconds, where setTimeout takes 1 ms or more), else a MessageChannel round trip, on a
 * fresh channel closed on arrival so nothing keeps a port open.
 */
function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => {
    if (setImmediateFn) {
      setImmediateFn(resolve)
      return
    }
    const { port1, port2 } = new MessageChannel()
    port2.onmessage = () => {
      port2.close()
      resolve()
    }
    port1.postMessage(null)
  })
}
