import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { requestPrefix } from './requestPrefix.ts'

/** What one step of a full-sequence request asks of the shard. */
export type PrefixInput = { tokens: number[] } | { hidden: Float32Array }

export type PrefixStepResult = {
  /** `[seq, hidden]` for every position (upstream expects the full sequence back), when the shard is not last. */
  hidden?: Float32Array
  /** Logits of the last position, when the shard is last. */
  lastLogits?: Float32Array
  seq: number
  /** Positions actually run through the layers this step (seq on a miss, the new ones on a hit). */
  computed: number
}

export type PrefixKvCacheInit = {
  shard: ShardSession
  /** Generations kept at once; the least recently used is dropped. @default 64 */
  maxEntries?: number
  /** Bytes of re-sent inputs and outputs kept to check prefixes and answer full sequences (KV caches are bounded by the shard). @default 512 MiB */
  maxBytes?: number
  /** A generation unseen for this long is dropped. @default 120 s */
  idleMs?: number
  /**
   * Hidden states of the cached prefix must match the new request's within
   * `|a - b| <= atol + rtol * |b|` (a bfloat16 rounding flip is 2^-8 relative; a different
   * token changes the whole row). @default { atol: 1e-3, rtol: 1 / 64 }
   */
  tolerance?: { atol: number; rtol: number }
  /** false recomputes every step in full, as upstream does (the bench's baseline). @default true */
  enabled?: boolean
}

type Entry = {
  sessionId: string
  /** Input of the cached positions (tokens, or hidden rows). */
  input: number[] | Float32Array
  /** Output rows of the cached positions (not kept on a last shard). */
  output?: Float32Array
  length: number
  lastUsed: number
  lock: Promise<unknown>
}

/**
 * Runs upstream-style full-sequence requests (positions from 0 every step) on a shard, keeping
 * the KV cache of each generation (keyed by its request id prefix): when a step re-sends the
 * previous sequence plus new positions, and the re-sent part matches what was cached, only the
 * new positions are computed. Anything else (new prefix, shorter or different sequence, evicted
 * cache) is recomputed in full, so answers never depend on the cache.
 */
export function createPrefixKvCache(init: PrefixKvCacheInit) {
  const { shard } = init
  const maxEntries = init.maxEntries ?? 64
  const idleMs = init.idleMs ?? 120_000
  const maxBytes = init.maxBytes ?? 512 << 20
  const { atol, rtol } = init.tolerance ?? { atol: 1e-3, rtol: 1 / 64 }
  const enabled = init.enabled ?? true
  const H = shard.spec.hiddenSize
  const V = shard.spec.vocabSize
  const isLast = shard.range.end === shard.spec.numLayers
  const entries = new Map<string, Entry>()
  let counter = 0
  const stats = { hits: 0, misses: 0 }

  const drop = (prefix: string) => {
    const e = entries.get(prefix)
    if (e) shard.drop(e.sessionId)
    entries.delete(prefix)
  }
  const bytesOf = (e: Entry) => (e.input instanceof Float32Array ? e.input.byteLength : e.input.length * 8) + (e.output?.byteLength ?? 0)
  const prune = (now: number, keep: string) => {
    for (const [p, e] of entries) if (now - e.lastUsed > idleMs && p !== keep) drop(p)
    let bytes = [...entries.values()].reduce((a, e) => a + bytesOf(e), 0)
    // least recently used first (Map order); the entry just used stays
    for (const [p, e] of entries) {
      if (entries.size <= maxEntries && bytes <= maxBytes) break
      if (p === keep) continue
      bytes -= bytesOf(e)
      drop(p)
    }
  }

  const matches = (cached: number[] | Float32Array, input: PrefixInput, length: number): boolean => {
    if ('tokens' in input) {
      if (!Array.isArray(cached)) return false
      for (let i = 0; i < length; i++) if (cached[i] !== input.tokens[i]) return false
      return true
    }
    if (!(cached instanceof Float32Array)) return false
    const n = length * H
    for (let i = 0; i < n; i++) {
      const b = input.hidden[i]!
      if (!(Math.abs(cached[i]! - b) <= atol + rtol * Math.abs(b))) return false
    }
    return true
  }

  async function step(requestId: string, input: PrefixInput): Promise<PrefixStepResult> {
    const prefix = requestPrefix(requestId)
    const seq = 'tokens' in input ? input.tokens.length : input.hidden.length / H
    const old = entries.get(prefix)
    const hit = enabled && old !== undefined && seq > old.length && shard.cachedLength(old.sessionId) === old.length && matches(old.input, input, old.length)
    if (old && !hit) shard.drop(old.sessionId)
    const e: Entry = hit ? old : { sessionId: `plumise:${prefix}:${++counter}`, input: [], length: 0, lastUsed: 0, lock: old?.lock ?? Promise.resolve() }
    const start = e.length
    const fresh: PrefixInput = 'tokens' in input ? { tokens: input.tokens.slice(start) } : { hidden: input.hidden.subarray(start * H) }
    let out
    try {
      out = await shard.forward(e.sessionId, fresh, { reset: start === 0 })
    } catch (err) {
      drop(prefix)
      throw err
    }
    hit ? stats.hits++ : stats.misses++
    const result: PrefixStepResult = { seq, computed: seq - start }
    if (out.logits) {
      result.lastLogits = out.logits.subarray(out.logits.length - V)
    } else if (out.hidden) {
      let full = out.hidden
      if (start > 0 && e.output) {
        full = new Float32Array(seq * H)
        full.set(e.output.subarray(0, start * H))
        full.set(out.hidden, start * H)
      }
      result.hidden = full
      e.output = full
    }
    e.input = 'tokens' in input ? input.tokens.slice() : input.hidden
    e.length = seq
    e.lastUsed = performance.now()
    entries.delete(prefix) // re-insert: Map order is the LRU order
    entries.set(prefix, e)
    prune(e.lastUsed, prefix)
    return result
  }

  return {
    isLast,
    /** Runs one full-sequence step; steps of one generation run one at a time. */
    run(requestId: string, input: PrefixInput): Promise<PrefixStepResult> {
      const prefix = requestPrefix(requestId)
      const prev = entries.get(prefix)?.lock ?? Promise.resolve()
      const next = prev.then(() => step(requestId, input))
      const e = entries.get(prefix)
      if (e) e.lock = next.catch(() => undefined)
      return next
    },
    /** Drops a generation's cache (a request without an id is never continued). */
    forget(requestId: string): void {
      drop(requestPrefix(requestId))
    },
    stats: () => ({ ...stats, entries: entries.size }),
    clear() {
      for (const p of [...entries.keys()]) drop(p)
    },
  }
}

export type PrefixKvCache = ReturnType<typeof createPrefixKvCache>
