import { z } from 'zod'

export class MaxBatchEnvError extends Error {
  constructor(value: string) {
    super(`SHARDMESH_MAX_BATCH must be a whole number from 1 to 256 (1 turns batching off), got "${value}"`)
    this.name = 'MaxBatchEnvError'
  }
}

const schema = z.coerce.number().int().min(1).max(256)

/**
 * `SHARDMESH_MAX_BATCH`: most sessions whose decode steps a shard runs as one batch (1 turns
 * continuous batching off, as the load bench does for its unbatched side). Unset: the default (16).
 */
export function maxBatchFromEnv(env: Record<string, string | undefined> = process.env): number | undefined {
  const raw = env.SHARDMESH_MAX_BATCH
  if (raw === undefined || raw === '') return undefined
  const parsed = schema.safeParse(raw)
  if (!parsed.success) throw new MaxBatchEnvError(raw)
  return parsed.data
}
