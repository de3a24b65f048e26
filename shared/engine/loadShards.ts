import { assertLayerRange, buildShardGraph } from '../model/buildShardGraph.ts'
import type { ModelSource } from '../model/modelSource.ts'
import { parseModelConfig, type ModelSpec } from '../model/modelSpec.ts'
import { openSafetensors, type SafetensorsIndex } from '../model/safetensors.ts'
import type { Int4AccuracyLevel, LayerRange, WeightFormat } from '../model/shardGraph.ts'
import type { DeviceOption, ShardRuntime } from './runtime.ts'
import type { ShardGraphCache, ShardModel } from './shardGraphCache.ts'
import { createShardSession, type ShardSession } from './shardSession.ts'
import { pickWeightFormat, type WeightChoice } from './pickWeightFormat.ts'

export class StagesError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'StagesError'
  }
}

/** Parses `0-3,3-8` into layer ranges (end exclusive). */
export function parseStages(text: string): LayerRange[] {
  return text.split(',').map((part) => {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part)
    if (!m) throw new StagesError(`stage "${part}" is not of the form <start>-<end>`)
    return { start: Number(m[1]), end: Number(m[2]) }
  })
}

/** Checks that ranges are contiguous and cover `[0, L)` exactly. */
export function assertCoverage(ranges: LayerRange[], numLayers: number): void {
  let next = 0
  for (const r of ranges) {
    assertLayerRange(r, numLayers)
    if (r.start !== next) throw new StagesError(`stages must be contiguous from 0: expected a stage starting at layer ${next}, got ${r.start}-${r.end}`)
    next = r.end
  }
  if (next !== numLayers) throw new StagesError(`stages end at layer ${next}; the model has ${numLayers} layers`)
}

export type LoadShardsParameters = {
  source: ModelSource
  runtime: ShardRuntime
  /** Layer ranges to load; the whole model when absent. */
  ranges?: LayerRange[]
  /** Require the ranges to cover `[0, L)` contiguously (a whole pipeline in one process). */
  requireCoverage?: boolean
  device?: DeviceOption
  /** The weight format; `auto` picks float16 on WebGPU adapters with `shader-f16`, else float32. @default 'float32' */
  weights?: WeightChoice
  /** MatMulNBits accuracy level for int4 weights. @default 4 */
  int4AccuracyLevel?: Int4AccuracyLevel
  kvBudgetBytes?: number
  /** Most sessions per batched decode step (ShardSessionInit.maxBatch); 1 turns batching off. @default 16 */
  maxBatch?: number
  /** Built shards kept between loads (keyed by checkpoint, range and weight format). @default none: build every time */
  cache?: ShardGraphCache
  /** Progress of reading and building, across all shards. */
  onProgress?: (done: number, total: number) => void
  /** Progress of one shard: each piece read and built, then its session (the last step). */
  onRangeProgress?: (range: LayerRange, done: number, total: number) => void
  /**
   * Reads the checkpoint's config and safetensors headers: a caller that loads from one checkpoint
   * again and again (the page's engine worker) passes its cache here. @default readCheckpoint
   */
  openCheckpoint?: (source: ModelSource, signal?: AbortSignal) => Promise<Checkpoint>
  signal?: AbortSignal
}

/** What every shard of one checkpoint is built from: its config and its tensors' index. */
export type Checkpoint = { spec: ModelSpec; index: SafetensorsIndex }

/** Reads `config.json` and the safetensors headers (small: no tensor data). */
export async function readCheckpoint(source: ModelSource, signal?: AbortSignal): Promise<Checkpoint> {
  const spec = parseModelConfig(await source.readText('config.json', signal))
  return { spec, index: await openSafetensors(source, signal) }
}

/** Reads config and safetensors headers, builds each shard's graph and opens its session. */
export async function loadShards(params: LoadShardsParameters): Promise<{ spec: ModelSpec; shards: ShardSession[]; weights: WeightFormat }> {
  const { source, runtime, signal } = params
  const { spec, index } = await (params.openCheckpoint ?? readCheckpoint)(source, signal)
  const weights = await pickWeightFormat(params.weights, runtime, params.device ?? 'auto')
  signal?.throwIfAborted()
  const ranges = params.ranges ?? [{ start: 0, end: spec.numLayers }]
  if (params.requireCoverage) assertCoverage(ranges, spec.numLayers)
  else for (const r of ranges) assertLayerRange(r, spec.numLayers)
  const pieces = ranges.map((r) => r.end - r.start + (r.start === 0 ? 1 : 0) + (r.end === spec.numLayers ? 1 : 0))
  const total = pieces.reduce((a, b) => a + b, 0)
  let before = 0
  const shards: ShardSession[] = []
  try {
    for (const [k, range] of ranges.entries()) {
      const offset = before
      let steps = 1
      const onProgress = (done: number, n: number) => {
        steps = n + 1
        params.onProgress?.(offset + done, total)
        params.onRangeProgress?.(range, done, steps)
      }
      const key = { source, range, weights, int4AccuracyLevel: params.int4AccuracyLevel ?? 4 } as const
      let graph: ShardModel | null = (await params.cache?.get(key)) ?? null
      if (graph) onProgress(pieces[k]!, pieces[k]!)
      else {
        const writer = await params.cache?.create(key)
        try {
          // With a cache the weights go to its files as they are built: no copy of all of them in memory.
          const built = await buildShardGraph({ spec, index, range, signal, weights: key.weights, int4AccuracyLevel: key.int4AccuracyLevel, onWeights: writer ? (c) => writer.writeWeights(c) : undefined, onProgress })
          graph = writer ? await writer.finish(built) : built
        } catch (e) {
          await writer?.abort()
          throw e
        }
      }
      before += pieces[k]!
      shards.push(await createShardSession({ spec, graph, runtime, device: params.device, kvBudgetBytes: params.kvBudgetBytes, maxBatch: params.maxBatch }))
      params.onRangeProgress?.(range, steps, steps)
      signal?.throwIfAborted()
    }
  } catch (e) {
    // allSettled: a failing dispose must not hide why the load failed.
    await Promise.allSettled(shards.map((s) => s.dispose()))
    throw e
  }
  return { spec, shards, weights }
}
