import assert from 'node:assert/strict'
import { test } from 'node:test'
import { restartBackoffMs } from './restartBackoff.ts'

test('restarts back off 1, 2, 4 … s and stay at 60 s', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 20].map(restartBackoffMs), [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000])
  assert.equal(restartBackoffMs(0), 0)
})
