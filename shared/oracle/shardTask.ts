import { z } from 'zod'

/**
 * The `payload.config` of a shard-serving TASK_ASSIGN, as the shardmesh Oracle writes it and its
 * agents (node hosts and pages) read it: which model, and the layer range `[layer_start, layer_end)`.
 */
export const shardTaskConfigSchema = z.object({
  kind: z.literal('shardmesh.shard'),
  model: z.string().min(1),
  layer_start: z.number().int().min(0),
  layer_end: z.number().int().min(1),
  total_layers: z.number().int().min(1),
})

export type ShardTaskConfig = z.infer<typeof shardTaskConfigSchema>

/** Why an agent cannot take a task's range, or undefined when the range is well formed. */
export function shardRangeProblem(cfg: ShardTaskConfig): string | undefined {
  return cfg.layer_end > cfg.total_layers || cfg.layer_start >= cfg.layer_end ? `[${cfg.layer_start}, ${cfg.layer_end}) of ${cfg.total_layers}` : undefined
}
