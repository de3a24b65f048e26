import type * as ort from 'onnxruntime-common'
import type { ShardModel } from './shardGraphCache.ts'
import type { ModelSpec } from '../model/modelSpec.ts'
import { LOGITS_FROM, POSITION_OFFSET, type LayerRange, type ShardIO } from '../model/shardGraph.ts'
import type { Device, DeviceOption, ShardRuntime } from './runtime.ts'

/** Input of one shard call: token ids on the first shard, else a hidden state `[T, hidden]`. */
export type ShardInput = { tokens: number[] } | { hidden: Float32Array }

export type ShardOutput = {
  /** `[T, hidden]` on every shard but the last. */
  hidden?: Float32Array
  /** On the last shard: `[1, vocab]`, the last position's row; `[T, vocab]` with `allLogits`. */
  logits?: Float32Array
  /** Rows of `logits`: 1, or T with `allLogits`. */
  logitRows?: number
  seqLen: number
  /** Cached positions of this session after the call. */
  length: number
}

export type ShardSessionInit = {
  spec: ModelSpec
  /** A built graph, or a stored one (shardGraphCache). */
  graph: ShardModel
  runtime: ShardRuntime
  /** @default 'auto' */
  device?: DeviceOption
  /** KV cache budget across all sessions; idle sessions are evicted, oldest first. @default 1 GiB */
  kvBudgetBytes?: number
  /**
   * Fair share of the budget per owner (the peer that opened the sessions). An owner may use more
   * while nobody else needs it, but when room must be made, the idle sessions of owners over their
   * share go first: one peer cannot evict everyone else's sessions. @default kvBudgetBytes / 4
   */
  kvShareBytes?: number
}

export class ShardInputError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ShardInputError'
  }
}

export class KvBudgetError extends Error {
  readonly needed: number
  readonly budget: number

  constructor(needed: number, budget: number) {
    super(`KV cache of one session needs ${needed} bytes, over the budget of ${budget}`)
    this.needed = needed
    this.budget = budget
    this.name = 'KvBudgetError'
  }
}

/** A continuation for a session this shard does not hold (never started, dropped or evicted). */
export class UnknownSessionError extends Error {
  readonly sessionId: string

  constructor(sessionId: string) {
    super(`session "${sessionId}" is not cached on this shard (never started, dropped or evicted): start it over with reset`)
    this.sessionId = sessionId
    this.name = 'UnknownSessionError'
  }
}

type CacheEntry = { owner: string; length: number; tensors: Map<string, ort.Tensor>; lastUsed: number; bytes: number; busy: boolean }

export type ShardForwardOptions = {
  /** Starts the session (over). */
  reset?: boolean
  /** Who the session belongs to (a peer id), for the per-owner share of the KV budget. @default '' */
  owner?: string
  /** On the last shard, the logits of every position of the call, not only the last one's. @default false */
  allLogits?: boolean
}

/** A loaded shard: its layers on one device, with a KV cache per session id. */
export type ShardSession = {
  readonly range: LayerRange
  readonly io: ShardIO
  readonly device: Device
  readonly spec: ModelSpec
  /**
   * Runs the shard for a session, appending to its KV cache. `reset` starts the session (over);
   * without it the session must be cached here, else UnknownSessionError.
   */
  forward(sessionId: string, input: ShardInput, opts?: ShardForwardOptions): Promise<ShardOutput>
  /** Cached length of a session (0 when unknown). */
  cachedLength(sessionId: string): number
  drop(sessionId: string): void
  /** Total bytes held by KV caches. */
  kvBytes(): number
  dispose(): Promise<void>
}

