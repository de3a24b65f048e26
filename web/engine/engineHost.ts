import { generate, type ShardStage } from '../../shared/engine/generate.ts'
import type { ShardRuntime } from '../../shared/engine/runtime.ts'
import { loadShards, readCheckpoint, type Checkpoint } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { httpModelSource, type ModelSource } from '../../shared/model/modelSource.ts'
import { EngineRequestError, StageChainError, UnknownShardError } from './engineErrors.ts'
import {
  serializeError,
  type DisposeParams,
  type EngineRequest,
  type EngineResponse,
  type ForwardParams,
  type GenerateParams,
  type LoadParams,
  type LoadResult,
} from './engineMessages.ts'
import { engineRequestSchema } from './engineRequestSchema.ts'
import { requestGpuAdapterInfo } from './gpuAdapter.ts'

export type EngineHostInit = {
  runtime: ShardRuntime
  /** Sends a reply to the page. */
  post(message: EngineResponse): void
  /** @default globalThis.fetch */
  fetch?: typeof fetch
}

/** Turns requests into replies; the worker only wires it to `postMessage`. */
export type EngineHost = {
  /** Handles one message; never throws and never rejects: every failure becomes an `error` reply. */
  handle(message: unknown): void
}

/**
 * Lets queued messages (an `abort`, another session's `forward`) in between two shard runs: a
 * `wasm` run settles in microtasks only, so without this a whole generate would hold the worker.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel()
    channel.port1.onmessage = () => {
      channel.port1.close()
      resolve()
    }
    channel.port2.postMessage(null)
  })
}

/** A stage that yields to the worker's event loop before each run. */
function yieldingStage(session: ShardSession): ShardStage {
  return {
    async forward(sessionId, input, opts) {
      await yieldToEventLoop()
      return session.forward(sessionId, input, opts)
    },
    drop: (sessionId) => session.drop(sessionId),
  }
}

type LoadedShard = { session: ShardSession; checkpoint: Checkpoint }

