import type { WeightFormat } from '../../shared/model/shardGraph.ts'
import type { Device, DeviceOption } from '../../shared/engine/runtime.ts'
import type { GenerateResult } from '../../shared/engine/generate.ts'
import type { SamplingParams } from '../../shared/engine/sampling.ts'
import type { ShardInput, ShardOutput } from '../../shared/engine/shardSession.ts'
import type { LayerRange, ShardIO } from '../../shared/model/shardGraph.ts'
import type { GpuAdapterInfo } from './gpuAdapter.ts'

/** Loads shards of one checkpoint, fetched with HTTP Range requests from `<baseUrl>/model.safetensors`. */
export type LoadParams = {
  /** Folder URL of the checkpoint (`config.json`, `model.safetensors`); relative URLs resolve against the page. */
  baseUrl: string
  /** One shard per range, in this order. */
  ranges: LayerRange[]
  /** @default 'auto' */
  device?: DeviceOption
  /** KV cache budget of each shard. @default 1 GiB */
  kvBudgetBytes?: number
}

/** A loaded shard in the worker, named by `id` in later calls. */
export type ShardHandle = {
  id: string
  range: LayerRange
  /** The execution provider that really runs it. */
  device: Device
  io: ShardIO
}

export type LoadResult = {
  shards: ShardHandle[]
  numLayers: number
  hiddenSize: number
  vocabSize: number
  eosTokenIds: number[]
  /** The WebGPU adapter, when some shard runs on `webgpu`. */
  adapter: GpuAdapterInfo | null
  /** The weight format the shards were built in: float16 on adapters with `shader-f16`, else float32. */
  weights: WeightFormat
}

export type GenerateParams = {
  /** Shard ids whose ranges chain from layer 0 to the last layer. */
  shards: string[]
  inputIds: number[]
  maxNewTokens: number
  sampling?: SamplingParams
  eosTokenIds?: number[]
  sessionId?: string
  /** Return every row of logits (prefill and each decode step). */
  keepLogits?: boolean
  /** Send a `token` message per generated token. */
  streamTokens?: boolean
}

export type ForwardParams = {
  shard: string
  sessionId: string
  input: ShardInput
  /** Start the session over (drop its KV cache first). */
  reset?: boolean
}

export type DropParams = { shard: string; sessionId: string }

/** Without `shards`, disposes every shard and forgets every checkpoint. */
export type DisposeParams = { shards?: string[] }

/** Page → worker. Every request but `abort` gets exactly one reply with its `id`: its result or `error`. */
export type EngineRequest =
  | { type: 'load'; id: number; params: LoadParams }
  | { type: 'generate'; id: number; params: GenerateParams }
  | { type: 'forward'; id: number; params: ForwardParams }
  | { type: 'drop'; id: number; params: DropParams }
  | { type: 'dispose'; id: number; params: DisposeParams }
  /** Aborts request `target`, which then replies with an `AbortError`. */
  | { type: 'abort'; id: number; target: number }

export type EngineCall = Exclude<EngineRequest['type'], 'abort'>

/** An error as it crosses the worker boundary. */
export type SerializedError = { name: string; message: string; stack?: string }

/** Worker → page. */
export type EngineResponse =
  | { type: 'loaded'; id: number; result: LoadResult }
  | { type: 'generated'; id: number; result: GenerateResult }
  | { type: 'forwarded'; id: number; result: ShardOutput }
  | { type: 'dropped'; id: number }
  | { type: 'disposed'; id: number }
  /** Load progress: pieces of a shard read and built, then its session created. */
  | { type: 'progress'; id: number; range: LayerRange; done: number; total: number }
  | { type: 'token'; id: number; tokenId: number; index: number }
  /** `id` null: a fault outside any request (an unhandled rejection in the worker). */
  | { type: 'error'; id: number | null; error: SerializedError }

/** The reply each call resolves with. */
export type EngineReply = {
  load: Extract<EngineResponse, { type: 'loaded' }>
  generate: Extract<EngineResponse, { type: 'generated' }>
  forward: Extract<EngineResponse, { type: 'forwarded' }>
  drop: Extract<EngineResponse, { type: 'dropped' }>
  dispose: Extract<EngineResponse, { type: 'disposed' }>
}

export const REPLY_TYPE: { [K in EngineCall]: EngineReply[K]['type'] } = {
  load: 'loaded',
  generate: 'generated',
  forward: 'forwarded',
  drop: 'dropped',
  dispose: 'disposed',
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack }
  return { name: 'Error', message: String(e) }
}

/** A typed array's buffer when the array owns all of it (so moving it detaches nothing else), else none. */
function ownBuffer(a: Float32Array | undefined): ArrayBuffer[] {
  return a && a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? [a.buffer] : []
}

/**
 * What a message may move instead of copy: the hidden state (and logits) of a forward call, each
 * step's one tensor between the page and the worker. The sender must not touch them afterwards.
 */
export function transferablesOf(message: EngineRequest | EngineResponse): Transferable[] {
  if (message.type === 'forward' && 'hidden' in message.params.input) return ownBuffer(message.params.input.hidden)
  if (message.type === 'forwarded') return [...ownBuffer(message.result.hidden), ...ownBuffer(message.result.logits)]
  return []
}