export async function createShardSession(init: ShardSessionInit): Promise<ShardSession> {
  const { spec, runtime } = init
  const { Tensor } = runtime.ort
  const { session, device } = await runtime.createSession(init.graph, init.device ?? 'auto')
  const budget = init.kvBudgetBytes ?? 1 << 30
  const share = init.kvShareBytes ?? Math.floor(budget / 4)
  // Nothing below may refer to the graph: closures that did would keep its weights (GBs) alive.
  const { io, range } = init.graph
  const cache = new Map<string, CacheEntry>()
  const H = spec.hiddenSize
  const kvNames = io.layers.flatMap((i) => [`key.${i}`, `value.${i}`])
  /** KV bytes one cached position takes (float32 keys and values of every layer). */
  const bytesPerPosition = kvNames.length * io.kvHeads * io.headDim * 4
  let queue: Promise<unknown> = Promise.resolve()

  const total = () => [...cache.values()].reduce((a, e) => a + e.bytes, 0)
  const release = (e: CacheEntry) => {
    for (const t of e.tensors.values()) t.dispose()
    e.tensors.clear()
  }
  const ownerBytes = (owner: string) => [...cache.values()].reduce((a, e) => a + (e.owner === owner ? e.bytes : 0), 0)
  /**
   * Makes room under the budget: idle sessions of owners over their share first (oldest first),
   * then the oldest idle sessions of anyone.
   */
  const evict = (keep: string) => {
    const idle = [...cache.entries()].filter(([id, e]) => id !== keep && !e.busy).sort((a, b) => a[1].lastUsed - b[1].lastUsed)
    while (total() > budget && idle.length) {
      const over = idle.findIndex(([, e]) => ownerBytes(e.owner) > share)
      const [id, e] = idle.splice(over >= 0 ? over : 0, 1)[0]!
      release(e)
      cache.delete(id)
    }
  }

  const run = async (sessionId: string, input: ShardInput, reset: boolean, owner: string, allLogits: boolean): Promise<ShardOutput> => {
    if (reset) drop(sessionId)
    else if (!cache.has(sessionId)) throw new UnknownSessionError(sessionId)
    const feeds: Record<string, ort.Tensor> = {}
    let seqLen: number
    if (io.input === 'input_ids') {
      if (!('tokens' in input)) throw new ShardInputError(`shard [${range.start}, ${range.end}) takes token ids, got a hidden state`)
      seqLen = input.tokens.length
      if (input.tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= spec.vocabSize)) {
        throw new ShardInputError(`token id out of range [0, ${spec.vocabSize})`)
      }
      feeds.input_ids = new Tensor('int64', BigInt64Array.from(input.tokens, BigInt), [1, seqLen])
    } else {
      if (!('hidden' in input)) throw new ShardInputError(`shard [${range.start}, ${range.end}) takes a hidden state, got token ids`)
      if (input.hidden.length === 0 || input.hidden.length % H !== 0) {
        throw new ShardInputError(`hidden state of ${input.hidden.length} values is not a whole number of rows of ${H}`)
      }
      seqLen = input.hidden.length / H
      feeds.hidden_states = new Tensor('float32', input.hidden, [1, seqLen, H])
    }
    if (seqLen === 0) throw new ShardInputError('empty input')
    const cachedBefore = cache.get(sessionId)?.length ?? 0
    if (cachedBefore + seqLen > spec.maxPositions) {
      throw new ShardInputError(`sequence of ${cachedBefore + seqLen} positions exceeds the model's ${spec.maxPositions}`)
    }
    // Checked before the run allocates the larger cache, not after.
    const needed = (cachedBefore + seqLen) * bytesPerPosition
    if (needed > budget) {
      drop(sessionId)
      throw new KvBudgetError(needed, budget)
    }
    let entry = cache.get(sessionId)
    if (!entry) {
      entry = { owner, length: 0, tensors: new Map(), lastUsed: 0, bytes: 0, busy: false }
      cache.set(sessionId, entry)
    }
    feeds[POSITION_OFFSET] = new Tensor('int64', BigInt64Array.of(BigInt(entry.length)), [1])
    if (io.output === 'logits') feeds[LOGITS_FROM] = new Tensor('int64', BigInt64Array.of(allLogits ? 0n : -1n), [1])
    for (const name of kvNames) {
      feeds[`past_${name}`] = entry.tensors.get(name) ?? new Tensor('float32', new Float32Array(0), [1, io.kvHeads, 0, io.headDim])
    }
    entry.busy = true
    let results: ort.InferenceSession.ReturnType
    try {
      results = await session.run(feeds)
    } finally {
      entry.busy = false
    }
    const old = entry.tensors
    entry.tensors = new Map(kvNames.map((n) => [n, results[`present_${n}`]!]))
    for (const t of old.values()) t.dispose()
    entry.length += seqLen
    entry.lastUsed = performance.now()
    entry.bytes = bytesPerPosition * entry.length
    evict(sessionId)
    const out = results[io.output]!
    const data = (await out.getData(true)) as Float32Array
    return io.output === 'logits' ? { logits: data, logitRows: allLogits ? seqLen : 1, seqLen, length: entry.length } : { hidden: data, seqLen, length: entry.length }
  }

  const drop = (sessionId: string) => {
    const e = cache.get(sessionId)
    if (e) release(e)
    cache.delete(sessionId)
  }

  return {
    range,
    io,
    device,
    spec,
    forward(sessionId, input, opts) {
      // One run at a time per shard: ORT sessions are not re-entrant on every backend.
      const next = queue.then(() => run(sessionId, input, opts?.reset ?? false, opts?.owner ?? '', opts?.allLogits ?? false))
      queue = next.catch(() => undefined)
      return next
    },
    cachedLength: (id) => cache.get(id)?.length ?? 0,
    drop,
    kvBytes: total,
    async dispose() {
      await queue
      for (const id of [...cache.keys()]) drop(id)
      await session.release()
    },
  }
}
