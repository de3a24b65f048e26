import assert from 'node:assert/strict'
import { cp, mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { generate } from '../../shared/engine/generate.ts'
import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardGraphCache } from '../../shared/engine/shardGraphCache.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { fileShardCache } from './fileShardCache.ts'
import { nodeRuntime } from './nodeRuntime.ts'

let fixture: Fixture
let work: string
let model: string
before(async () => {
  fixture = await loadFixture('docs-llama-7m')
  work = await mkdtemp(join(tmpdir(), 'shard-cache-'))
  // A copy of the checkpoint, so the test may touch it.
  model = join(work, 'docs-llama-7m')
  await cp(fixture.dir, model, { recursive: true })
})
after(async () => {
  await rm(work, { recursive: true, force: true })
})

/** Counts how the loads went: shards found in the cache, shards built. */
const counting = (cache: ShardGraphCache) => {
  const n = { hits: 0, builds: 0 }
  return {
    n,
    cache: {
      get: async (key) => {
        const s = await cache.get(key)
        if (s) n.hits++
        return s
      },
      create: async (key) => {
        n.builds++
        return cache.create(key)
      },
    } satisfies ShardGraphCache,
  }
}

const run = async (cache: ShardGraphCache, weights: 'float32' | 'int4' = 'float32') => {
  const { shards } = await loadShards({ source: fileModelSource(model), runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 3 }, { start: 3, end: 8 }], cache, weights })
  try {
    const p = fixture.prompts[0]!
    return (await generate({ stages: shards, inputIds: p.input_ids, maxNewTokens: 8 })).outputIds
  } finally {
    for (const s of shards) await s.dispose()
  }
}

test('a shard built once is opened from the cache: same tokens, no build; a changed checkpoint or format builds anew', async () => {
  const dir = join(work, 'cache')
  const want = fixture.prompts[0]!.greedy_new_ids.slice(0, 8)
  const first = counting(fileShardCache({ dir }))
  assert.deepEqual(await run(first.cache), want)
  assert.deepEqual(first.n, { hits: 0, builds: 2 })
  const entries = (await readdir(dir)).filter((n) => !n.startsWith('.'))
  assert.equal(entries.length, 2)
  // The stored weights are the float32 graph's: 8 layers' projections and norms, the embedding (tied head), rope tables.
  const sizes = await Promise.all(entries.map((e) => stat(join(dir, e, 'weights.bin')).then((s) => s.size)))
  assert.ok(sizes.every((s) => s > 1e6))

  const second = counting(fileShardCache({ dir }))
  assert.deepEqual(await run(second.cache), want)
  assert.deepEqual(second.n, { hits: 2, builds: 0 })

  const int4 = counting(fileShardCache({ dir }))
  await run(int4.cache, 'int4')
  assert.deepEqual(int4.n, { hits: 0, builds: 2 })

  // The checkpoint changed (a new modification time): rebuilt, and the old float32 build replaced, not kept beside.
  const later = new Date(Date.now() + 10_000)
  await utimes(join(model, 'model.safetensors'), later, later)
  const third = counting(fileShardCache({ dir }))
  assert.deepEqual(await run(third.cache), want)
  assert.deepEqual(third.n, { hits: 0, builds: 2 })
  assert.equal((await readdir(dir)).filter((n) => !n.startsWith('.')).length, 4)
})

test('a stored shard whose weights file was cut short is rebuilt, not opened', async () => {
  const dir = join(work, 'cache-cut')
  await run(fileShardCache({ dir }))
  const [entry] = (await readdir(dir)).filter((n) => n.includes('-0-3-'))
  const { truncate } = await import('node:fs/promises')
  await truncate(join(dir, entry!, 'weights.bin'), 1000)
  const again = counting(fileShardCache({ dir }))
  assert.deepEqual(await run(again.cache), fixture.prompts[0]!.greedy_new_ids.slice(0, 8))
  assert.deepEqual(again.n, { hits: 1, builds: 1 })
})
