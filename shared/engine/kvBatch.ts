import type { ShardIO } from '../model/shardGraph.ts'

/** Shape of one KV cache tensor's rows: `[rows, heads, length, headDim]`. */
export type KvShape = { heads: number; headDim: number }

/**
 * Stacks the caches of several sessions (each `[1, heads, length_b, headDim]`) into one
 * `[B, heads, P, headDim]` batch, P the longest length; each row's slots past its own length are
 * zeros, which the graph masks (GroupQueryAttention by seqlens_k, MultiHeadAttention by the bias).
 */
export function stackKv(rows: Array<{ data: Float32Array; length: number }>, shape: KvShape): { data: Float32Array; padded: number } {
  const { heads, headDim: D } = shape
  const P = rows.reduce((m, r) => Math.max(m, r.length), 0)
  const out = new Float32Array(rows.length * heads * P * D)
  rows.forEach((r, b) => {
    if (r.data.length !== heads * r.length * D) throw new RangeError(`cache row ${b}: ${r.data.length} values, expected ${heads * r.length * D}`)
    for (let h = 0; h < heads; h++) {
      out.set(r.data.subarray(h * r.length * D, (h + 1) * r.length * D), ((b * heads + h) * P) * D)
    }
  })
  return { data: out, padded: P }
}

/**
 * One row of a batch's `present_*` `[B, heads, S, headDim]` as a session's own cache
 * `[heads, past + T, headDim]` (copied): its past, then its T new positions, which sit right after
 * the past (`packed`) or after the padded past P (`appended`).
 */
export function unstackKv(
  present: Float32Array,
  presentLength: number,
  row: { index: number; past: number; added: number },
  padded: number,
  layout: ShardIO['presentLayout'],
  shape: KvShape,
): Float32Array {
  const { heads, headDim: D } = shape
  const S = presentLength
  const length = row.past + row.added
  const newAt = layout === 'packed' ? row.past : padded
  if (newAt + row.added > S) throw new RangeError(`present of ${S} positions has no room for row ${row.index}'s ${row.added} new positions at ${newAt}`)
  const out = new Float32Array(heads * length * D)
  for (let h = 0; h < heads; h++) {
    const base = (row.index * heads + h) * S * D
    const dst = h * length * D
    out.set(present.subarray(base, base + row.past * D), dst)
    out.set(present.subarray(base + newAt * D, base + (newAt + row.added) * D), dst + row.past * D)
  }
  return out
}
