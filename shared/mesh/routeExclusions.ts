import { planRoute, type PeerShard } from './planRoute.ts'

export type RouteExclusionsInit = {
  /**
   * Whether a peer excluded at `excludedAt` (unix ms) has shown since that it is back (it answered
   * the info protocol after the failure, still serving its range). Absent: an excluded peer stays
   * out for the whole generation.
   */
  readmit?: (peerId: string, excludedAt: number) => boolean
  /** Clock, unix ms. @default Date.now */
  now?: () => number
}

/**
 * The peers one generation routes around after they failed it. A failure may be passing (a stream
 * reset by a ping timeout on a loaded machine, a connection dropped) while the peer is alive and
 * still the only copy of its layers: the Oracle then sees nothing to repair, and a generation that
 * kept it out would wait for a repair that never comes (the soak measured 503s after 20 s while
 * every layer had a live, ready copy). So when no route avoids the excluded peers, those that
 * `readmit` says are back are let in again; the caller's failover limit bounds retries of a peer
 * that fails for good.
 */
export function createRouteExclusions(init: RouteExclusionsInit = {}) {
  const now = init.now ?? Date.now
  /** Excluded peers and when each was excluded. */
  const excluded = new Map<string, number>()
  const routes = (peers: PeerShard[], numLayers: number, without: ReadonlySet<string>) => {
    try {
      planRoute(peers, numLayers, without)
      return true
    } catch {
      return false
    }
  }

  return {
    /** Routes avoid this peer from now on (until it is readmitted). */
    add(peerId: string): void {
      excluded.set(peerId, now())
    },
    /**
     * The peers to route around now: every excluded one while a route avoids them all; otherwise
     * the readmitted ones are taken off the list (for good: a new failure excludes them again).
     */
    active(peers: PeerShard[], numLayers: number): ReadonlySet<string> {
      const all = new Set(excluded.keys())
      if (!all.size || !init.readmit || routes(peers, numLayers, all)) return all
      for (const [peerId, at] of excluded) {
        if (init.readmit(peerId, at)) {
          excluded.delete(peerId)
          all.delete(peerId)
        }
      }
      return all
    },
    /** Every excluded peer (readmitted ones not). */
    ids: (): string[] => [...excluded.keys()],
  }
}

export type RouteExclusions = ReturnType<typeof createRouteExclusions>
