import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodeOrbanMessage, parseOrbanMessage } from '../orban/orbanMessages.ts'
import { createServedSampler } from './servedSampler.ts'

test('the sampler gives the rate since the previous sample and the cumulative counters, which a TASK_PROGRESS carries as `served`', () => {
  const clock = { t: 0 }
  const stats = { processedTokens: 0, steps: 0, sessions: 0, computeMs: 0 }
  const sampler = createServedSampler(() => stats, () => clock.t)
  assert.deepEqual(sampler.sample(), { throughput: null, served: { tokens: 0, steps: 0, sessions: 0 } })
  Object.assign(stats, { processedTokens: 120, steps: 30, sessions: 2 })
  clock.t = 4000
  const s = sampler.sample()
  assert.deepEqual(s, { throughput: 30, served: { tokens: 120, steps: 30, sessions: 2 } })
  const text = encodeOrbanMessage('TASK_PROGRESS', { task_id: 't', progress: 1, stage: 'serving', metrics: { gpu_utilization: 0, memory_used_gb: 0, throughput_tokens_per_sec: s.throughput }, served: s.served })
  const parsed = parseOrbanMessage(text)
  assert.equal(parsed.type, 'TASK_PROGRESS')
  if (parsed.type !== 'TASK_PROGRESS') return
  assert.deepEqual(parsed.served, { tokens: 120, steps: 30, sessions: 2 })
  assert.equal(parsed.metrics.throughput_tokens_per_sec, 30)
  // spec field names and types untouched; the extension is optional and bounded to unsigned integers
  assert.throws(() => encodeOrbanMessage('TASK_PROGRESS', { task_id: 't', progress: 1, stage: 'serving', metrics: { gpu_utilization: 0, memory_used_gb: 0, throughput_tokens_per_sec: 1 }, served: { tokens: -1, steps: 0, sessions: 0 } }))
  assert.equal((parseOrbanMessage(encodeOrbanMessage('TASK_PROGRESS', { task_id: 't', progress: 1, stage: 'serving', metrics: { gpu_utilization: 0, memory_used_gb: 0, throughput_tokens_per_sec: 1 } })) as { served?: unknown }).served, undefined)
  // counters that went back (a restarted service) give rate 0, not a negative one
  stats.processedTokens = 10
  clock.t = 5000
  assert.equal(sampler.sample().throughput, 0)
})
