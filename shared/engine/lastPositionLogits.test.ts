import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadShards } from './loadShards.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, logitTolerance, maxAbsDiff } from '../../testing/fixtures.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'

// The LM head is the largest matrix of a small model: a prefill that multiplies every prompt
// position by it does T times the work generation needs.
test('the last shard computes the last position\'s logits only, unless every position\'s is asked for', async () => {
  const fixture = await loadFixture('docs-llama-7m')
  const { spec, shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 3 }, { start: 3, end: 8 }] })
  try {
    const V = spec.vocabSize
    const p = fixture.prompts[0]!
    const T = p.input_ids.length
    const ref = (await fixture.reference(['p0.logits'])).get('p0.logits')!
    const prefill = async (allLogits: boolean) => {
      const h = await shards[0]!.forward(`s-${allLogits}`, { tokens: p.input_ids }, { reset: true })
      return shards[1]!.forward(`s-${allLogits}`, { hidden: h.hidden! }, { reset: true, allLogits })
    }
    const last = await prefill(false)
    assert.equal(last.logits!.length, V)
    assert.equal(last.length, T)
    assert.ok(maxAbsDiff(last.logits!, ref.subarray((T - 1) * V)) < logitTolerance('docs-llama-7m'))
    const all = await prefill(true)
    assert.equal(all.logits!.length, T * V)
    assert.ok(maxAbsDiff(all.logits!, ref) < logitTolerance('docs-llama-7m'))
    // Decode steps after a last-row prefill go on from the full cache.
    const next = await shards[0]!.forward('s-false', { tokens: [p.greedy_new_ids[0]!] })
    const step = await shards[1]!.forward('s-false', { hidden: next.hidden! })
    assert.equal(step.logits!.length, V)
    assert.equal(step.length, T + 1)
  } finally {
    for (const s of shards) await s.dispose()
  }
})
