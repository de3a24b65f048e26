import type { Logger } from '../logger.ts'
import { readBrowserMemory } from './browserMemory.ts'
import { launchFarmPage, type FarmPage, type FarmPageInit, type PageState } from './farmPage.ts'
import { CRASH_LOOP_FAILURES, restartBackoffMs } from './restartBackoff.ts'
import type { FarmWallet } from './farmWallet.ts'

export type WorkerState = 'launching' | 'running' | 'backoff' | 'stopping' | 'stopped'

/** One worker as the table and `GET /status` show it. */
export type WorkerSnapshot = {
  worker: number
  state: WorkerState
  /** The contributor's phase in the page (`serving`, `loading`, …). */
  phase?: string
  peerId?: string
  range?: { start: number; end: number }
  tokensForwarded: number
  tokensPerSecond: number
  restarts: number
  /** Failures since the page last served for a while; from CRASH_LOOP_FAILURES on, `crashLoop` is set. */
  failuresInARow: number
  crashLoop: boolean
  lastFailure?: string
  pageRssBytes?: number
  browserRssBytes?: number
  /** Epoch ms of the next launch while backing off. */
  nextLaunchAt?: number
  /** Earnings the Oracle booked for the page (its EARNINGS_RECORDs), USD. */
  earningsUsd?: number
  /** The running browser's DevTools WebSocket URL (`--devtools`), for attaching to the page. */
  devtoolsUrl?: string
  /** The worker's wallet its page is bound to (the farm wallet's), once bound. */
  wallet?: string
}

export type SuperviseWorkerInit = FarmPageInit & {
  logger: Logger
  /** No answer from the page's status hook for this long: it hangs and is restarted. @default 60000 */
  hangMs?: number
  /** How often the page is read. @default 1000 */
  pollMs?: number
  onChange?: (s: WorkerSnapshot) => void
  /** Binds each page's peer to the worker's wallet once it serves, so the Oracle credits its work there. */
  wallet?: FarmWallet
}

export type SupervisedWorker = { snapshot(): WorkerSnapshot; stop(): Promise<void> }

/** A page in the error phase that lost its GPU or its memory: named in the log, restarted like any error. */
const classify = (error: string) => (/device (was )?lost|GPUDevice.*lost/i.test(error) ? 'GPU device lost' : /out of memory|OOM|allocation failed/i.test(error) ? 'out of memory' : 'error')

/** A failure after serving this long is not part of a crash loop. */
const HEALTHY_MS = 60_000

/**
 * Keeps one worker's page contributing: launches it, reads its state every second (the heartbeat),
 * and restarts it, backing off 1, 2, 4 … 60 s, when it crashes, the browser goes, it stops answering,
 * or it reports an error (a lost GPU device, out of memory). A crash loop is logged and shown, and
 * still retried at 60 s: a farm runs unattended and the cause (an Oracle down) may pass.
 */
