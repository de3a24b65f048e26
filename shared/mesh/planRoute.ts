import { hopCost, type PeerLoad } from './routeCost.ts'

/** A peer serving a layer range of a model, as the origin knows it. */
export type PeerShard = {
  peerId: string
  multiaddrs: string[]
  start: number
  end: number
  /** Measured round trip to the peer, ms (unknown: treated as 5). */
  latencyMs?: number
  /** Its load as last reported (and this origin's own sessions on it); unknown: unloaded. */
  load?: PeerLoad
  /** Weight format its shard runs, as its info answer says (absent: float32); spot checks pair formats. */
  weights?: string
}

export class NoRouteError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NoRouteError'
  }
}

/**
 * The route of peers covering `[0, L)` with the lowest expected latency, load included: a shortest
 * path over layer boundaries where each peer is an edge from its start to its end (Petals-style
 * routing), weighted by `hopCost`.
 */
export function planRoute(peers: PeerShard[], numLayers: number, exclude: ReadonlySet<string> = new Set()): PeerShard[] {
  const usable = peers.filter((p) => !exclude.has(p.peerId) && p.start < p.end && p.end <= numLayers)
  const cost = new Array<number>(numLayers + 1).fill(Infinity)
  const via = new Array<PeerShard | undefined>(numLayers + 1)
  cost[0] = 0
  for (let layer = 0; layer < numLayers; layer++) {
    if (cost[layer] === Infinity) continue
    for (const p of usable) {
      if (p.start !== layer) continue
      // Latency and load (routeCost.ts); fewer hops win ties.
      const c = cost[layer]! + hopCost(p)
      if (c < cost[p.end]!) {
        cost[p.end] = c
        via[p.end] = p
      }
    }
  }
  if (cost[numLayers] === Infinity) {
    const covered = usable.map((p) => `${p.start}-${p.end}`).join(', ') || 'none'
    throw new NoRouteError(`no route covers layers [0, ${numLayers}) (peers: ${covered}${exclude.size ? `; excluded ${exclude.size}` : ''})`)
  }
  const route: PeerShard[] = []
  for (let at = numLayers; at > 0; at = via[at]!.start) route.unshift(via[at]!)
  return route
}
