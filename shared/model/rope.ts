import type { ModelSpec } from './modelSpec.ts'

const f = Math.fround

/** Inverse frequencies as Hugging Face computes them (float32), with the checkpoint's scaling. */
export function ropeInverseFrequencies(spec: ModelSpec, position = 0): Float32Array {
  const rope = spec.rope
  if (!rope) throw new Error(`${spec.architecture} has no rotary embedding`)
  const dim = rope.rotaryDim
  const inv = new Float32Array(dim / 2)
  for (let i = 0; i < dim / 2; i++) inv[i] = f(1 / f(Math.pow(rope.theta, f((2 * i) / dim))))
  const s = rope.scaling
  if (s.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = f(inv[i]! / s.factor)
  } else if (s.type === 'llama3') {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor
    const highWavelen = s.originalMaxPositions / s.highFreqFactor
    for (let i = 0; i < inv.length; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!
      if (wavelen > lowWavelen) inv[i] = f(inv[i]! / s.factor)
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
        inv[i] = f((1 - smooth) * (inv[i]! / s.factor) + smooth * inv[i]!)
      }
    }
  } else if (s.type === 'longrope') {
    const ext = position >= s.originalMaxPositions ? s.longFactor : s.shortFactor
    for (let i = 0; i < inv.length; i++) inv[i] = f(inv[i]! / (ext[i] ?? 1))
  }
  return inv
}

export type RopeCaches = {
  /** `[rows, rotaryDim / 2]`, scaled by LongRoPE's attention factor. */
  cos: Float32Array
  sin: Float32Array
  rows: number
  half: number
  /**
   * LongRoPE only: row `p` of the cache is position `p` with the short factors for rows below
   * `longOffset`, and row `longOffset + p` is position `p` with the long factors. Hugging Face
   * picks the factors once per forward call (`dynamic_rope_update`): long when the call's last
   * position + 1 exceeds `original_max_position_embeddings`, for every position of that call.
   * The short block has min(positions, original) rows, so a call reads the long block exactly
   * when its total length exceeds `longOffset`.
   */
  longOffset: number | null
}

/** `cos` and `sin` caches for the contrib attention ops (`RotaryEmbedding`, `GroupQueryAttention`). */
export function ropeCaches(spec: ModelSpec, positions = spec.maxPositions): RopeCaches {
  const rope = spec.rope!
  const half = rope.rotaryDim / 2
  const s = rope.scaling
  // Short factors only serve calls that end within the original context.
  const blocks: Array<{ inv: Float32Array; count: number }> =
    s.type === 'longrope'
      ? [
          { inv: ropeInverseFrequencies(spec, 0), count: Math.min(positions, s.originalMaxPositions) },
          { inv: ropeInverseFrequencies(spec, s.originalMaxPositions), count: positions },
        ]
      : [{ inv: ropeInverseFrequencies(spec, 0), count: positions }]
  const scale = s.type === 'longrope' ? s.attentionFactor : 1
  const rows = blocks.reduce((a, b) => a + b.count, 0)
  const cos = new Float32Array(rows * half)
  const sin = new Float32Array(rows * half)
  let row = 0
  for (const { inv, count } of blocks) {
    for (let p = 0; p < count; p++, row++) {
      for (let i = 0; i < half; i++) {
        const angle = f(p * inv[i]!)
        cos[row * half + i] = f(Math.cos(angle) * scale)
        sin[row * half + i] = f(Math.sin(angle) * scale)
      }
    }
  }
  return { cos, sin, rows, half, longOffset: s.type === 'longrope' ? blocks[0]!.count : null }
}
