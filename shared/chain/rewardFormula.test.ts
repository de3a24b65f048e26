import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { computeEpochRewards, contributionFromMetrics, contributionScore, CONTRIBUTION_LIMITS, DEFAULT_REWARD_WEIGHTS } from './rewardFormula.ts'

import { getAddress } from 'viem'

const A = getAddress('0x00000000000000000000000000000000000000aa')
const B = getAddress('0x00000000000000000000000000000000000000bb')
const C = getAddress('0x00000000000000000000000000000000000000cc')
const zero = { processedTokens: 0n, uptimeSeconds: 0n, avgLatencyInv: 0n }

test('score weights tokens 40, tasks 25, uptime 20, latency 15', () => {
  assert.equal(contributionScore({ processedTokens: 1n, taskCount: 1n, uptimeSeconds: 1n, avgLatencyInv: 1n }), 100n)
  assert.equal(contributionScore({ processedTokens: 10n, taskCount: 0n, uptimeSeconds: 0n, avgLatencyInv: 0n }), 400n)
  assert.deepEqual(DEFAULT_REWARD_WEIGHTS, { tokenWeight: 40n, taskWeight: 25n, uptimeWeight: 20n, latencyWeight: 15n })
})

test('a worked split: floors for all but the last scoring agent, which gets the remainder', () => {
  // scores 400 and 800 of 1000 wei: 333 (floor of 333.3) and 1000 - 333 = 667
  const r = computeEpochRewards({ totalReward: 1000n, reports: [{ agent: A, ...zero, processedTokens: 10n }, { agent: C, ...zero }, { agent: B, ...zero, processedTokens: 20n }] })
  assert.deepEqual([...r], [[A, 333n], [B, 667n]])
  // several reports of one agent add up, in the order of its first report
  const r2 = computeEpochRewards({ totalReward: 1000n, reports: [{ agent: B, ...zero, uptimeSeconds: 1n }, { agent: A, ...zero, uptimeSeconds: 1n }, { agent: B, ...zero, uptimeSeconds: 2n }] })
  assert.deepEqual([...r2], [[B, 750n], [A, 250n]])
  assert.equal(computeEpochRewards({ totalReward: 5n, reports: [{ agent: A, ...zero }] }).size, 0)
})

test('every wei is paid and each share is within one wei of proportional', () => {
  const figure = fc.bigInt({ min: 0n, max: 100_000n })
  const report = fc.record({ agent: fc.constantFrom(A, B, C), processedTokens: figure, uptimeSeconds: figure, avgLatencyInv: figure, taskCount: figure })
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 10n ** 24n }), fc.array(report, { maxLength: 8 }), (total, reports) => {
      const r = computeEpochRewards({ totalReward: total, reports })
      const scores = new Map<string, bigint>()
      for (const x of reports) scores.set(x.agent, (scores.get(x.agent) ?? 0n) + contributionScore(x))
      const sum = [...scores.values()].reduce((a, b) => a + b, 0n)
      if (sum === 0n) return assert.equal(r.size, 0)
      assert.equal([...r.values()].reduce((a, b) => a + b, 0n), total)
      for (const [agent, share] of r) {
        const exact = (total * scores.get(agent)!) / sum
        assert.ok(share >= exact && share - exact <= BigInt(scores.size), `${share} vs ${exact}`)
      }
    }),
  )
})

test('contributionFromMetrics: latency inverse per the upstream Oracle, figures clamped to the pool bounds', () => {
  assert.deepEqual(contributionFromMetrics({ tokensProcessed: 1200, avgLatencyMs: 250.7, uptimeSeconds: 61.9, requestCount: 4 }), {
    processedTokens: 1200n, uptimeSeconds: 61n, avgLatencyInv: 9749n, taskCount: 4n, responseScore: 0n,
  })
  const huge = contributionFromMetrics({ tokensProcessed: 10n ** 12n, avgLatencyMs: 20_000, uptimeSeconds: 1e9, requestCount: 1e6 })
  assert.deepEqual(huge, { processedTokens: CONTRIBUTION_LIMITS.processedTokens, uptimeSeconds: CONTRIBUTION_LIMITS.uptimeSeconds, avgLatencyInv: 0n, taskCount: CONTRIBUTION_LIMITS.taskCount, responseScore: 0n })
  assert.equal(contributionFromMetrics({ tokensProcessed: 0, avgLatencyMs: 0, uptimeSeconds: 0, requestCount: 0 }).avgLatencyInv, 0n)
})
