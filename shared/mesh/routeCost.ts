import type { PeerShard } from './planRoute.ts'

/** What a peer reports of its load (info protocol), plus what an origin knows it sent there itself. */
export type PeerLoad = {
  /** Sessions open on the peer's shard. */
  activeSessions: number
  /** Steps waiting for the shard, not counting those running now (a batch of decode steps runs as one). */
  queueDepth: number
}

/** Round trip assumed for a peer never measured, ms. */
export const DEFAULT_LATENCY_MS = 5
/**
 * Expected delay one more open session adds to a hop's step, ms: sessions share the shard (a
 * batched decode step costs about one weight read, an unbatched one a whole step each), so each
 * costs a fraction of a step. At this weight a route one session less busy wins over 2 ms of latency.
 */
export const SESSION_COST_MS = 4
/** Expected delay of one step already waiting for the shard: a whole step (or more). */
export const QUEUED_STEP_COST_MS = 20
/** Per hop, so fewer hops win ties. */
const HOP_COST = 0.001

/**
 * The cost of going through a peer when planning a route: its measured latency plus the delay its
 * load is expected to add, so that concurrent requests spread over pipelines instead of piling onto
 * the lowest-latency one (the spirit of Petals' routing, which weighs a server's throughput with
 * its ping). The route planner sums it over a route's hops.
 */
export function hopCost(peer: Pick<PeerShard, 'latencyMs' | 'load'>): number {
  const load = peer.load
  const latency = peer.latencyMs ?? DEFAULT_LATENCY_MS
  if (!load) return latency + HOP_COST
  return latency + SESSION_COST_MS * Math.max(0, load.activeSessions) + QUEUED_STEP_COST_MS * Math.max(0, load.queueDepth) + HOP_COST
}
