/** BLOOM's ALiBi head slopes, as Hugging Face's `build_alibi_tensor` computes them. */
export function alibiSlopes(numHeads: number): Float32Array {
  const closest = 2 ** Math.floor(Math.log2(numHeads))
  const base = Math.fround(2 ** -(2 ** -(Math.log2(closest) - 3)))
  const slopes: number[] = []
  for (let p = 1; p <= closest; p++) slopes.push(Math.fround(base ** p))
  if (closest !== numHeads) {
    const extraBase = Math.fround(2 ** -(2 ** -(Math.log2(2 * closest) - 3)))
    const remaining = Math.min(closest, numHeads - closest)
    for (let p = 1; p < 1 + 2 * remaining; p += 2) slopes.push(Math.fround(extraBase ** p))
  }
  return Float32Array.from(slopes)
}
