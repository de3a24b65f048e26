import { getAddress, type Address } from 'viem'

// The RewardPool's split, reproduced exactly (contracts/RewardPool.sol):
//   score(a)  = processedTokens*tokenWeight + taskCount*taskWeight + uptimeSeconds*uptimeWeight + avgLatencyInv*latencyWeight
//   reward(a) = epochReward * score(a) / Σscore   (integer division), in the order agents were first reported;
//   the last agent with a non-zero score gets epochReward minus everything paid before it.

export type RewardWeights = { tokenWeight: bigint; taskWeight: bigint; uptimeWeight: bigint; latencyWeight: bigint }

/** The pool's weights at deploy (out of 100; the owner may change them with setRewardFormula). */
export const DEFAULT_REWARD_WEIGHTS: RewardWeights = { tokenWeight: 40n, taskWeight: 25n, uptimeWeight: 20n, latencyWeight: 15n }

/** What the oracle reports for one agent in one epoch. */
export type ContributionFigures = {
  processedTokens: bigint
  uptimeSeconds: bigint
  /** Higher is faster: see `contributionFromMetrics`. */
  avgLatencyInv: bigint
  taskCount: bigint
  /** Stored on chain, not scored. */
  responseScore: bigint
}

/** The pool's per-report bounds (a report above one reverts). */
export const CONTRIBUTION_LIMITS = {
  taskCount: 10_000n,
  uptimeSeconds: 604_800n,
  responseScore: 1_000_000n,
  processedTokens: 100_000_000n,
  avgLatencyInv: 10_000n,
} as const

export function contributionScore(c: Pick<ContributionFigures, 'processedTokens' | 'uptimeSeconds' | 'avgLatencyInv' | 'taskCount'>, w: RewardWeights = DEFAULT_REWARD_WEIGHTS): bigint {
  return c.processedTokens * w.tokenWeight + c.taskCount * w.taskWeight + c.uptimeSeconds * w.uptimeWeight + c.avgLatencyInv * w.latencyWeight
}

/**
 * Each agent's share of an epoch's reward, to the wei. `reports` in the order they reached the
 * chain; several reports of one agent add up (the agent keeps the place of its first report).
 */
export function computeEpochRewards(p: {
  totalReward: bigint
  reports: ReadonlyArray<{ agent: Address } & Pick<ContributionFigures, 'processedTokens' | 'uptimeSeconds' | 'avgLatencyInv'> & Partial<Pick<ContributionFigures, 'taskCount'>>>
  weights?: RewardWeights
}): Map<Address, bigint> {
  const totals = new Map<Address, { processedTokens: bigint; uptimeSeconds: bigint; avgLatencyInv: bigint; taskCount: bigint }>()
  for (const r of p.reports) {
    const a = getAddress(r.agent)
    const t = totals.get(a) ?? { processedTokens: 0n, uptimeSeconds: 0n, avgLatencyInv: 0n, taskCount: 0n }
    t.processedTokens += r.processedTokens
    t.uptimeSeconds += r.uptimeSeconds
    t.avgLatencyInv += r.avgLatencyInv
    t.taskCount += r.taskCount ?? 0n
    totals.set(a, t)
  }
  const scores = [...totals].map(([agent, c]) => [agent, contributionScore(c, p.weights)] as const)
  const totalScore = scores.reduce((s, [, v]) => s + v, 0n)
  const rewards = new Map<Address, bigint>()
  if (totalScore === 0n) return rewards
  const last = scores.findLastIndex(([, v]) => v > 0n)
  let paid = 0n
  scores.forEach(([agent, score], i) => {
    if (score === 0n) return
    const share = i === last ? p.totalReward - paid : (p.totalReward * score) / totalScore
    rewards.set(agent, share)
    paid += share
  })
  return rewards
}

const clamp = (v: bigint, max: bigint) => (v < 0n ? 0n : v > max ? max : v)

/**
 * An epoch's contribution from an agent's metrics (the deltas of its `/api/v1/metrics` counters
 * over the epoch). avgLatencyInv = 10000 − average latency in ms, floored at 0 (the upstream
 * Oracle's rule); every figure is clamped to the pool's bounds so a report never reverts on them.
 */
export function contributionFromMetrics(m: { tokensProcessed: number | bigint; avgLatencyMs: number; uptimeSeconds: number; requestCount: number }): ContributionFigures {
  const latencyInv = m.avgLatencyMs > 0 ? BigInt(Math.floor(Math.max(0, 10_000 - m.avgLatencyMs))) : 0n
  return {
    processedTokens: clamp(BigInt(m.tokensProcessed), CONTRIBUTION_LIMITS.processedTokens),
    uptimeSeconds: clamp(BigInt(Math.floor(m.uptimeSeconds)), CONTRIBUTION_LIMITS.uptimeSeconds),
    avgLatencyInv: clamp(latencyInv, CONTRIBUTION_LIMITS.avgLatencyInv),
    taskCount: clamp(BigInt(Math.floor(m.requestCount)), CONTRIBUTION_LIMITS.taskCount),
    responseScore: 0n,
  }
}
