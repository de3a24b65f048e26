import { z } from 'zod'

/**
 * What the network actually served, as the Oracle counts it from its agents' reports (TASK_PROGRESS
 * with shardmesh's `served` counters, bounded by what the Oracle observed: servedLedger.ts): per
 * agent and in total. Not benchmark capacity: tokens that went through the agents' layers.
 * Served as `GET /api/v1/network/served` and as the `network:served` Server-Sent Event.
 */

/** The event name on `/api/v1/pipeline/events`. */
export const SERVED_EVENT = 'network:served'
/** The JSON route. */
export const SERVED_PATH = '/api/v1/network/served'

const count = z.number().int().min(0)
const rate = z.number().min(0)

export const servedNodeSchema = z.object({
  /** The agent id (the topology's `nodeAddress`). */
  id: z.string(),
  model: z.string(),
  peerId: z.string().nullable(),
  /** A browser tab (onnxruntime-web) or a Node host. */
  kind: z.enum(['page', 'host']),
  /** Tokens/s over the window, from the counters the Oracle accepted. */
  tokensPerSecond: rate,
  /** The agent's own figure (TASK_PROGRESS `throughput_tokens_per_sec`), capped by its capacity; null if it sent none. */
  reportedTokensPerSecond: rate.nullable(),
  /** Accepted since the Oracle first heard of the agent. */
  tokens: count,
  steps: count,
  sessions: count,
  /** Unix ms of its last report. */
  updatedAt: z.number(),
  /** The wallet its served work is credited to by the Oracle (pages bound on chain); null when none. */
  wallet: z.string().nullable(),
})
export type ServedNode = z.infer<typeof servedNodeSchema>

export const servedSnapshotSchema = z.object({
  /** The window rates are taken over, seconds. */
  windowSeconds: z.number().positive(),
  nodes: z.array(servedNodeSchema),
  totalTokensPerSecond: rate,
  totalTokens: count,
  /** Unix ms. */
  timestamp: z.number(),
})
export type ServedSnapshot = z.infer<typeof servedSnapshotSchema>
