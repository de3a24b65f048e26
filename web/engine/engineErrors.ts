import type { LayerRange } from '../../shared/model/shardGraph.ts'
import type { SerializedError } from './engineMessages.ts'

/** A request named a shard id that this worker does not hold (never loaded, or disposed). */
export class UnknownShardError extends Error {
  readonly shard: string

  constructor(shard: string) {
    super(`no loaded shard "${shard}"`)
    this.shard = shard
    this.name = 'UnknownShardError'
  }
}

/** The stages of a generate call do not chain from layer 0 to the last layer of one checkpoint. */
export class StageChainError extends Error {
  readonly ranges: LayerRange[]

  constructor(ranges: LayerRange[], numLayers: number, why: string) {
    super(`stages ${ranges.map((r) => `[${r.start}, ${r.end})`).join(' ')} do not cover [0, ${numLayers}) in order: ${why}`)
    this.ranges = ranges
    this.name = 'StageChainError'
  }
}

/** A message to the worker that is not a valid `EngineRequest`. */
export class EngineRequestError extends Error {
  constructor(message: string) {
    super(`invalid engine request: ${message}`)
    this.name = 'EngineRequestError'
  }
}

/**
 * An error raised in the engine worker, re-thrown on the page. `name` keeps the worker's error
 * class name (`DeviceUnavailableError`, `AbortError`, …); `remoteStack` its stack there.
 */
export class EngineWorkerError extends Error {
  readonly remoteStack?: string

  constructor(error: SerializedError) {
    super(error.message)
    this.name = error.name
    this.remoteStack = error.stack
  }
}

/** The worker died or could not start: every pending call fails with this. */
export class EngineWorkerCrashedError extends Error {
  constructor(detail: string) {
    super(`engine worker crashed: ${detail}`)
    this.name = 'EngineWorkerCrashedError'
  }
}
