import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodePlumiseHidden, encodePlumiseHidden, PLUMISE_DTYPES } from './plumiseTensor.ts'
import { PlumiseTensorError } from './plumiseTensorError.ts'

const hidden = 4
const values = Float32Array.from({ length: 3 * hidden }, (_, i) => i * 0.5 - 2)

test('each dtype round-trips a [1, seq, hidden] state with shape [1, seq, hidden]', () => {
  for (const dtype of PLUMISE_DTYPES) {
    const t = encodePlumiseHidden(values, hidden, dtype)
    assert.deepEqual(t.shape, [1n, 3n, 4n])
    assert.equal(t.dtype, dtype)
    const back = decodePlumiseHidden(t, hidden)
    assert.equal(back.seq, 3)
    assert.deepEqual([...back.values], [...values], dtype)
  }
  assert.equal(encodePlumiseHidden(values, hidden, 'float16').hiddenStates.length, 24)
  assert.equal(encodePlumiseHidden(values, hidden, 'bfloat16').hiddenStates[0], 0x50, 'bfloat16 is a zip (PK)')
})

test('wrong dtype, shape or size is a PlumiseTensorError', () => {
  const ok = encodePlumiseHidden(values, hidden, 'float32')
  const bf = encodePlumiseHidden(values, hidden, 'bfloat16')
  const bad = [
    { ...ok, dtype: 'int8' },
    { ...ok, shape: [1n, 3n] },
    { ...ok, shape: [2n, 3n, 4n] },
    { ...ok, shape: [1n, 3n, 5n] },
    { ...ok, shape: [1n, 0n, 4n] },
    { ...ok, shape: [1n, 1n << 40n, 4n] },
    { ...ok, hiddenStates: ok.hiddenStates.subarray(4) },
    { ...bf, shape: [1n, 2n, 4n] },
    { ...ok, dtype: 'bfloat16' },
  ]
  for (const t of bad) assert.throws(() => decodePlumiseHidden(t, hidden), PlumiseTensorError, JSON.stringify({ dtype: t.dtype, shape: t.shape.map(String) }))
})