/** The engine as a worker holds it: checkpoints by URL, shard sessions by id. */
export function createEngineHost(init: EngineHostInit): EngineHost {
  const checkpoints = new Map<string, Promise<Checkpoint>>()
  const shards = new Map<string, LoadedShard>()
  const inFlight = new Map<number, AbortController>()
  let nextShard = 0

  // Shared by concurrent loads, so no one caller's signal cancels it (config and headers only: small).
  const openCheckpoint = (baseUrl: string, source: ModelSource): Promise<Checkpoint> => {
    let p = checkpoints.get(baseUrl)
    if (!p) {
      p = readCheckpoint(source)
      checkpoints.set(baseUrl, p)
      p.catch(() => checkpoints.delete(baseUrl))
    }
    return p
  }

  const shard = (id: string): LoadedShard => {
    const s = shards.get(id)
    if (!s) throw new UnknownShardError(id)
    return s
  }

  const load = async (id: number, params: LoadParams, signal: AbortSignal): Promise<LoadResult> => {
    const baseUrl = new URL(params.baseUrl, globalThis.location?.href).href.replace(/\/+$/, '')
    const source = httpModelSource({ baseUrl, fetch: init.fetch })
    // The cached object itself: the stages of one generate must come from one checkpoint.
    let checkpoint: Checkpoint | undefined
    const { spec, shards: sessions, weights } = await loadShards({
      source,
      runtime: init.runtime,
      ranges: params.ranges,
      device: params.device,
      // float16 where the adapter has shader-f16: half the download-built bytes and GPU memory.
      weights: 'auto',
      kvBudgetBytes: params.kvBudgetBytes,
      openCheckpoint: async () => (checkpoint = await openCheckpoint(baseUrl, source)),
      onRangeProgress: (range, done, total) => init.post({ type: 'progress', id, range, done, total }),
      signal,
    })
    const created: [string, LoadedShard][] = sessions.map((session) => [`shard-${nextShard++}`, { session, checkpoint: checkpoint! }])
    for (const [shardId, s] of created) shards.set(shardId, s)
    const onGpu = created.some(([, s]) => s.session.device === 'webgpu')
    return {
      shards: created.map(([shardId, { session }]) => ({ id: shardId, range: session.range, device: session.device, io: session.io })),
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      vocabSize: spec.vocabSize,
      eosTokenIds: spec.eosTokenIds,
      adapter: onGpu ? await requestGpuAdapterInfo() : null,
      weights,
    }
  }

  /** The sessions of `ids`, checked to chain `[0, L)` of one checkpoint. */
  const stages = (ids: string[]): ShardSession[] => {
    const loaded = ids.map(shard)
    const ranges = loaded.map((s) => s.session.range)
    const first = loaded[0]!.checkpoint
    const L = first.spec.numLayers
    if (loaded.some((s) => s.checkpoint !== first)) throw new StageChainError(ranges, L, 'they come from different checkpoints')
    let at = 0
    for (const r of ranges) {
      if (r.start !== at) throw new StageChainError(ranges, L, `layer ${at} is followed by a shard starting at ${r.start}`)
      at = r.end
    }
    if (at !== L) throw new StageChainError(ranges, L, `the last stage ends at layer ${at}`)
    return loaded.map((s) => s.session)
  }

  const run = async (id: number, params: GenerateParams, signal: AbortSignal) =>
    generate({
      stages: stages(params.shards).map(yieldingStage),
      inputIds: params.inputIds,
      maxNewTokens: params.maxNewTokens,
      sampling: params.sampling,
      eosTokenIds: params.eosTokenIds,
      sessionId: params.sessionId,
      keepLogits: params.keepLogits,
      onToken: params.streamTokens ? (tokenId, i) => init.post({ type: 'token', id, tokenId, index: i }) : undefined,
      signal,
    })

  const forward = (params: ForwardParams) => shard(params.shard).session.forward(params.sessionId, params.input, { reset: params.reset })

  const dispose = async (params: DisposeParams) => {
    const ids = params.shards ?? [...shards.keys()]
    const sessions = ids.map((sid) => shard(sid).session)
    for (const sid of ids) shards.delete(sid)
    await Promise.all(sessions.map((s) => s.dispose()))
    if (!params.shards) checkpoints.clear()
  }

  const dispatch = async (req: Exclude<EngineRequest, { type: 'abort' }>, signal: AbortSignal): Promise<EngineResponse> => {
    switch (req.type) {
      case 'load':
        return { type: 'loaded', id: req.id, result: await load(req.id, req.params, signal) }
      case 'generate':
        return { type: 'generated', id: req.id, result: await run(req.id, req.params, signal) }
      case 'forward':
        return { type: 'forwarded', id: req.id, result: await forward(req.params) }
      case 'drop':
        shard(req.params.shard).session.drop(req.params.sessionId)
        return { type: 'dropped', id: req.id }
      case 'dispose':
        await dispose(req.params)
        return { type: 'disposed', id: req.id }
    }
  }

  return {
    handle(message) {
      const parsed = engineRequestSchema.safeParse(message)
      if (!parsed.success) {
        const id = typeof (message as { id?: unknown })?.id === 'number' ? (message as { id: number }).id : null
        const issue = parsed.error.issues[0]
        const error = new EngineRequestError(`${issue?.path.join('.') || '(root)'}: ${issue?.message}`)
        init.post({ type: 'error', id, error: serializeError(error) })
        return
      }
      const req = parsed.data
      if (req.type === 'abort') {
        inFlight.get(req.target)?.abort()
        return
      }
      const controller = new AbortController()
      inFlight.set(req.id, controller)
      dispatch(req, controller.signal)
        .then(init.post, (e: unknown) => init.post({ type: 'error', id: req.id, error: serializeError(e) }))
        .catch((e: unknown) => init.post({ type: 'error', id: req.id, error: serializeError(e) }))
        .finally(() => inFlight.delete(req.id))
    },
  }
}
