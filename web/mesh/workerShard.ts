import type { ShardInput, ShardOutput, ShardSession } from '../../shared/engine/shardSession.ts'
import { ShardInputError, UnknownSessionError } from '../../shared/engine/shardSession.ts'
import { EngineWorkerError } from '../engine/engineErrors.ts'
import type { LayerRange } from '../../shared/model/shardGraph.ts'
import type { EngineClient } from '../engine/engineClient.ts'
import type { LoadResult, ShardHandle } from '../engine/engineMessages.ts'

/** What the forward service uses of a shard. */
export type ServedShard = Pick<ShardSession, 'range' | 'forward' | 'cachedLength' | 'drop'> & {
  spec: { numLayers: number; vocabSize: number; hiddenSize: number }
}

/**
 * A shard loaded in the engine worker, seen as the forward service's shard: calls go to the
 * worker; cached lengths are tracked here on the main thread so `cachedLength` is synchronous.
 */
export function workerShard(engine: EngineClient, loaded: LoadResult, handle: ShardHandle): ServedShard {
  const lengths = new Map<string, number>()
  const range: LayerRange = handle.range
  return {
    range,
    spec: { numLayers: loaded.numLayers, vocabSize: loaded.vocabSize, hiddenSize: loaded.hiddenSize },
    async forward(sessionId: string, input: ShardInput, opts: { reset?: boolean } = {}): Promise<ShardOutput> {
      if (opts.reset) lengths.delete(sessionId)
      else if (!lengths.has(sessionId)) throw new UnknownSessionError(sessionId)
      try {
        const out = await engine.forward({ shard: handle.id, sessionId, input, reset: opts.reset })
        lengths.set(sessionId, out.length)
        return out
      } catch (e) {
        // The worker's errors cross as names (EngineWorkerError keeps the worker's class name): this
        // boundary rebuilds the classes the forward service tells apart by instanceof.
        if (e instanceof EngineWorkerError && e.name === 'UnknownSessionError') {
          lengths.delete(sessionId)
          throw new UnknownSessionError(sessionId)
        }
        if (e instanceof EngineWorkerError && e.name === 'ShardInputError') throw new ShardInputError(e.message)
        throw e
      }
    },
    cachedLength: (sessionId: string) => lengths.get(sessionId) ?? 0,
    drop(sessionId: string) {
      lengths.delete(sessionId)
      engine.drop({ shard: handle.id, sessionId }).catch(() => undefined)
    },
  }
}

/** The served shard where the forward service's init wants a whole `ShardSession` (it uses only these parts). */
export const asShardSession = (s: ServedShard) => s as unknown as ShardSession
