import type { ShardOutput, ShardSession } from '../shared/engine/shardSession.ts'
import type { LayerRange } from '../shared/model/shardGraph.ts'

/**
 * TEST ONLY: shards that cheat, as wrappers around a real one (the product has no such switch).
 * Each keeps the session bookkeeping the forward protocol checks (cached length), so only a
 * recomputation can tell it from an honest shard.
 */

/** Adds Gaussian noise of `scale` × the row's RMS to every output. */
export function noisyShard(inner: ShardSession, scale: number, seed = 1): ShardSession {
  let s = seed >>> 0
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32
  const gauss = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())
  const perturb = (x: Float32Array) => {
    let ss = 0
    for (const v of x) ss += v * v
    const rms = Math.sqrt(ss / x.length)
    for (let i = 0; i < x.length; i++) x[i]! += scale * rms * gauss()
  }
  return {
    range: inner.range,
    io: inner.io,
    device: inner.device,
    spec: inner.spec,
    async forward(id, input, opts) {
      const out = await inner.forward(id, input, opts)
      perturb(out.hidden ?? out.logits!)
      return out
    },
    cachedLength: (id) => inner.cachedLength(id),
    drop: (id) => inner.drop(id),
    kvBytes: () => inner.kvBytes(),
    dispose: () => inner.dispose(),
  }
}

/**
 * Computes a session's prefill, then answers every decode step with its first decode step's
 * output (a cached answer for a different input), running nothing.
 */
export function replayingShard(inner: ShardSession): ShardSession {
  const saved = new Map<string, ShardOutput>()
  const skipped = new Map<string, number>()
  const copy = (o: ShardOutput): ShardOutput => ({ ...o, hidden: o.hidden?.slice(), logits: o.logits?.slice() })
  return {
    range: inner.range,
    io: inner.io,
    device: inner.device,
    spec: inner.spec,
    async forward(id, input, opts) {
      const seq = 'tokens' in input ? input.tokens.length : input.hidden.length / inner.spec.hiddenSize
      if (opts?.reset) {
        saved.delete(id)
        skipped.set(id, 0)
      }
      const cached = saved.get(id)
      if (seq === 1 && cached) {
        skipped.set(id, (skipped.get(id) ?? 0) + 1)
        return { ...copy(cached), length: inner.cachedLength(id) + skipped.get(id)! }
      }
      const out = await inner.forward(id, input, opts)
      if (seq === 1) saved.set(id, copy(out))
      return out
    },
    cachedLength: (id) => inner.cachedLength(id) + (skipped.get(id) ?? 0),
    drop(id) {
      saved.delete(id)
      skipped.delete(id)
      inner.drop(id)
    },
    kvBytes: () => inner.kvBytes(),
    dispose: () => inner.dispose(),
  }
}

/** Runs a shard of fewer layers (`inner`) while claiming `claimed`. */
export function shortShard(inner: ShardSession, claimed: LayerRange): ShardSession {
  return {
    range: claimed,
    io: inner.io,
    device: inner.device,
    spec: inner.spec,
    forward: (id, input, opts) => inner.forward(id, input, opts),
    cachedLength: (id) => inner.cachedLength(id),
    drop: (id) => inner.drop(id),
    kvBytes: () => inner.kvBytes(),
    dispose: () => inner.dispose(),
  }
}
