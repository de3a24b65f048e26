/** Weights of one projection in ONNX Runtime's MatMulNBits layout (4-bit, blocks along K). */
export type Int4Weights = {
  /** `[N, blocks, blockSize / 2]`: two codes a byte, low nibble first. */
  codes: Uint8Array
  /** `[N * blocks]` */
  scales: Float32Array
  /** `[N * ceil(blocks / 2)]`: 4-bit zero points, low nibble first. */
  zeroPoints: Uint8Array
  blocks: number
}

/**
 * Asymmetric 4-bit block quantization of a row-major `[N, K]` matrix (a Hugging Face Linear
 * weight `[out, in]`): per block of `blockSize` values along K, `w ≈ (code - zeroPoint) * scale`,
 * with 0 exactly representable, as ONNX Runtime's own 4-bit quantizer does.
 */
export function quantizeInt4(weights: Float32Array, N: number, K: number, blockSize = 32): Int4Weights {
  const blocks = Math.ceil(K / blockSize)
  const codes = new Uint8Array(N * blocks * (blockSize / 2))
  const scales = new Float32Array(N * blocks)
  const zpPerRow = Math.ceil(blocks / 2)
  const zeroPoints = new Uint8Array(N * zpPerRow)
  for (let n = 0; n < N; n++) {
    const row = n * K
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize
      const end = Math.min(start + blockSize, K)
      let min = 0
      let max = 0
      for (let k = start; k < end; k++) {
        const v = weights[row + k]!
        if (v < min) min = v
        if (v > max) max = v
      }
      const scale = max > min ? (max - min) / 15 : 1
      const zp = Math.min(15, Math.max(0, Math.round(-min / scale)))
      scales[n * blocks + b] = scale
      zeroPoints[n * zpPerRow + (b >> 1)]! |= zp << ((b & 1) * 4)
      const out = (n * blocks + b) * (blockSize / 2)
      for (let i = 0; i < blockSize; i++) {
        const k = start + i
        const q = k < end ? Math.min(15, Math.max(0, Math.round(weights[row + k]! / scale + zp))) : zp
        codes[out + (i >> 1)]! |= q << ((i & 1) * 4)
      }
    }
  }
  return { codes, scales, zeroPoints, blocks }
}
