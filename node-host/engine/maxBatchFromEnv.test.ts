import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MaxBatchEnvError, maxBatchFromEnv } from './maxBatchFromEnv.ts'

test('SHARDMESH_MAX_BATCH: unset is the default, a whole number is taken, anything else is refused by name', () => {
  assert.equal(maxBatchFromEnv({}), undefined)
  assert.equal(maxBatchFromEnv({ SHARDMESH_MAX_BATCH: '1' }), 1)
  assert.equal(maxBatchFromEnv({ SHARDMESH_MAX_BATCH: '32' }), 32)
  for (const bad of ['0', '-2', '1.5', 'many', '1000']) {
    assert.throws(() => maxBatchFromEnv({ SHARDMESH_MAX_BATCH: bad }), (e: unknown) => e instanceof MaxBatchEnvError && /SHARDMESH_MAX_BATCH/.test((e as Error).message))
  }
})
