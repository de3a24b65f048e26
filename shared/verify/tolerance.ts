/**
 * How far an honest recomputation may be from a hop's committed output row: the relative L2
 * distance ‖a − b‖ / ‖b‖. Measured on docs-llama-7m (tolerance.test.ts prints it; 96 steps per
 * pair, a middle range and the last): a hop's incremental decode on ORT cpu float32 vs a checker's
 * fresh prefill with 1 or 2 threads: ≤ 6.6e-7 (hidden) and ≤ 4.3e-7 (top logits); int4 weights
 * (MatMulNBits, int8 activations) vs int4 on another thread count: ≤ 8.8e-3; int4 vs float32
 * weights: 8.9e-2 to 1.7e-1 on hidden states, 2.7e-2 to 8.8e-2 on top logits (a different model:
 * a peer claiming float32 while running int4 fails nearly every check). The cheaters the tests
 * model sit at 1e-1 and above. 3e-2 leaves 3.4× above the worst honest spread. So this tolerance
 * holds within one weight format only: checkers and the Oracle's referee recompute in the format
 * the hop committed to (weightFormat.ts).
 */
export const DEFAULT_TOLERANCE = 3e-2

export class RowShapeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RowShapeError'
  }
}

/** Relative L2 distance of `a` from the reference `b` (Infinity for non-finite values or a length mismatch). */
export function relativeDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length || a.length === 0) return Infinity
  let diff = 0
  let norm = 0
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!
    diff += d * d
    norm += b[i]! * b[i]!
  }
  if (!Number.isFinite(diff) || !Number.isFinite(norm)) return Infinity
  return Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12)
}

/**
 * Distance of a committed row from a recomputed one: for a hidden state, relativeDistance; for
 * top logits ([ids…, values…], see committedRow) against a full logits row, relativeDistance of the
 * values at those ids, and Infinity when the ids are not logits or miss the reference's top one.
 */
export function rowDistance(kind: 'hidden' | 'top-logits', committed: Float32Array, reference: Float32Array): number {
  if (kind === 'hidden') return relativeDistance(committed, reference)
  const k = committed.length / 2
  if (!Number.isInteger(k) || k === 0) return Infinity
  const ids = committed.subarray(0, k)
  if (ids.some((id) => !Number.isInteger(id) || id < 0 || id >= reference.length)) return Infinity
  let top = 0
  for (let i = 1; i < reference.length; i++) if (reference[i]! > reference[top]!) top = i
  if (!ids.includes(top)) return Infinity
  return relativeDistance(committed.subarray(k), Float32Array.from(ids, (id) => reference[id]!))
}