export function superviseWorker(init: SuperviseWorkerInit): SupervisedWorker {
  const hangMs = init.hangMs ?? 60_000
  const pollMs = init.pollMs ?? 1000
  let log = init.logger.child({ worker: init.worker })
  const snap: WorkerSnapshot = { worker: init.worker, state: 'launching', tokensForwarded: 0, tokensPerSecond: 0, restarts: 0, failuresInARow: 0, crashLoop: false }
  let current: FarmPage | undefined
  let stopping = false
  let wake: (() => void) | undefined
  const sleep = (ms: number) => new Promise<void>((r) => {
    const t = setTimeout(r, ms)
    wake = () => (clearTimeout(t), r())
  })
  const change = (patch: Partial<WorkerSnapshot>) => {
    Object.assign(snap, patch)
    init.onChange?.({ ...snap })
  }

  const observe = (s: PageState) => {
    if (s.peerId && s.peerId !== snap.peerId) {
      log = init.logger.child({ worker: init.worker, peerId: s.peerId })
      log.info({ profile: init.profileDir }, 'worker identity')
    }
    if (s.phase !== snap.phase || s.range?.start !== snap.range?.start || s.range?.end !== snap.range?.end) log.info({ phase: s.phase, range: s.range }, 'worker phase')
    change({ phase: s.phase, peerId: s.peerId ?? snap.peerId, range: s.range, tokensForwarded: s.tokensForwarded, tokensPerSecond: s.rate.at(-1)?.tokensPerSecond ?? 0, earningsUsd: s.earningsUsd })
  }

  /** The peer bound to the worker's wallet, and when binding may be tried again after a failure. */
  let bound: string | undefined
  let binding = false
  let retryBindAt = 0
  const bindWallet = (page: FarmPage, s: PageState) => {
    const peerId = s.peerId
    if (!init.wallet || !peerId || s.phase !== 'serving' || bound === peerId || binding || Date.now() < retryBindAt) return
    binding = true
    init.wallet
      .bind(init.worker, { peerId, signBinding: page.signBinding })
      .then((r) => {
        bound = peerId
        change({ wallet: r.wallet })
        if (r.sent) log.info({ wallet: r.wallet }, 'worker bound to its wallet')
      })
      .catch((e: Error) => {
        retryBindAt = Date.now() + 60_000
        log.warn({ err: e.message.split('\n')[0] }, 'binding the worker to its wallet failed; retrying in 60 s')
      })
      .finally(() => (binding = false))
  }

  /** Runs one launch until it fails (a reason) or the farm stops (undefined). */
  async function runOnce(): Promise<{ reason: string; servedMs: number } | undefined> {
    change({ state: 'launching', phase: undefined, nextLaunchAt: undefined, devtoolsUrl: undefined })
    const page = (current = await launchFarmPage(init))
    change({ state: 'running', devtoolsUrl: page.devtoolsUrl })
    let failure: string | undefined
    void page.ended.then((r) => (failure ??= r, wake?.()))
    let lastAnswer = Date.now()
    let servingSince: number | undefined
    while (!stopping && !failure) {
      const s = await page.read(Math.min(5000, hangMs))
      if (s) {
        lastAnswer = Date.now()
        observe(s)
        bindWallet(page, s)
        if (s.phase === 'serving') servingSince ??= Date.now()
        // The error phase (the Oracle connection ended, the start failed), or an engine fault (the engine
        // worker died: a lost GPU device, out of memory), which leaves the phase as it was. A dropped
        // Oracle connection is not one: the page reconnects by itself.
        if (s.phase === 'error' || s.error?.startsWith('the engine worker failed')) failure = `${classify(s.error ?? '')}: ${s.error ?? 'the page reported an error'}`
      } else if (Date.now() - lastAnswer > hangMs) failure = `no heartbeat for ${Math.round(hangMs / 1000)} s (hung)`
      const mem = await readBrowserMemory(init.profileDir).catch(() => undefined)
      if (mem) change({ pageRssBytes: mem.pageRssBytes, browserRssBytes: mem.browserRssBytes })
      if (!stopping && !failure) await sleep(pollMs)
    }
    if (failure) return { reason: failure, servedMs: servingSince ? Date.now() - servingSince : 0 }
    return undefined
  }

  const loop = (async () => {
    while (!stopping) {
      let failed: { reason: string; servedMs: number } | undefined
      try {
        failed = await runOnce()
      } catch (e) {
        failed = { reason: `launch failed: ${(e as Error).message.split('\n')[0]}`, servedMs: 0 }
      }
      if (!failed || stopping) break
      await current?.close()
      current = undefined
      const failuresInARow = failed.servedMs > HEALTHY_MS ? 1 : snap.failuresInARow + 1
      const delay = restartBackoffMs(failuresInARow)
      const crashLoop = failuresInARow >= CRASH_LOOP_FAILURES
      change({ state: 'backoff', restarts: snap.restarts + 1, failuresInARow, crashLoop, lastFailure: failed.reason, nextLaunchAt: Date.now() + delay, pageRssBytes: undefined, browserRssBytes: undefined, devtoolsUrl: undefined })
      if (crashLoop) log.error({ reason: failed.reason, failuresInARow, retryInMs: delay }, 'worker keeps failing: check its log, the Oracle and the GPU')
      else log.warn({ reason: failed.reason, failuresInARow, retryInMs: delay }, 'worker failed: restarting')
      await sleep(delay)
    }
  })()

  return {
    snapshot: () => ({ ...snap }),
    async stop() {
      stopping = true
      change({ state: 'stopping' })
      wake?.()
      await loop
      // A launch still in flight when the stop came has finished by now: tell the Oracle, close.
      const leftOracle = (await current?.stop()) ?? false
      current = undefined
      change({ state: 'stopped' })
      log.info({ leftOracle }, leftOracle ? 'worker stopped: it told the Oracle it leaves' : 'worker stopped (its page did not answer: the Oracle drops it when its heartbeat stops)')
    },
  }
}
