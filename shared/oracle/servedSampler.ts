import type { ForwardServiceStats } from '../mesh/forwardService.ts'
import type { OrbanServedCounters } from '../orban/orbanMessages.ts'

/** One live report of what a shard served: TASK_PROGRESS's throughput and shardmesh's `served` counters. */
export type ServedSample = {
  /** Tokens/s since the previous sample; null on the first. */
  throughput: number | null
  /** Cumulative since the service started (the Oracle takes the rise between reports). */
  served: OrbanServedCounters
}

export type ServedSampler = { sample(): ServedSample }

/**
 * Samples a forward service's counters for the agent's periodic TASK_PROGRESS: the rate over the
 * window since the previous sample, and the counters whole (so a lost report loses no work).
 */
export function createServedSampler(stats: () => Pick<ForwardServiceStats, 'processedTokens' | 'steps' | 'sessions'>, now: () => number = () => performance.now()): ServedSampler {
  let last: { tokens: number; at: number } | undefined
  return {
    sample() {
      const s = stats()
      const at = now()
      const seconds = last ? (at - last.at) / 1000 : 0
      const throughput = last && seconds > 0 ? Math.round((Math.max(0, s.processedTokens - last.tokens) / seconds) * 100) / 100 : null
      last = { tokens: s.processedTokens, at }
      return { throughput, served: { tokens: s.processedTokens, steps: s.steps, sessions: s.sessions } }
    },
  }
}
