import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { generate } from './generate.ts'
import { loadShards } from './loadShards.ts'
import { KvBudgetError, ShardInputError, UnknownSessionError, type ShardSession } from './shardSession.ts'
import type { ModelSpec } from '../model/modelSpec.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'

// 100 positions per shard: 3 layers × (key + value) × 2 KV heads × 16 dims × 4 bytes each.
const BUDGET = 100 * 3 * 2 * 2 * 16 * 4

describe('shard sessions: KV cache per session, budget, bad input', () => {
  let fixture: Fixture
  let spec: ModelSpec
  let shards: ShardSession[]
  before(async () => {
    fixture = await loadFixture('tiny-llama')
    const loaded = await loadShards({
      source: fileModelSource(fixture.dir),
      runtime: nodeRuntime(),
      device: 'cpu',
      ranges: [{ start: 0, end: 3 }, { start: 3, end: 6 }],
      kvBudgetBytes: BUDGET,
    })
    spec = loaded.spec
    shards = loaded.shards
  })
  after(async () => {
    for (const s of shards) await s.dispose()
  })

  test('interleaved sessions each get the reference tokens', async () => {
    const [a, b] = fixture.prompts
    // Step two sessions alternately through the same shards.
    const run = (p: typeof a, id: string) => generate({ stages: shards, inputIds: p!.input_ids, maxNewTokens: p!.new_tokens, sessionId: id })
    const [ra, rb] = await Promise.all([run(a, 'A'), run(b, 'B')])
    assert.deepEqual(ra.outputIds, a!.greedy_new_ids)
    assert.deepEqual(rb.outputIds, b!.greedy_new_ids)
  })

  test('idle sessions are evicted, oldest first, when the KV budget is exceeded', async () => {
    const [first, second] = shards
    const ids = fixture.prompts[0]!.input_ids
    for (const id of ['old', 'mid', 'new']) {
      const h = await first!.forward(id, { tokens: ids.concat(ids) }, { reset: true })
      await second!.forward(id, { hidden: h.hidden! }, { reset: true })
    }
    assert.equal(first!.cachedLength('old'), 0, 'the oldest idle session was evicted')
    assert.equal(first!.cachedLength('new'), ids.length * 2)
    assert.ok(first!.kvBytes() <= BUDGET)
    // Continuing an evicted session is an error, never a silent restart with an empty cache.
    await assert.rejects(first!.forward('old', { tokens: [1] }), UnknownSessionError)
    for (const id of ['mid', 'new']) for (const s of shards) s.drop(id)
  })

  test("one owner filling the cache evicts its own idle sessions, not another owner's within its share", async () => {
    const first = shards[0]!
    const ids = fixture.prompts[0]!.input_ids.slice(0, 10)
    // The victim holds 20 positions, under its share (a quarter of 100); then an attacker opens 12 sessions of 10.
    for (const id of ['v1', 'v2']) await first.forward(id, { tokens: ids }, { reset: true, owner: 'victim' })
    for (let i = 0; i < 12; i++) await first.forward(`a${i}`, { tokens: ids }, { reset: true, owner: 'attacker' })
    assert.ok(first.kvBytes() <= BUDGET)
    assert.equal(first.cachedLength('v1'), 10, "the victim's oldest session survives")
    assert.equal(first.cachedLength('v2'), 10)
    assert.equal(first.cachedLength('a0'), 0, "the attacker's own oldest session went instead")
    assert.equal(first.cachedLength('a11'), 10)
    // An owner alone may still use the whole budget: nobody else needed the room.
    assert.equal(first.kvBytes(), BUDGET)
    for (const id of ['v1', 'v2', ...Array.from({ length: 12 }, (_, i) => `a${i}`)]) first.drop(id)
  })

  test('one session larger than the budget is refused with KvBudgetError, and the shard goes on', async () => {
    const long = Array.from({ length: 120 }, (_, i) => (i * 7) % spec.vocabSize)
    await assert.rejects(shards[0]!.forward('huge', { tokens: long }, { reset: true }), KvBudgetError)
    assert.equal(shards[0]!.cachedLength('huge'), 0)
    const p = fixture.prompts[1]!
    const r = await generate({ stages: shards, inputIds: p.input_ids, maxNewTokens: 4 })
    assert.deepEqual(r.outputIds, p.greedy_new_ids.slice(0, 4))
  })

  test('a wrong shape, a wrong input kind and an out-of-range token are clear errors', async () => {
    const start = { reset: true }
    await assert.rejects(shards[1]!.forward('x', { hidden: new Float32Array(spec.hiddenSize + 3) }, start), (e: Error) => e instanceof ShardInputError && /whole number of rows/.test(e.message))
    await assert.rejects(shards[1]!.forward('x', { tokens: [1, 2] }, start), (e: Error) => e instanceof ShardInputError && /takes a hidden state/.test(e.message))
    await assert.rejects(shards[0]!.forward('x', { hidden: new Float32Array(spec.hiddenSize) }, start), /takes token ids/)
    await assert.rejects(shards[0]!.forward('x', { tokens: [spec.vocabSize] }, start), /token id out of range/)
    await assert.rejects(shards[0]!.forward('x', { tokens: [] }, start), /empty input/)
    await assert.rejects(shards[0]!.forward('x', { tokens: Array(spec.maxPositions + 1).fill(1) }, start), /exceeds the model's/)
  })
})
