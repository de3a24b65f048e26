import type { PeerShard } from './planRoute.ts'
import type { PeerLoad } from './routeCost.ts'

/**
 * Load bookkeeping of one peer's forward service, both sides: steps waiting for its shard (what it
 * reports as serving peer), and the sessions it opened itself as origin on each route's peers. The
 * latter count at once, where peers' reports arrive only with the next info refresh, so concurrent
 * requests from one origin spread over pipelines from the first one on.
 */
export function createShardLoad() {
  /** Forward steps started on this peer's shard and not finished. */
  let steps = 0
  /** This origin's open sessions per peer. */
  const mine = new Map<string, number>()
  return {
    /** Counts a shard step while it waits and runs. */
    async step<T>(run: Promise<T>): Promise<T> {
      steps++
      try {
        return await run
      } finally {
        steps--
      }
    },
    /**
     * What this peer reports: `activeSessions` from its caller, and the steps waiting for its shard.
     * `waiting` is the shard's own count when it has one: with continuous batching, up to a whole
     * batch of steps runs at once, and none of those is queued. Without it, every step started
     * beyond one is taken as waiting.
     */
    report(activeSessions: number, waiting?: number): PeerLoad {
      return { activeSessions, queueDepth: waiting ?? Math.max(0, steps - 1) }
    },
    /** The peers with this origin's own open sessions added to what they reported. */
    weigh(peers: PeerShard[]): PeerShard[] {
      if (mine.size === 0) return peers
      return peers.map((p) => {
        const n = mine.get(p.peerId)
        return n ? { ...p, load: { activeSessions: (p.load?.activeSessions ?? 0) + n, queueDepth: p.load?.queueDepth ?? 0 } } : p
      })
    },
    /** Counts a session of this origin on each peer of its route; call the result when it ends. */
    enter(route: PeerShard[]): () => void {
      for (const p of route) mine.set(p.peerId, (mine.get(p.peerId) ?? 0) + 1)
      let left = false
      return () => {
        if (left) return
        left = true
        for (const p of route) {
          const n = (mine.get(p.peerId) ?? 0) - 1
          if (n > 0) mine.set(p.peerId, n)
          else mine.delete(p.peerId)
        }
      }
    },
  }
}

export type ShardLoad = ReturnType<typeof createShardLoad>
