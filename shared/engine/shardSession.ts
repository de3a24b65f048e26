import type * as ort from 'onnxruntime-common'
import type { ShardModel } from './shardGraphCache.ts'
import type { ModelSpec } from '../model/modelSpec.ts'
import { LOGITS_FROM, POSITION_OFFSET, type LayerRange, type ShardIO } from '../model/shardGraph.ts'
import { DeviceUnavailableError, type Device, type DeviceOption, type ShardRuntime } from './runtime.ts'
import { createBatchScheduler, type BatchJob } from './batchScheduler.ts'
import { appendKv, KV_GROWTH, packKv, stackKv, type KvRows } from './kvBatch.ts'

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
  /**
   * Most sessions whose decode steps run as one batch (continuous batching); 1 runs each call
   * alone. On `webgpu` the cache stays on the GPU and calls run alone. @default 16
   */
  maxBatch?: number
  /** Prompt positions run per slice, so decode steps of other sessions run between slices. @default 64 */
  prefillChunk?: number
  /** Called after each ONNX Runtime run with its rows (sessions) and positions per row. */
  onRun?: (rows: number, positions: number) => void
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

/** A forward call waiting in (or run by) the batch scheduler. */
type Job = BatchJob & {
  sessionId: string
  input: ShardInput
  reset: boolean
  owner: string
  allLogits: boolean
  /** Prompt positions run so far, and their outputs. */
  done: number
  parts: Float32Array[]
  resolve(out: ShardOutput): void
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/**
 * A session's KV cache: ONNX Runtime's present tensors after a run alone (`tensors`), or after a
 * batched run each tensor's rows with room to grow (`rows`, written in place step by step); one of
 * the two is empty.
 */
type CacheEntry = { owner: string; length: number; tensors: Map<string, ort.Tensor>; rows: Map<string, KvRows>; lastUsed: number; bytes: number; busy: boolean }

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
  /**
   * Calls waiting for the shard, not counting those running now (a batch of decode steps runs as
   * one): what the peer reports as its queue. Absent on shards that do not queue here.
   */
  waitingCalls?(): number
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
  const kvType = io.kvType
  /** KV bytes one cached position takes (keys and values of every layer). */
  const bytesPerPosition = kvNames.length * io.kvHeads * io.headDim * (kvType === 'float16' ? 2 : 4)
  // Batches stack caches in JavaScript: float32 ones only (float16 caches stay on the GPU).
  const maxBatch = device === 'webgpu' || kvType !== 'float32' ? 1 : Math.max(1, init.maxBatch ?? 16)
  const prefillChunk = Math.max(1, init.prefillChunk ?? 64)
  const onRun = init.onRun
  const shape = { heads: io.kvHeads, headDim: io.headDim }
  /**
   * The stacked past of a batched run, per KV tensor, reused run after run (the scheduler runs one
   * call at a time): a batch of 16 on a 1.1 B model's 8 layers stacks 8 MB a step. With that and
   * the copies back out allocated anew each step, V8 ran a full collection about every second step.
   */
  const stackBuffers = new Map<string, Float32Array>()
  /** The stack buffer of a KV tensor with room for `rows` caches of `positions`; a new one has room for maxBatch rows and KV_GROWTH more positions. */
  const stackBuffer = (name: string, rows: number, positions: number): Float32Array => {
    const size = rows * io.kvHeads * positions * io.headDim
    // New sessions' prompts stack no past.
    if (size === 0) return new Float32Array(0)
    const kept = stackBuffers.get(name)
    if (kept && kept.length >= size) return kept
    const room = Math.max(rows, maxBatch) * io.kvHeads * (Math.floor(positions / KV_GROWTH) + 1) * KV_GROWTH * io.headDim
    const grown = new Float32Array(room)
    stackBuffers.set(name, grown)
    return grown
  }

  const emptyPast = () =>
    kvType === 'float16' ? new Tensor('float16', new Uint16Array(0), [1, io.kvHeads, 0, io.headDim]) : new Tensor('float32', new Float32Array(0), [1, io.kvHeads, 0, io.headDim])
  const total = () => [...cache.values()].reduce((a, e) => a + e.bytes, 0)
  const release = (e: CacheEntry) => {
    for (const t of e.tensors.values()) t.dispose()
    e.tensors.clear()
    e.rows.clear()
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

  /** Positions in an input of the kind this shard takes; ShardInputError for the wrong kind or bad values. */
  const inputLength = (input: ShardInput): number => {
    let seqLen: number
    if (io.input === 'input_ids') {
      if (!('tokens' in input)) throw new ShardInputError(`shard [${range.start}, ${range.end}) takes token ids, got a hidden state`)
      seqLen = input.tokens.length
      if (input.tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= spec.vocabSize)) {
        throw new ShardInputError(`token id out of range [0, ${spec.vocabSize})`)
      }
    } else {
      if (!('hidden' in input)) throw new ShardInputError(`shard [${range.start}, ${range.end}) takes a hidden state, got token ids`)
      if (input.hidden.length === 0 || input.hidden.length % H !== 0) {
        throw new ShardInputError(`hidden state of ${input.hidden.length} values is not a whole number of rows of ${H}`)
      }
      seqLen = input.hidden.length / H
    }
    if (seqLen === 0) throw new ShardInputError('empty input')
    return seqLen
  }
  /** Positions `[from, to)` of a (validated) input. */
  const slice = (input: ShardInput, from: number, to: number): ShardInput =>
    'tokens' in input ? { tokens: input.tokens.slice(from, to) } : { hidden: input.hidden.slice(from * H, to * H) }

  /** Refuses a call that would pass the model's positions or the KV budget, before it allocates the larger cache. */
  const checkRoom = (sessionId: string, cachedBefore: number, seqLen: number) => {
    if (cachedBefore + seqLen > spec.maxPositions) {
      throw new ShardInputError(`sequence of ${cachedBefore + seqLen} positions exceeds the model's ${spec.maxPositions}`)
    }
    const needed = (cachedBefore + seqLen) * bytesPerPosition
    if (needed > budget) {
      drop(sessionId)
      throw new KvBudgetError(needed, budget)
    }
  }

  /** An empty cache entry for a session starting here. */
  const newEntry = (sessionId: string, owner: string): CacheEntry => {
    const entry: CacheEntry = { owner, length: 0, tensors: new Map(), rows: new Map(), lastUsed: 0, bytes: 0, busy: false }
    cache.set(sessionId, entry)
    return entry
  }

  const run = async (sessionId: string, input: ShardInput, reset: boolean, owner: string, allLogits = false): Promise<ShardOutput> => {
    if (reset) drop(sessionId)
    else if (!cache.has(sessionId)) throw new UnknownSessionError(sessionId)
    const feeds: Record<string, ort.Tensor> = {}
    const seqLen = inputLength(input)
    if ('tokens' in input) feeds.input_ids = new Tensor('int64', BigInt64Array.from(input.tokens, BigInt), [1, seqLen])
    else feeds.hidden_states = new Tensor('float32', input.hidden, [1, seqLen, H])
    checkRoom(sessionId, cache.get(sessionId)?.length ?? 0, seqLen)
    const entry = cache.get(sessionId) ?? newEntry(sessionId, owner)
    feeds[POSITION_OFFSET] = new Tensor('int64', BigInt64Array.of(BigInt(entry.length)), [1])
    if (io.output === 'logits') feeds[LOGITS_FROM] = new Tensor('int64', BigInt64Array.of(allLogits ? 0n : -1n), [1])
    for (const name of kvNames) {
      const rows = entry.rows.get(name)
      // A session batched until now runs alone: its rows packed into a tensor (once; its present is a tensor again).
      feeds[`past_${name}`] = rows ? new Tensor('float32', packKv(rows, entry.length, shape), [1, io.kvHeads, entry.length, io.headDim]) : (entry.tensors.get(name) ?? emptyPast())
    }
    entry.busy = true
    let results: ort.InferenceSession.ReturnType
    try {
      results = await session.run(feeds)
    } finally {
      entry.busy = false
    }
    onRun?.(1, seqLen)
    const old = entry.tensors
    entry.tensors = new Map(kvNames.map((n) => [n, results[`present_${n}`]!]))
    for (const t of old.values()) t.dispose()
    entry.rows.clear()
    entry.length += seqLen
    entry.lastUsed = performance.now()
    entry.bytes = bytesPerPosition * entry.length
    evict(sessionId)
    const out = results[io.output]!
    const data = (await out.getData(true)) as Float32Array
    return io.output === 'logits' ? { logits: data, logitRows: allLogits ? seqLen : 1, seqLen, length: entry.length } : { hidden: data, seqLen, length: entry.length }
  }

  type StackedRow = { sessionId: string; entry: CacheEntry; input: ShardInput; allLogits: boolean }

  /**
   * The next `n` positions of several sessions as one run: their caches padded to the longest and
   * stacked along the batch dimension, each row at its own position; each row's present KV is cut
   * back out into its session's cache. Throws (settling nothing) when the run fails.
   */
  const runStacked = async (rows: StackedRow[], n: number): Promise<ShardOutput[]> => {
    const B = rows.length
    const feeds: Record<string, ort.Tensor> = {}
    if (io.input === 'input_ids') {
      feeds.input_ids = new Tensor('int64', BigInt64Array.from(rows.flatMap((r) => (r.input as { tokens: number[] }).tokens), BigInt), [B, n])
    } else {
      const hidden = new Float32Array(B * n * H)
      rows.forEach((r, b) => hidden.set((r.input as { hidden: Float32Array }).hidden, b * n * H))
      feeds.hidden_states = new Tensor('float32', hidden, [B, n, H])
    }
    feeds[POSITION_OFFSET] = new Tensor('int64', BigInt64Array.from(rows, (r) => BigInt(r.entry.length)), [B])
    const allLogits = rows.some((r) => r.allLogits)
    if (io.output === 'logits') feeds[LOGITS_FROM] = new Tensor('int64', BigInt64Array.of(allLogits ? 0n : -1n), [1])
    const none = new Float32Array(0)
    const longest = rows.reduce((m, r) => Math.max(m, r.entry.length), 0)
    let padded = 0
    for (const name of kvNames) {
      const sources = rows.map((r) => {
        const kept = r.entry.rows.get(name)
        if (kept) return { data: kept.data, length: r.entry.length, stride: kept.capacity }
        return { data: (r.entry.tensors.get(name)?.data as Float32Array | undefined) ?? none, length: r.entry.length }
      })
      const stacked = stackKv(sources, shape, stackBuffer(name, B, longest))
      padded = stacked.padded
      feeds[`past_${name}`] = new Tensor('float32', stacked.data, [B, io.kvHeads, padded, io.headDim])
    }
    // Busy until evict below has run: the rows' own growth must not evict one of them.
    for (const r of rows) r.entry.busy = true
    let results: ort.InferenceSession.ReturnType
    try {
      results = await session.run(feeds)
    } catch (e) {
      for (const r of rows) r.entry.busy = false
      throw e
    }
    onRun?.(B, n)
    const now = performance.now()
    // Room for KV_GROWTH more positions at a time (never past the model's), so most steps only write their new one.
    const capacities = rows.map((r) => Math.min(spec.maxPositions, Math.ceil((r.entry.length + n + 1) / KV_GROWTH) * KV_GROWTH))
    for (const name of kvNames) {
      const present = results[`present_${name}`]!
      const data = present.data as Float32Array
      rows.forEach((r, b) => {
        r.entry.rows.set(name, appendKv(data, present.dims[2]!, { index: b, past: r.entry.length, added: n }, padded, io.presentLayout, shape, r.entry.rows.get(name), capacities[b]!))
      })
      present.dispose()
    }
    rows.forEach((r) => {
      for (const t of r.entry.tensors.values()) t.dispose()
      r.entry.tensors.clear()
      r.entry.length += n
      r.entry.lastUsed = now
      r.entry.bytes = bytesPerPosition * (r.entry.rows.values().next().value?.capacity ?? r.entry.length)
    })
    evict(rows[0]!.sessionId)
    for (const r of rows) r.entry.busy = false
    const out = results[io.output]!
    const data = (await out.getData(true)) as Float32Array
    const X = data.length / B
    return rows.map((r, b) => {
      if (io.output !== 'logits') return { hidden: data.slice(b * X, (b + 1) * X), seqLen: n, length: r.entry.length }
      // With allLogits on any row every row has n logits rows; the others keep their last one.
      const rowsOut = allLogits && !r.allLogits ? 1 : X / spec.vocabSize
      return { logits: data.slice((b + 1) * X - rowsOut * spec.vocabSize, (b + 1) * X), logitRows: rowsOut, seqLen: n, length: r.entry.length }
    })
  }

  /** Decode steps of several cached sessions as one run (alone when only one is left to run); false when none ran. */
  const runBatch = async (jobs: Job[]): Promise<boolean> => {
    const rows: Array<StackedRow & { job: Job }> = []
    for (const job of jobs) {
      try {
        const entry = cache.get(job.sessionId)
        if (!entry) throw new UnknownSessionError(job.sessionId)
        inputLength(job.input)
        checkRoom(job.sessionId, entry.length, 1)
        rows.push({ job, entry, sessionId: job.sessionId, input: job.input, allLogits: false })
      } catch (e) {
        job.fail(e)
      }
    }
    if (rows.length <= 1) {
      for (const { job } of rows) await run(job.sessionId, job.input, false, job.owner, job.allLogits).then(job.resolve, job.fail)
      return rows.length === 1
    }
    let outs: ShardOutput[]
    try {
      outs = await runStacked(rows, 1)
    } catch (e) {
      for (const r of rows) r.job.fail(e)
      return true
    }
    rows.forEach((r, b) => r.job.resolve(outs[b]!))
    return true
  }

  /** Positions of a prefill job's next slice (the whole prompt when batching is off). */
  const nextSlice = (job: Job): number => {
    const total = 'tokens' in job.input ? job.input.tokens.length : Math.floor(job.input.hidden.length / H)
    return maxBatch > 1 ? Math.min(prefillChunk, total - job.done) : total
  }
  /** A prefill's first slice of a session it starts (over): the slice has no past. */
  const startsSession = (job: Job) => job.reset && job.done === 0
  /**
   * Only the first slices of new sessions share a run: GroupQueryAttention runs several positions
   * of several rows only when no row has a past.
   */
  const prefillSlice = (job: Job) => ({ positions: nextSlice(job), batchable: startsSession(job) })

  /** A prefill's slice ran: keeps its output; settles the job after its last slice. True once it has. */
  const sliceDone = (job: Job, out: ShardOutput, n: number, total: number): boolean => {
    // Without allLogits only the last slice's logits row is wanted: earlier slices' rows are dropped.
    if (io.output === 'logits' && !job.allLogits) job.parts = [out.logits!]
    else job.parts.push((out.hidden ?? out.logits)!)
    job.done += n
    if (job.done < total) return false
    const data = job.parts.length === 1 ? job.parts[0]! : concat(job.parts)
    job.resolve(io.output === 'logits' ? { logits: data, logitRows: job.allLogits ? total : 1, seqLen: total, length: out.length } : { hidden: data, seqLen: total, length: out.length })
    return true
  }

  /**
   * The next slice of each prefill (new sessions' first slices of one length, from the scheduler)
   * as one run, or alone; resolves with the jobs that ended (their last slice ran, or they failed).
   */
  const runPrefill = async (jobs: Job[]): Promise<Job[]> => {
    const ended: Job[] = []
    const rows: Array<{ job: Job; total: number; n: number; input: ShardInput }> = []
    for (const job of jobs) {
      try {
        const total = inputLength(job.input)
        if (job.done === 0) checkRoom(job.sessionId, startsSession(job) ? 0 : cache.get(job.sessionId)?.length ?? 0, total)
        const n = nextSlice(job)
        const input = n === total ? job.input : slice(job.input, job.done, job.done + n)
        rows.push({ job, total, n, input })
      } catch (e) {
        job.fail(e)
        ended.push(job)
      }
    }
    if (rows.length === 1) {
      const { job, input, n, total } = rows[0]!
      try {
        if (sliceDone(job, await run(job.sessionId, input, startsSession(job), job.owner, job.allLogits), n, total)) ended.push(job)
      } catch (e) {
        job.fail(e)
        ended.push(job)
      }
      return ended
    }
    if (!rows.length) return ended
    // Several rows are first slices of sessions starting (over), as prefillSlice lets share a run: each gets a new entry.
    const stacked = rows.map(({ job, input }) => {
      drop(job.sessionId)
      return { sessionId: job.sessionId, entry: newEntry(job.sessionId, job.owner), input, allLogits: job.allLogits }
    })
    let outs: ShardOutput[]
    try {
      outs = await runStacked(stacked, rows[0]!.n)
    } catch (e) {
      for (const r of rows) {
        r.job.fail(e)
        ended.push(r.job)
      }
      return ended
    }
    rows.forEach((r, b) => {
      if (sliceDone(r.job, outs[b]!, r.n, r.total)) ended.push(r.job)
    })
    return ended
  }

  const scheduler = createBatchScheduler<Job>({ runDecode: runBatch, runPrefill, prefillSlice, maxBatch, maxPrefillPositions: 4 * prefillChunk })

  const drop = (sessionId: string) => {
    const e = cache.get(sessionId)
    if (e) release(e)
    cache.delete(sessionId)
    scheduler.forget(sessionId)
    // Nothing left to batch: the stack buffers (as large as the largest batch's caches) go too.
    if (cache.size === 0) stackBuffers.clear()
  }

  if (device === 'webgpu') {
    // Compile the kernels of a prefill and a decode step now, not on the first request; a float16
    // shard on an adapter without shader-f16 fails here, at load, with the adapter named.
    const warm = '\u0000warm-up'
    try {
      const T = Math.min(16, spec.maxPositions - 1)
      const prompt: ShardInput = io.input === 'input_ids' ? { tokens: Array.from({ length: T }, (_, i) => i % spec.vocabSize) } : { hidden: new Float32Array(T * H) }
      await run(warm, prompt, true, '')
      await run(warm, io.input === 'input_ids' ? { tokens: [0] } : { hidden: new Float32Array(H) }, false, '')
    } catch (e) {
      await session.release()
      throw new DeviceUnavailableError('webgpu', e)
    } finally {
      drop(warm)
    }
  }

  return {
    range,
    io,
    device,
    spec,
    forward(sessionId, input, opts) {
      const reset = opts?.reset ?? false
      return new Promise<ShardOutput>((resolve, reject) => {
        // The scheduler runs one call at a time per shard (batching decode steps of several sessions).
        const decode = !reset && (('tokens' in input && input.tokens.length === 1) || ('hidden' in input && input.hidden.length === H))
        scheduler.submit({ key: sessionId, decode, sessionId, input, reset, owner: opts?.owner ?? '', allLogits: opts?.allLogits ?? false, done: 0, parts: [], resolve, fail: reject })
      })
    },
    cachedLength: (id) => cache.get(id)?.length ?? 0,
    drop,
    kvBytes: total,
    waitingCalls: scheduler.waiting,
    async dispose() {
      await scheduler.idle()
      for (const id of [...cache.keys()]) drop(id)
      await session.release()
    },
  }
}
