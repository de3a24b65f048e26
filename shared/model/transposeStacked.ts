/** Element arrays a projection's weights are moved in: float32 values, or float16/bfloat16 bits. */
export type WeightElements = Float32Array | Uint16Array

/** A row-major `[rows, cols]` matrix. */
export type RowMajor<T extends WeightElements> = { data: T; rows: number; cols: number }

/** Side of the square tiles moved at a time: both tiles' rows stay in the CPU's cache. */
const TILE = 64

/**
 * Row-major `[out, in]` matrices stacked along out (HF `nn.Linear` weights, e.g. q, k and v) →
 * one row-major `[in, sum of outs]` matrix, as MatMul takes it. Moved tile by tile: an element
 * at a time with a row stride of `sum of outs` would miss the cache on nearly every write, which
 * made building a 1 B model's shard take minutes. Elements are copied as they are (float16 bits
 * stay float16 bits), so no conversion is paid here.
 */
export function transposeStacked<T extends WeightElements>(mats: Array<RowMajor<T>>, out: T): T {
  const K = mats[0]!.cols
  const N = mats.reduce((a, m) => a + m.rows, 0)
  if (out.length !== K * N) throw new RangeError(`transposeStacked: output holds ${out.length} elements, not ${K} × ${N}`)
  let col = 0
  for (const m of mats) {
    if (m.cols !== K || m.data.length !== m.rows * K) throw new RangeError(`transposeStacked: a [${m.rows}, ${m.cols}] matrix (${m.data.length} elements) stacked on ones with ${K} columns`)
    const src = m.data
    for (let o0 = 0; o0 < m.rows; o0 += TILE) {
      const o1 = Math.min(o0 + TILE, m.rows)
      for (let i0 = 0; i0 < K; i0 += TILE) {
        const i1 = Math.min(i0 + TILE, K)
        for (let o = o0; o < o1; o++) {
          const from = o * K
          const to = col + o
          for (let i = i0; i < i1; i++) out[i * N + to] = src[from + i]!
        }
      }
    }
    col += m.rows
  }
  return out
}
