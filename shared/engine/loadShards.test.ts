import assert from 'node:assert/strict'
import { test } from 'node:test'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture } from '../../testing/fixtures.ts'
import type { ModelSource } from '../model/modelSource.ts'
import type { LayerRange } from '../model/shardGraph.ts'
import { loadShards, readCheckpoint, type Checkpoint } from './loadShards.ts'

/** The fixture's files, counting each read of config.json. */
function countingSource(dir: string): { source: ModelSource; configReads: () => number } {
  const inner = fileModelSource(dir)
  let reads = 0
  const source: ModelSource = Object.assign(Object.create(inner) as ModelSource, {
    readText: (file: string, signal?: AbortSignal) => ((reads += file === 'config.json' ? 1 : 0), inner.readText(file, signal)),
  })
  return { source, configReads: () => reads }
}

test('loadShards: a cached checkpoint (the page worker\'s hook) is read once; each range reports its own progress to done === total', async () => {
  const fixture = await loadFixture('tiny-llama')
  const { source, configReads } = countingSource(fixture.dir)
  let cached: Promise<Checkpoint> | undefined
  const openCheckpoint = (s: ModelSource, signal?: AbortSignal) => (cached ??= readCheckpoint(s, signal))
  const progress: Array<[LayerRange, number, number]> = []
  const first = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 3 }, { start: 3, end: 6 }], openCheckpoint, onRangeProgress: (r, d, t) => progress.push([r, d, t]) })
  const second = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 2, end: 4 }], openCheckpoint })
  try {
    assert.equal(configReads(), 1)
    assert.deepEqual(first.shards.map((s) => s.range), [{ start: 0, end: 3 }, { start: 3, end: 6 }])
    assert.deepEqual(second.shards.map((s) => s.range), [{ start: 2, end: 4 }])
    for (const range of [{ start: 0, end: 3 }, { start: 3, end: 6 }]) {
      const mine = progress.filter(([r]) => r.start === range.start)
      assert.ok(mine.length >= 2, `progress for ${range.start}-${range.end}`)
      const [, done, total] = mine.at(-1)!
      assert.equal(done, total)
      assert.ok(mine.every(([, d, t]) => d <= t && t === total))
    }
  } finally {
    for (const s of [...first.shards, ...second.shards]) await s.dispose()
  }
})

test('loadShards: an abort after the first shard rejects and loads nothing more', async () => {
  const fixture = await loadFixture('tiny-llama')
  const controller = new AbortController()
  const progress: LayerRange[] = []
  await assert.rejects(
    loadShards({
      source: fileModelSource(fixture.dir),
      runtime: nodeRuntime(),
      device: 'cpu',
      ranges: [{ start: 0, end: 3 }, { start: 3, end: 6 }],
      onRangeProgress: (r, done, total) => {
        progress.push(r)
        if (done === total) controller.abort(new Error('stop'))
      },
      signal: controller.signal,
    }),
    /stop/,
  )
  assert.ok(progress.every((r) => r.start === 0), 'the second range never started')
})
