import type { ShardGraph } from '../model/buildShardGraph.ts'
import type { ModelSource } from '../model/modelSource.ts'
import type { Int4AccuracyLevel, LayerRange, ShardIO, WeightFormat } from '../model/shardGraph.ts'

/**
 * A shard graph built before and kept where the runtime opens it from (in Node: a folder with
 * `model.onnx` and its external weights), so a load skips reading and building the checkpoint.
 */
export type StoredShard = {
  io: ShardIO
  range: LayerRange
  /** Where the runtime finds the model (a folder in Node). */
  location: string
  weightBytes: number
}

/** What a built shard depends on, besides the graph builder's own code. */
export type ShardBuildKey = {
  source: ModelSource
  range: LayerRange
  weights: WeightFormat
  int4AccuracyLevel: Int4AccuracyLevel
}

/** Receives a graph while it is built: the weights piece by piece, then the model. */
export type ShardGraphWriter = {
  /** Appends weight bytes in order (the builder hands them over after each piece and forgets them). */
  writeWeights(chunks: Uint8Array[]): Promise<void>
  /** Writes the rest of the graph and makes the shard visible to `get`. */
  finish(graph: ShardGraph): Promise<StoredShard>
  /** Discards a partial shard (the build failed or was aborted). */
  abort(): Promise<void>
}

/** Built shard graphs by checkpoint, layer range and weight format. */
export type ShardGraphCache = {
  /** The stored shard for this key, or null when there is none (or the checkpoint changed since). */
  get(key: ShardBuildKey): Promise<StoredShard | null>
  /** Starts storing a shard for this key; null when this source cannot be cached (its identity is unknown). */
  create(key: ShardBuildKey): Promise<ShardGraphWriter | null>
}

/** What a runtime opens a session from: a graph in memory, or one stored before. */
export type ShardModel = ShardGraph | StoredShard

export const isStoredShard = (m: ShardModel): m is StoredShard => 'location' in m
