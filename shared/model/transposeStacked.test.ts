import assert from 'node:assert/strict'
import { test } from 'node:test'
import { transposeStacked } from './transposeStacked.ts'

const matrix = (rows: number, cols: number, seed: number) => ({ rows, cols, data: Float32Array.from({ length: rows * cols }, (_, j) => seed * 100_000 + j) })

test('stacked [out, in] matrices become one [in, sum of outs] matrix, element for element, across tile edges', () => {
  // Sizes off the 64-element tiles on purpose.
  const mats = [matrix(70, 130, 1), matrix(3, 130, 2), matrix(129, 130, 3)]
  const N = 70 + 3 + 129
  const out = transposeStacked(mats, new Float32Array(130 * N))
  let col = 0
  for (const m of mats) {
    for (let o = 0; o < m.rows; o++) for (let i = 0; i < m.cols; i++) assert.equal(out[i * N + col + o], m.data[o * m.cols + i], `out[${i}, ${col + o}]`)
    col += m.rows
  }
})

test('float16 bits are moved as they are', () => {
  const data = Uint16Array.from({ length: 6 }, (_, j) => 0x3c00 + j)
  assert.deepEqual([...transposeStacked([{ data, rows: 2, cols: 3 }], new Uint16Array(6))], [0x3c00, 0x3c03, 0x3c01, 0x3c04, 0x3c02, 0x3c05])
})

test('matrices that do not stack are refused', () => {
  assert.throws(() => transposeStacked([matrix(2, 3, 1), matrix(2, 4, 2)], new Float32Array(3 * 4)), RangeError)
  assert.throws(() => transposeStacked([matrix(2, 3, 1)], new Float32Array(5)), RangeError)
})
