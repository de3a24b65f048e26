import { z } from 'zod'

/**
 * The fields of `GET /api/v1/pipeline/topology` this agent routes by, read loosely (extra
 * fields ignored, shardmesh extensions optional) so the upstream Oracle's answers parse too.
 */
const nodeSchema = z.object({
  nodeAddress: z.string(),
  grpcEndpoint: z.string(),
  httpEndpoint: z.string().default(''),
  layerStart: z.number().int().nonnegative(),
  layerEnd: z.number().int().nonnegative(),
  ready: z.boolean(),
  pipelineOrder: z.number().int().nonnegative().default(0),
})
const topologySchema = z.object({ model: z.string(), nodes: z.array(nodeSchema) })

export type PlumiseTopologyNode = z.infer<typeof nodeSchema>

export class TopologyError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TopologyError'
  }
}

export async function fetchPlumiseTopology(oracleUrl: string, model: string, signal?: AbortSignal): Promise<PlumiseTopologyNode[]> {
  const res = await fetch(`${oracleUrl.replace(/\/+$/, '')}/api/v1/pipeline/topology?model=${encodeURIComponent(model)}`, { signal: signal ?? AbortSignal.timeout(10_000) })
  if (!res.ok) throw new TopologyError(`topology: HTTP ${res.status}`)
  const parsed = topologySchema.safeParse(await res.json())
  if (!parsed.success) throw new TopologyError(`topology: unexpected answer: ${parsed.error.issues[0]!.message}`)
  return parsed.data.nodes
}

/**
 * The gRPC endpoints after a node ending at `from`, to the last layer: at each step the node that
 * starts where the previous ended (ready ones first, then by pipeline order), as a chain of
 * upstream nodes is walked. Stops short when a layer is uncovered.
 */
export function chainAfter(nodes: PlumiseTopologyNode[], from: number, numLayers: number, self: string): string[] {
  const out: string[] = []
  let at = from
  while (at < numLayers && out.length < nodes.length) {
    const next = nodes
      .filter((n) => n.layerStart === at && n.layerEnd > at && n.nodeAddress.toLowerCase() !== self.toLowerCase())
      .sort((a, b) => Number(b.ready) - Number(a.ready) || a.pipelineOrder - b.pipelineOrder)[0]
    if (!next) break
    out.push(next.grpcEndpoint)
    at = next.layerEnd
  }
  return out
}
