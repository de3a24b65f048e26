import type { Logger } from '../../../shared/logger.ts'
import type { OracleStore, PruneResult } from './oracleStore.ts'
import type { OrbanStore } from '../orban/orbanStore.ts'

export type RowPrunerInit = {
  store: OracleStore
  orbanStore?: Pick<OrbanStore, 'prune'>
  logger: Logger
  /** Rows older than this go: proofs, metrics totals, counters of silent agents, budgets of gone nodes, Orban history. @default 30 days */
  retentionMs?: number
  /**
   * Replay-guard entries older than this go. Any value above the signed-timestamp window is safe:
   * a timestamp older than the window is refused anyway, so a later message still has to be newer.
   * @default 86_400 (a day)
   */
  replayRetentionS?: number
  /** Per-epoch rows of this epoch and later are kept at any age (the reward reporter has not reported them). @default () => Infinity */
  keepFromEpoch?: () => number
  /** @default 3_600_000 (hourly) */
  intervalMs?: number
  /** Clock, unix ms. @default Date.now */
  now?: () => number
}

export type RowPruner = {
  /** One pass now. */
  prune(): Promise<PruneResult & { orbanMetrics: number; orbanPow: number }>
  /** A pass now, then every `intervalMs`. */
  start(): void
  stop(): void
}

const DAY_MS = 86_400_000

/** Keeps the Oracle's tables bounded: deletes old rows on a schedule, never what a restart or an unreported epoch needs. */
export function createRowPruner(init: RowPrunerInit): RowPruner {
  const now = init.now ?? Date.now
  const retentionMs = init.retentionMs ?? 30 * DAY_MS
  const replayRetentionS = init.replayRetentionS ?? 86_400
  let timer: ReturnType<typeof setInterval> | undefined

  async function prune() {
    const t = now()
    const keep = init.keepFromEpoch?.() ?? Number.POSITIVE_INFINITY
    const r = await init.store.prune({ before: t - retentionMs, epochBelow: Number.isFinite(keep) ? keep : Number.MAX_SAFE_INTEGER, replayBeforeS: Math.floor(t / 1000) - replayRetentionS })
    const o = (await init.orbanStore?.prune(t - retentionMs)) ?? { metrics: 0, pow: 0 }
    const out = { ...r, orbanMetrics: o.metrics, orbanPow: o.pow }
    if (Object.values(out).some((n) => n > 0)) init.logger.info(out, 'oracle: old rows pruned')
    return out
  }

  return {
    prune,
    start() {
      const run = () => void prune().catch((e: Error) => init.logger.warn({ err: e.message }, 'oracle: pruning old rows failed; retrying next round'))
      run()
      timer = setInterval(run, init.intervalMs ?? 3_600_000)
      timer.unref()
    },
    stop() {
      clearInterval(timer)
    },
  }
}
