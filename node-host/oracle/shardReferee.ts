import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import { recomputeLastRow } from '../../shared/verify/recompute.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import type { Referee } from './verifyLedger.ts'

/**
 * The Oracle's referee: recomputes an accused range itself on ORT cpu float32 from the model files
 * it serves, one shard per range (loaded on first use, kept). Unknown models are refused.
 */
export function createShardReferee(sources: ReadonlyMap<string, ModelSource>): Referee {
  const shards = new Map<string, Promise<ShardSession>>()
  return async (model, range, inputs) => {
    const source = sources.get(model)
    if (!source) throw new Error(`the Oracle has no files of model "${model}" to recompute with`)
    const key = `${model}/${range.start}-${range.end}`
    let shard = shards.get(key)
    if (!shard) {
      shard = loadShards({ source, runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range] }).then((r) => r.shards[0]!)
      shards.set(key, shard)
      shard.catch(() => shards.delete(key))
    }
    return recomputeLastRow(await shard, inputs, 'oracle')
  }
}
