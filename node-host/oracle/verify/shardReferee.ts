import { loadShards } from '../../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../../shared/engine/shardSession.ts'
import type { ModelSource } from '../../../shared/model/modelSource.ts'
import { recomputeLastRow } from '../../../shared/verify/recompute.ts'
import { nodeRuntime } from '../../engine/nodeRuntime.ts'
import type { WeightFormat } from '../../../shared/model/shardGraph.ts'
import { RefereeCannotRecomputeError } from './refereeCannotRecomputeError.ts'
import type { Referee } from './verifyLedger.ts'

/** Formats the referee rebuilds a shard in. int4 is deterministic here: quantizeInt4 rounds the same float32 checkpoint the same way on every machine. */
const FORMATS: readonly WeightFormat[] = ['float32', 'int4']
const isFormat = (w: string): w is WeightFormat => (FORMATS as readonly string[]).includes(w)

/**
 * The Oracle's referee: recomputes an accused range itself on ORT cpu from the model files it
 * serves, in the weight format the accused committed to, one shard per range and format (loaded
 * on first use, kept). Unknown models are refused; a format it cannot build is a
 * RefereeCannotRecomputeError (the ledger leaves such evidence unconfirmed).
 */
export function createShardReferee(sources: ReadonlyMap<string, ModelSource>): Referee {
  const shards = new Map<string, Promise<ShardSession>>()
  return async (model, range, inputs, weights = 'float32') => {
    const source = sources.get(model)
    if (!source) throw new Error(`the Oracle has no files of model "${model}" to recompute with`)
    if (!isFormat(weights)) throw new RefereeCannotRecomputeError(`the Oracle cannot recompute ${weights} weights (it runs ${FORMATS.join(', ')})`)
    const key = `${model}/${range.start}-${range.end}/${weights}`
    let shard = shards.get(key)
    if (!shard) {
      shard = loadShards({ source, runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range], weights }).then((r) => r.shards[0]!)
      shards.set(key, shard)
      shard.catch(() => shards.delete(key))
    }
    return recomputeLastRow(await shard, inputs, 'oracle')
  }
}
