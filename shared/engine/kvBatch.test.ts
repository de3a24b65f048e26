import assert from 'node:assert/strict'
import { test } from 'node:test'
import { stackKv, unstackKv } from './kvBatch.ts'

const shape = { heads: 2, headDim: 3 }
/** A cache `[heads, length, headDim]` whose values name their session, head, position and dim. */
const cache = (session: number, length: number) =>
  Float32Array.from({ length: shape.heads * length * shape.headDim }, (_, i) => {
    const d = i % 3
    const p = Math.floor(i / 3) % length
    const h = Math.floor(i / (3 * length))
    return session * 1000 + h * 100 + p * 10 + d
  })

test('stackKv pads each row to the longest with zeros, head by head', () => {
  const { data, padded } = stackKv([{ data: cache(1, 2), length: 2 }, { data: cache(2, 4), length: 4 }], shape)
  assert.equal(padded, 4)
  assert.equal(data.length, 2 * 2 * 4 * 3)
  // Row 0, head 1, positions 0..1 then two zero slots.
  assert.deepEqual([...data.subarray(12, 24)], [1100, 1101, 1102, 1110, 1111, 1112, 0, 0, 0, 0, 0, 0])
  // Row 1, head 0 is the whole cache of session 2's head 0.
  assert.deepEqual([...data.subarray(24, 36)], [...cache(2, 4).subarray(0, 12)])
})

test('unstackKv takes a row\'s past and its new position from where each attention op writes it', () => {
  const rows = [{ data: cache(1, 2), length: 2 }, { data: cache(2, 4), length: 4 }]
  const { data: past, padded } = stackKv(rows, shape)
  const added = (session: number, h: number) => [session * 1000 + h * 100 + 99, 0, 0]
  // packed (GroupQueryAttention): S = 5, row b's new position at its own length.
  const packed = new Float32Array(2 * 2 * 5 * 3)
  // appended (MultiHeadAttention): S = P + 1 = 5, every row's new position at P.
  const appended = new Float32Array(2 * 2 * 5 * 3)
  rows.forEach((r, b) => {
    for (let h = 0; h < 2; h++) {
      const src = past.subarray(((b * 2 + h) * padded) * 3, ((b * 2 + h) * padded + padded) * 3)
      packed.set(src, (b * 2 + h) * 5 * 3)
      appended.set(src, (b * 2 + h) * 5 * 3)
      packed.set(added(b + 1, h), ((b * 2 + h) * 5 + r.length) * 3)
      appended.set(added(b + 1, h), ((b * 2 + h) * 5 + padded) * 3)
    }
  })
  for (const [layout, present] of [['packed', packed], ['appended', appended]] as const) {
    rows.forEach((r, b) => {
      const out = unstackKv(present, 5, { index: b, past: r.length, added: 1 }, padded, layout, shape)
      const expected: number[] = []
      for (let h = 0; h < 2; h++) expected.push(...r.data.subarray(h * r.length * 3, (h + 1) * r.length * 3), ...added(b + 1, h))
      assert.deepEqual([...out], expected, `${layout} row ${b}`)
    })
  }
})
