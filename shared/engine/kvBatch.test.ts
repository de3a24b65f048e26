import assert from 'node:assert/strict'
import { test } from 'node:test'
import { appendKv, packKv, stackKv } from './kvBatch.ts'

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

test('appendKv takes a row\'s past and its new position from where each attention op writes it', () => {
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
      const out = appendKv(present, 5, { index: b, past: r.length, added: 1 }, padded, layout, shape, undefined, r.length + 1).data
      const expected: number[] = []
      for (let h = 0; h < 2; h++) expected.push(...r.data.subarray(h * r.length * 3, (h + 1) * r.length * 3), ...added(b + 1, h))
      assert.deepEqual([...out], expected, `${layout} row ${b}`)
    })
  }
})

test('a session kept with room to grow: stacked from its rows, its new position written in place, packed back when it runs alone', () => {
  // Session 1 holds 2 positions in rows with room for 4; session 2 a packed cache of 3.
  const roomy = { data: new Float32Array(shape.heads * 4 * 3).fill(-1), capacity: 4 }
  for (let h = 0; h < 2; h++) roomy.data.set(cache(1, 2).subarray(h * 6, (h + 1) * 6), h * 4 * 3)
  // A reused buffer holding an earlier batch: the padding must come out zero, not stale.
  const reused = new Float32Array(64).fill(7)
  const { data: past, padded } = stackKv([{ data: roomy.data, length: 2, stride: 4 }, { data: cache(2, 3), length: 3 }], shape, reused)
  assert.equal(past.buffer, reused.buffer, 'written into the buffer given')
  assert.equal(padded, 3)
  assert.deepEqual([...past.subarray(0, 9)], [1000, 1001, 1002, 1010, 1011, 1012, 0, 0, 0])
  assert.deepEqual([...past.subarray(9, 18)], [1100, 1101, 1102, 1110, 1111, 1112, 0, 0, 0])
  assert.deepEqual([...past.subarray(18, 36)], [...cache(2, 3)])

  // packed present, S = 4: each row's new position at its own length.
  const present = new Float32Array(2 * 2 * 4 * 3)
  for (let b = 0; b < 2; b++) for (let h = 0; h < 2; h++) present.set(past.subarray((b * 2 + h) * 9, (b * 2 + h + 1) * 9), (b * 2 + h) * 12)
  const added = (session: number, h: number) => [session * 1000 + h * 100 + 99, 0, 0]
  for (let h = 0; h < 2; h++) {
    present.set(added(1, h), ((0 * 2 + h) * 4 + 2) * 3)
    present.set(added(2, h), ((1 * 2 + h) * 4 + 3) * 3)
  }
  // Room for it: the same rows, only the new position written (the stale -1 slots after it stay).
  const same = appendKv(present, 4, { index: 0, past: 2, added: 1 }, padded, 'packed', shape, roomy, 64)
  assert.equal(same, roomy)
  assert.deepEqual([...roomy.data.subarray(0, 12)], [1000, 1001, 1002, 1010, 1011, 1012, 1099, 0, 0, -1, -1, -1])
  assert.deepEqual([...packKv(roomy, 3, shape)], [...cache(1, 2).subarray(0, 6), ...added(1, 0), ...cache(1, 2).subarray(6, 12), ...added(1, 1)])
  // No room (a packed cache, or rows too small): new rows of the capacity asked, past copied from the present.
  const grown = appendKv(present, 4, { index: 1, past: 3, added: 1 }, padded, 'packed', shape, { data: new Float32Array(18), capacity: 3 }, 8)
  assert.equal(grown.capacity, 8)
  assert.deepEqual([...packKv(grown, 4, shape)], [...cache(2, 3).subarray(0, 9), ...added(2, 0), ...cache(2, 3).subarray(9, 18), ...added(2, 1)])
})
