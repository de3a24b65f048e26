import type { ShardIO } from '../model/shardGraph.ts'

/** Shape of one KV cache tensor's rows: `[rows, heads, length, headDim]`. */
export type KvShape = { heads: number; headDim: number }

/**
 * One session's cache of one KV tensor kept with room to grow: `[heads, capacity, headDim]`, the
 * first `length` positions of each head valid. A batched decode step writes its new position in
 * place instead of copying the whole cache into a new array each step.
 */
export type KvRows = { data: Float32Array; capacity: number }

/** Positions a grown cache gets room for at a time. */
export const KV_GROWTH = 64

/** A session's cache of one tensor as stacking reads it: `stride` positions apart per head (its length when packed). */
export type KvSource = { data: Float32Array; length: number; stride?: number }

/**
 * Stacks the caches of several sessions (each `[1, heads, length_b, headDim]`, or KvRows) into one
 * `[B, heads, P, headDim]` batch, P the longest length; each row's slots past its own length are
 * zeros, which the graph masks (GroupQueryAttention by seqlens_k, MultiHeadAttention by the bias).
 * `into`, when at least that large, is written instead of a new array (its first B·heads·P·headDim values).
 */
export function stackKv(rows: KvSource[], shape: KvShape, into?: Float32Array): { data: Float32Array; padded: number } {
  const { heads, headDim: D } = shape
  const P = rows.reduce((m, r) => Math.max(m, r.length), 0)
  const size = rows.length * heads * P * D
  const out = into && into.length >= size ? into.subarray(0, size) : new Float32Array(size)
  rows.forEach((r, b) => {
    const stride = r.stride ?? r.length
    if (stride < r.length || r.data.length < heads * stride * D) throw new RangeError(`cache row ${b}: ${r.data.length} values, expected ${heads * stride * D}`)
    for (let h = 0; h < heads; h++) {
      const at = (b * heads + h) * P * D
      out.set(r.data.subarray(h * stride * D, (h * stride + r.length) * D), at)
      // A reused buffer holds an earlier batch there.
      if (into && r.length < P) out.fill(0, at + r.length * D, at + P * D)
    }
  })
  return { data: out, padded: P }
}

/**
 * Row `index` of a batch's `present_*` into a session's KvRows: only its T new positions are
 * copied when `rows` has room for them (its past is already there); otherwise a new KvRows of
 * `capacity` positions (at least past + T) gets the past and the new positions from the present.
 */
export function appendKv(
  present: Float32Array,
  presentLength: number,
  row: { index: number; past: number; added: number },
  padded: number,
  layout: ShardIO['presentLayout'],
  shape: KvShape,
  rows: KvRows | undefined,
  capacity: number,
): KvRows {
  const { heads, headDim: D } = shape
  const S = presentLength
  const length = row.past + row.added
  // Row `index`'s new positions sit right after its past (`packed`), or after the padded past P (`appended`).
  const newAt = layout === 'packed' ? row.past : padded
  if (newAt + row.added > S) throw new RangeError(`present of ${S} positions has no room for row ${row.index}'s ${row.added} new positions at ${newAt}`)
  const inPlace = rows !== undefined && rows.capacity >= length
  const cap = inPlace ? rows.capacity : Math.max(capacity, length)
  const out = inPlace ? rows : { data: new Float32Array(heads * cap * D), capacity: cap }
  for (let h = 0; h < heads; h++) {
    const base = (row.index * heads + h) * S * D
    const dst = h * cap * D
    if (!inPlace) out.data.set(present.subarray(base, base + row.past * D), dst)
    out.data.set(present.subarray(base + newAt * D, base + (newAt + row.added) * D), dst + row.past * D)
  }
  return out
}

/** A KvRows' first `length` positions as a packed cache `[heads, length, headDim]` (copied). */
export function packKv(rows: KvRows, length: number, shape: KvShape): Float32Array {
  const { heads, headDim: D } = shape
  if (rows.capacity === length) return rows.data
  const out = new Float32Array(heads * length * D)
  for (let h = 0; h < heads; h++) out.set(rows.data.subarray(h * rows.capacity * D, (h * rows.capacity + length) * D), h * length * D)
  return out
}
