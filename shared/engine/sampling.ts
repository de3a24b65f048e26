/** How the next token is chosen from the last position's logits. */
export type SamplingParams = {
  /** 0 (or doSample false) is greedy. @default 0 */
  temperature?: number
  /** Keep the k most likely tokens; 0 keeps all. @default 0 */
  topK?: number
  /** Keep the smallest set whose probability reaches p; 1 keeps all. @default 1 */
  topP?: number
  /** Plumise semantics: for tokens already generated, positive logits are divided by it, negative multiplied. @default 1 */
  repetitionPenalty?: number
  /** @default temperature > 0 */
  doSample?: boolean
  /** Seed of the sampler's generator; the same seed gives the same tokens. */
  seed?: number
}

/** xoshiro128** seeded through splitmix32: small, fast, reproducible everywhere. */
export function createRng(seed: number): () => number {
  let s = seed >>> 0
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
  const st = [split(), split(), split(), split()]
  return () => {
    const r = Math.imul(rotl(Math.imul(st[1]!, 5) >>> 0, 7), 9) >>> 0
    const t = (st[1]! << 9) >>> 0
    st[2]! ^= st[0]!
    st[3]! ^= st[1]!
    st[1]! ^= st[2]!
    st[0]! ^= st[3]!
    st[2]! ^= t
    st[3] = rotl(st[3]!, 11)
    return r / 4294967296
  }
}
const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0

export function argmax(logits: ArrayLike<number>, offset = 0, length = logits.length - offset): number {
  let best = 0
  let bestValue = -Infinity
  for (let i = 0; i < length; i++) {
    const v = logits[offset + i]!
    if (v > bestValue) {
      bestValue = v
      best = i
    }
  }
  return best
}

/**
 * Picks the next token from one row of logits. `generated` are the tokens produced so far
 * (the repetition penalty's scope, as in Plumise); `rng` draws in [0, 1).
 */
export function sampleToken(row: Float32Array, params: SamplingParams, generated: readonly number[], rng: () => number): number {
  const penalty = params.repetitionPenalty ?? 1
  const temperature = params.temperature ?? 0
  const doSample = params.doSample ?? temperature > 0
  let logits = row
  if (penalty !== 1 && generated.length) {
    logits = row.slice()
    for (const id of new Set(generated)) {
      const v = logits[id]!
      logits[id] = v > 0 ? v / penalty : v * penalty
    }
  }
  if (!doSample || temperature <= 0) return argmax(logits)

  // Candidates sorted by logit, cut by top-k, then softmax at the temperature, then top-p.
  let ids = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!)
  const topK = params.topK ?? 0
  if (topK > 0) ids = ids.slice(0, topK)
  const max = logits[ids[0]!]!
  const weights = ids.map((id) => Math.exp((logits[id]! - max) / temperature))
  const sum = weights.reduce((a, b) => a + b, 0)
  let probs = weights.map((w) => w / sum)
  const topP = params.topP ?? 1
  if (topP < 1) {
    let cum = 0
    let keep = 0
    while (keep < probs.length && cum < topP) cum += probs[keep++]!
    ids = ids.slice(0, Math.max(1, keep))
    const kept = probs.slice(0, ids.length)
    const s = kept.reduce((a, b) => a + b, 0)
    probs = kept.map((p) => p / s)
  }
  let r = rng()
  for (let i = 0; i < ids.length; i++) {
    r -= probs[i]!
    if (r < 0) return ids[i]!
  }
  return ids[ids.length - 1]!
}
