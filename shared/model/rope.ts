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

/** `cos` and `sin` caches `[positions, rotaryDim / 2]` for the contrib attention ops. */
export function ropeCaches(spec: ModelSpec, positions = spec.maxPositions): { cos: Float32Array; sin: Float32Array; half: number } {
  const rope = spec.rope!
  const half = rope.rotaryDim / 2
  const cos = new Float32Array(positions * half)
  const sin = new Float32Array(positions * half)
  const short = ropeInverseFrequencies(spec, 0)
  const long = rope.scaling.type === 'longrope' ? ropeInverseFrequencies(spec, rope.scaling.originalMaxPositions) : short
  const scale = rope.scaling.type === 'longrope' ? rope.scaling.attentionFactor : 1
  for (let p = 0; p < positions; p++) {
    const inv = rope.scaling.type === 'longrope' && p >= rope.scaling.originalMaxPositions ? long : short
    for (let i = 0; i < half; i++) {
      const angle = f(p * inv[i]!)
      cos[p * half + i] = f(Math.cos(angle) * scale)
      sin[p * half + i] = f(Math.sin(angle) * scale)
    }
  }
  return { cos, sin, half }
}
