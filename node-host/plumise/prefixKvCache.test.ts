import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { loadFixture, maxAbsDiff } from '../../testing/fixtures.ts'
import { createPrefixKvCache } from './prefixKvCache.ts'
import { requestPrefix } from './requestPrefix.ts'

let shards: ShardSession[]
let ids: number[]

before(async () => {
  const fixture = await loadFixture('docs-llama-7m')
  ids = [...fixture.prompts[0]!.input_ids, ...fixture.prompts[0]!.greedy_new_ids.slice(0, 4)]
  ;({ shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 3 }, { start: 3, end: 8 }] }))
})
after(async () => {
  for (const s of shards ?? []) await s.dispose()
})

test('request ids group by upstream\'s <uuid hex>_s<step>', () => {
  assert.equal(requestPrefix('0123abcd_s0'), '0123abcd')
  assert.equal(requestPrefix('0123abcd_s17'), '0123abcd')
  assert.equal(requestPrefix('plain-id'), 'plain-id')
  assert.equal(requestPrefix('_s3'), '_s3')
})

test('step after step, cached outputs equal a full recompute and only new positions are computed', async () => {
  const cached = createPrefixKvCache({ shard: shards[0]! })
  const full = createPrefixKvCache({ shard: shards[0]!, enabled: false })
  for (let n = ids.length - 4; n <= ids.length; n++) {
    const a = await cached.run(`g_s${n}`, { tokens: ids.slice(0, n) })
    const b = await full.run(`f_s${n}`, { tokens: ids.slice(0, n) })
    assert.equal(a.hidden!.length, n * 256)
    assert.ok(maxAbsDiff(a.hidden!, b.hidden!) < 1e-4, `step ${n}`)
    assert.equal(a.computed, n === ids.length - 4 ? n : 1)
    assert.equal(b.computed, n)
  }
  assert.deepEqual(cached.stats(), { hits: 4, misses: 1, entries: 1 })
})

test('a byte budget drops the least recently used generations, never the one in use', async () => {
  const cache = createPrefixKvCache({ shard: shards[0]!, maxBytes: 1 })
  await cache.run('a_s0', { tokens: ids.slice(0, 5) })
  await cache.run('b_s0', { tokens: ids.slice(0, 5) })
  assert.equal(cache.stats().entries, 1)
  const r = await cache.run('b_s1', { tokens: ids.slice(0, 6) })
  assert.equal(r.computed, 1, 'the entry in use survives its own pruning')
})
