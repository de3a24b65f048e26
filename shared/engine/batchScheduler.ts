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
  /** Runs decode jobs of distinct sessions as one step (one ONNX Runtime run), and settles each. */
  runDecode(jobs: J[]): Promise<void>
  /** Runs the next slice of a prefill job and settles it after the last; true once it is finished. */
  runPrefillSlice(job: J): Promise<boolean>
  /** Most decode rows in one step; 1 runs every job alone. @default 16 */
  maxBatch?: number
}

export type BatchScheduler<J extends BatchJob> = {
  submit(job: J): void
  /** Jobs waiting or running. */
  pending(): number
  /** Jobs waiting for a run: not the decode steps of the batch running now, nor the prefill whose slice is running. */
  waiting(): number
  /** Resolves once nothing is waiting or running. */
  idle(): Promise<void>
}

/**
 * Continuous batching on one shard: each round runs the decode steps of every session that has
 * one waiting (up to `maxBatch`) as one batch, then one slice of the oldest waiting prefill. A
 * session joins the batch with its first decode after its prefill and leaves when it stops
 * sending steps; a long prompt costs the other sessions one slice's time per round, not its whole
 * prefill. One run at a time: ONNX Runtime sessions are not re-entrant on every backend.
 */
export function createBatchScheduler<J extends BatchJob>(init: BatchSchedulerInit<J>): BatchScheduler<J> {
  const maxBatch = Math.max(1, init.maxBatch ?? 16)
  const queue: J[] = []
  /** Set and cleared synchronously, so a job submitted as the pump finishes starts a new one. */
  let active = false
  let running: Promise<void> = Promise.resolve()
  /** The prefill whose slice is running (it stays queued until its last slice). */
  let slicing: J | undefined

  /** Per session, only its oldest job is eligible; of those, the decodes (up to maxBatch) and the oldest prefill. */
  const pick = (): { decodes: J[]; prefill: J | undefined } => {
    const seen = new Set<string>()
    const decodes: J[] = []
    let prefill: J | undefined
    for (const job of queue) {
      if (seen.has(job.key)) continue
      seen.add(job.key)
      if (!job.decode) prefill ??= job
      else if (decodes.length < maxBatch) decodes.push(job)
    }
    return { decodes, prefill }
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
        const { decodes, prefill } = pick()
        if (decodes.length) {
          for (const j of decodes) remove(j)
          try {
            await init.runDecode(decodes)
          } catch (e) {
            for (const j of decodes) j.fail(e)
          }
        }
        if (prefill) {
          let finished = true
          slicing = prefill
          try {
            finished = await init.runPrefillSlice(prefill)
          } catch (e) {
            prefill.fail(e)
          } finally {
            slicing = undefined
          }
          if (finished) remove(prefill)
        }
      }
    } finally {
      active = false
    }
  }

  return {
    submit(job) {
      queue.push(job)
      if (active) return
      active = true
      running = pump()
    },
    pending: () => queue.length,
    waiting: () => queue.length - (slicing && queue.includes(slicing) ? 1 : 0),
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
