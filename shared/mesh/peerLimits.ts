/**
 * Concurrent uses per remote peer (streams, sessions), capped: one peer cannot take every slot.
 * `acquire` returns the release function, or null when the peer is at its cap.
 */
export function createPeerLimit(max: number) {
  const counts = new Map<string, number>()
  return {
    acquire(peer: string): (() => void) | null {
      const n = counts.get(peer) ?? 0
      if (n >= max) return null
      counts.set(peer, n + 1)
      let released = false
      return () => {
        if (released) return
        released = true
        const left = (counts.get(peer) ?? 1) - 1
        if (left > 0) counts.set(peer, left)
        else counts.delete(peer)
      }
    },
    /** Uses the peer holds now. */
    count: (peer: string) => counts.get(peer) ?? 0,
    max,
  }
}

export type PeerLimit = ReturnType<typeof createPeerLimit>
