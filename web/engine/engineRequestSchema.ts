import { z } from 'zod'
import type { EngineRequest } from './engineMessages.ts'

// Validated in the worker only, so that the page's bundle carries no zod.
const id = z.number().int()
const layerRange = z.object({ start: z.number().int().nonnegative(), end: z.number().int().positive() })
const tokenIds = z.array(z.number().int().nonnegative())
const sampling = z.object({
  temperature: z.number().nonnegative().optional(),
  topK: z.number().int().nonnegative().optional(),
  topP: z.number().gt(0).lte(1).optional(),
  repetitionPenalty: z.number().positive().optional(),
  doSample: z.boolean().optional(),
  seed: z.number().int().optional(),
})
const shardInput = z.union([z.object({ tokens: tokenIds }), z.object({ hidden: z.instanceof(Float32Array) })])

/** What the worker accepts; anything else is answered with an `error`. */
export const engineRequestSchema: z.ZodType<EngineRequest> = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('load'),
    id,
    params: z.object({
      baseUrl: z.string().min(1),
      ranges: z.array(layerRange).min(1),
      device: z.enum(['auto', 'webgpu', 'cpu', 'wasm']).optional(),
      kvBudgetBytes: z.number().int().positive().optional(),
    }),
  }),
  z.object({
    type: z.literal('generate'),
    id,
    params: z.object({
      shards: z.array(z.string()).min(1),
      inputIds: tokenIds.min(1),
      maxNewTokens: z.number().int().positive(),
      sampling: sampling.optional(),
      eosTokenIds: tokenIds.optional(),
      sessionId: z.string().optional(),
      keepLogits: z.boolean().optional(),
      streamTokens: z.boolean().optional(),
    }),
  }),
  z.object({
    type: z.literal('forward'),
    id,
    params: z.object({ shard: z.string(), sessionId: z.string(), input: shardInput, reset: z.boolean().optional() }),
  }),
  z.object({ type: z.literal('drop'), id, params: z.object({ shard: z.string(), sessionId: z.string() }) }),
  z.object({ type: z.literal('dispose'), id, params: z.object({ shards: z.array(z.string()).optional() }) }),
  z.object({ type: z.literal('abort'), id, target: id }),
])
