import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createBatchScheduler, type BatchJob } from './batchScheduler.ts'

type Job = BatchJob & { resolve(): void; at: number }

/**
 * Sessions stepping through a shard as through one stage of a pipeline: each run takes `runMs`;
 * after its step a session comes back `awayMs` later (the other stages). Returns the rows of every
 * decode run.
 */
async function pipeline(opts: {
  gatherShare: number
  /** `steps` overrides the common count; `forget: false` stops without telling the scheduler (as a cached session that went quiet). */
  groups: Array<{ keys: string[]; startMs: number; steps?: number; forget?: boolean }>
  runMs: number
  awayMs: number
  steps: number
  /** Each run's sessions and how long its last-arrived job waited for it, ms. */
  onRun?: (keys: string[], waitedMs: number) => void
}): Promise<number[]> {
  const widths: number[] = []
  const scheduler = createBatchScheduler<Job>({
    gatherShare: opts.gatherShare,
    async runDecode(jobs) {
      widths.push(jobs.length)
      opts.onRun?.(jobs.map((j) => j.key), performance.now() - Math.max(...jobs.map((j) => j.at)))
      await sleep(opts.runMs)
      for (const j of jobs) j.resolve()
    },
    async runPrefill(jobs) {
      return jobs
    },
  })
  const session = async (key: string, g: (typeof opts.groups)[number]) => {
    await sleep(g.startMs)
    for (let i = 0; i < (g.steps ?? opts.steps); i++) {
      await new Promise<void>((resolve, reject) => scheduler.submit({ key, decode: true, fail: reject, resolve, at: performance.now() }))
      await sleep(opts.awayMs)
    }
    if (g.forget !== false) scheduler.forget(key)
  }
  await Promise.all(opts.groups.flatMap((g) => g.keys.map((k) => session(k, g))))
  return widths
}

describe('batch scheduler: gathering the steps that are due', () => {
  // Two groups of sessions, the second arriving while the first one's run is running: left alone
  // they stay two groups, each paying a run, in every round.
  const groups = [
    { keys: ['a', 'b', 'c'], startMs: 0 },
    { keys: ['d', 'e'], startMs: 40 },
  ]

  test('a group one run behind another is merged with it, and they then share every run', async () => {
    const widths = await pipeline({ gatherShare: 1.5, groups, runMs: 60, awayMs: 120, steps: 12 })
    // Once merged they stay merged; the group that started later may have one step left alone at the end.
    const merged = widths.indexOf(5)
    assert.ok(merged >= 0 && merged <= widths.length - 4, `the five sessions merged with rounds to spare: ${widths.join(',')}`)
    assert.ok(widths.slice(merged, -1).every((w) => w === 5), `and then shared every run: ${widths.join(',')}`)
  })

  test('without gathering the two groups stay apart', async () => {
    const widths = await pipeline({ gatherShare: 0, groups, runMs: 60, awayMs: 120, steps: 12 })
    assert.ok(widths.slice(-6).every((w) => w < 5), `runs stay split: ${widths.join(',')}`)
  })

  test('a session due much later is not waited for', async () => {
    // One session every 60 ms run + 600 ms away, another started 300 ms later: waiting for it would
    // cost more than the window allows, so each runs alone, at once.
    const t0 = performance.now()
    const widths = await pipeline({
      gatherShare: 1.5,
      groups: [
        { keys: ['x'], startMs: 0 },
        { keys: ['y'], startMs: 300 },
      ],
      runMs: 20,
      awayMs: 600,
      steps: 4,
    })
    const tookMs = performance.now() - t0
    assert.deepEqual(widths, [1, 1, 1, 1, 1, 1, 1, 1])
    // 4 steps of (20 ms run + 600 ms away) plus y's 300 ms start: no run waited the window.
    assert.ok(tookMs < 4 * 620 + 300 + 250, `took ${tookMs} ms`)
  })

  test('a session that went quiet without ending costs at most one wait', async () => {
    // a and b step together; b stops after 4 steps but stays known (its cache kept, say): a's
    // rounds after b's last step must not each wait the window (1.5 runs, 60 ms) for it. (Before
    // that, on a loaded machine, one may wait for the other while both still step: that is the point.)
    let waits: number[] = []
    await pipeline({
      gatherShare: 1.5,
      groups: [
        { keys: ['a'], startMs: 0 },
        { keys: ['b'], startMs: 0, steps: 4, forget: false },
      ],
      runMs: 40,
      awayMs: 80,
      steps: 14,
      onRun: (keys, waitedMs) => {
        if (keys.includes('b')) waits = []
        else waits.push(waitedMs)
      },
    })
    const long = waits.filter((w) => w > 30)
    assert.ok(long.length <= 1, `a waited for b in ${long.length} rounds: ${waits.map((w) => w.toFixed(0)).join(',')}`)
  })
})
