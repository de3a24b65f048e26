import { checksumAddress } from 'viem'
import { z } from 'zod'

/**
 * The Plumise Oracle HTTP API on the wire (spec/plumise.md §3): request bodies as the server
 * validates them, responses and events as clients parse them.
 */

const uint = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
const hex = (bytes: number) => z.string().regex(new RegExp(`^0x[0-9a-fA-F]{${bytes * 2}}$`), `must be 0x and ${bytes} bytes of hex`)

/** An EIP-55 checksummed address (what the agents send; stored lowercase). */
export const checksummedAddress = hex(20).refine((a) => checksumAddress(a as `0x${string}`) === a, 'must be an EIP-55 checksummed address')

const ENDPOINT_SCHEMES = new Set(['http:', 'https:', 'grpc:', 'grpcs:'])
/** `http://ip:50051`: a URL with a scheme and a host. */
export const endpointUrl = z
  .string()
  .max(255)
  .refine((s) => {
    try {
      const u = new URL(s)
      return ENDPOINT_SCHEMES.has(u.protocol) && u.hostname !== ''
    } catch {
      return false
    }
  }, 'must be a URL with a scheme, e.g. http://10.0.0.7:50051')

export const signatureHex = z.string().regex(/^0x[0-9a-fA-F]{130}$/, 'must be a 0x-prefixed 65-byte hex signature')
const modelName = z.string().min(1).max(255)

export const registerBodySchema = z.strictObject({
  address: checksummedAddress,
  grpcEndpoint: endpointUrl,
  httpEndpoint: endpointUrl,
  model: modelName,
  ramMb: uint,
  device: z.string().min(1).max(50),
  vramMb: uint,
  timestamp: uint,
  signature: signatureHex,
  /** Unsigned, optional: measured generation speed, used as the node's score. */
  benchmarkTokPerSec: z.number().finite().min(0).optional(),
  /** Unsigned, optional shardmesh extensions: the node's libp2p identity and addresses. */
  peerId: z.string().min(1).max(128).optional(),
  multiaddrs: z.array(z.string().min(1).max(512)).max(32).optional(),
})
export type RegisterBody = z.infer<typeof registerBodySchema>

export const readyBodySchema = z.strictObject({ address: checksummedAddress, model: modelName, timestamp: uint, signature: signatureHex })
export type ReadyBody = z.infer<typeof readyBodySchema>

const hash32 = hex(32)
/**
 * `{modelHash, inputHash, outputHash, tokenCount}`, or the upstream agent's shape with `agentAddress` and `proofHash`;
 * shardmesh hosts add `txHash`, the verifyInference transaction, so the Oracle can check the proof on any chain.
 */
export const proofSchema = z.strictObject({
  modelHash: hash32,
  inputHash: hash32,
  outputHash: hash32,
  tokenCount: uint,
  agentAddress: hex(20).optional(),
  proofHash: hash32.optional(),
  txHash: hash32.optional(),
})
export type InferenceProofBody = z.infer<typeof proofSchema>

export const metricsBodySchema = z.strictObject({
  wallet: checksummedAddress,
  tokensProcessed: uint,
  avgLatencyMs: z.number().finite().min(0),
  uptimeSeconds: z.number().finite().min(0),
  requestCount: uint,
  timestamp: uint,
  signature: signatureHex,
  proofs: z.array(proofSchema).max(1000).optional(),
})
export type MetricsBody = z.infer<typeof metricsBodySchema>

export const registerResponseSchema = z.object({ success: z.literal(true), message: z.string(), layerStart: uint, layerEnd: uint, totalLayers: uint })
export type RegisterResponse = z.infer<typeof registerResponseSchema>
export const readyResponseSchema = z.object({ success: z.literal(true), message: z.string() })
export type ReadyResponse = z.infer<typeof readyResponseSchema>
export const metricsResponseSchema = z.object({ success: z.literal(true), message: z.string(), shouldReset: z.boolean() })
export type MetricsResponse = z.infer<typeof metricsResponseSchema>
/** Every refusal: HTTP 4xx/5xx with this body. */
export const errorResponseSchema = z.object({ success: z.literal(false), statusCode: z.number().int(), message: z.string() })

/** A node as topology lists it: the spec's fields in its order, then shardmesh's (`kind`, `peerId`, `multiaddrs`). */
export const topologyNodeSchema = z.object({
  id: uint,
  nodeAddress: z.string(),
  modelName: z.string(),
  layerStart: uint,
  layerEnd: uint,
  totalLayers: uint,
  grpcEndpoint: z.string(),
  httpEndpoint: z.string(),
  ramMb: uint,
  device: z.string(),
  vramMb: uint,
  benchmarkTokPerSec: z.number(),
  ready: z.boolean(),
  pipelineOrder: uint,
  nodeMode: z.string(),
  clusterId: z.string().nullable(),
  rpcPort: uint,
  lanIp: z.string().nullable(),
  /** ISO 8601. */
  createdAt: z.string(),
  updatedAt: z.string(),
  /** 'plumise' (HTTP API, id = lowercase wallet) or 'orban' (WebSocket channel, id = agent_id). */
  kind: z.enum(['plumise', 'orban']),
  peerId: z.string().nullable(),
  multiaddrs: z.array(z.string()),
  /** Its load as its last heartbeat said (absent until one did): sessions open on its shard, steps queued. */
  activeSessions: uint.optional(),
  queueDepth: uint.optional(),
})
export type TopologyNode = z.infer<typeof topologyNodeSchema>

export const topologySchema = z.object({ model: z.string(), nodes: z.array(topologyNodeSchema), count: uint, totalLayers: uint })
export type Topology = z.infer<typeof topologySchema>

/** Live events (`GET /api/v1/pipeline/events`, Server-Sent Events: `event:` the name, `data:` the JSON). */
export const pipelineEventSchemas = {
  'pipeline:topology': topologySchema.extend({ timestamp: z.number() }),
  'pipeline:nodeStatus': z.object({ address: z.string(), model: z.string(), ready: z.boolean(), timestamp: z.number() }),
  'pipeline:nodeJoined': z.object({ address: z.string(), model: z.string(), kind: z.enum(['plumise', 'orban']), timestamp: z.number() }),
  'pipeline:nodeLeft': z.object({ address: z.string(), model: z.string(), reason: z.string(), timestamp: z.number() }),
} as const

export type PipelineEventName = keyof typeof pipelineEventSchemas
export type PipelineEventData<N extends PipelineEventName> = z.infer<(typeof pipelineEventSchemas)[N]>
export type PipelineEvent = { [N in PipelineEventName]: { event: N; data: PipelineEventData<N> } }[PipelineEventName]

export const PIPELINE_EVENT_NAMES = Object.keys(pipelineEventSchemas) as PipelineEventName[]
