import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { test } from 'node:test'
import { loadShards } from '../../shared/engine/loadShards.ts'
import { takeThreads } from '../cli/threadsOption.ts'
import { UsageError } from '../cli/usageError.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { loadFixture } from '../../testing/fixtures.ts'
import { THREADS_ENV, ThreadsError, engineThreads } from './engineThreads.ts'
import { nodeRuntime } from './nodeRuntime.ts'

test('--threads is taken from any command into SHARDMESH_THREADS; the default is every core', () => {
  const env: Record<string, string | undefined> = {}
  assert.equal(engineThreads(env), availableParallelism())
  assert.deepEqual(takeThreads(['generate', '--prompt', 'x', '--threads', '3', '--json'], env), ['generate', '--prompt', 'x', '--json'])
  assert.equal(env[THREADS_ENV], '3')
  assert.equal(engineThreads(env), 3)
  assert.deepEqual(takeThreads(['start', '--threads=5'], env), ['start'])
  assert.equal(engineThreads(env), 5)
  assert.throws(() => takeThreads(['start', '--threads', '0'], {}), UsageError)
  assert.throws(() => takeThreads(['start', '--threads', '1.5'], {}), UsageError)
  assert.throws(() => takeThreads(['start', '--threads'], {}), UsageError)
  assert.throws(() => takeThreads(['start'], { [THREADS_ENV]: 'many' }), UsageError)
  assert.throws(() => engineThreads({ [THREADS_ENV]: '-2' }), ThreadsError)
})

/** OS threads of this process (Linux). */
const osThreads = () => readdirSync('/proc/self/task').length

test('an engine session runs ONNX Runtime on SHARDMESH_THREADS threads, every core when unset', async () => {
  const fixture = await loadFixture('tiny-llama')
  const source = fileModelSource(fixture.dir)
  const saved = process.env[THREADS_ENV]
  // The thread pool ORT starts for a session: its intra-op threads minus the caller's own.
  const poolOf = async (threads: string | undefined) => {
    if (threads === undefined) delete process.env[THREADS_ENV]
    else process.env[THREADS_ENV] = threads
    const before = osThreads()
    const { shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu' })
    const grown = osThreads() - before
    await shards[0]!.dispose()
    return grown
  }
  try {
    await poolOf('1') // starts libuv's and ORT's process-wide threads first
    assert.equal(await poolOf('1'), 0)
    assert.equal(await poolOf('4'), 3)
    assert.equal(await poolOf(undefined), availableParallelism() - 1)
  } finally {
    if (saved === undefined) delete process.env[THREADS_ENV]
    else process.env[THREADS_ENV] = saved
  }
})
