import { SERVED_PATH, servedSnapshotSchema, type ServedNode } from '../../shared/oracle/servedThroughput.ts'
import type { Logger } from '../logger.ts'

export type OracleServedWatch = {
  /** What the Oracle counted the peer served (its last answer), if it lists the peer. */
  of(peerId: string | undefined): ServedNode | undefined
  stop(): void
}

/**
 * Polls the Oracle's count of served work (`GET /api/v1/network/served`): what the farm's pages
 * served as the network sees it and pays it, beside what each page says of itself.
 */
export function watchOracleServed(init: { oracle: string; intervalMs?: number; logger: Logger }): OracleServedWatch {
  let byPeer = new Map<string, ServedNode>()
  let warned = false
  const poll = async () => {
    try {
      const res = await fetch(new URL(SERVED_PATH, init.oracle), { signal: AbortSignal.timeout(5000) })
      if (!res.ok) throw new Error(`HTTP ${res.status}`)
      const s = servedSnapshotSchema.parse(await res.json())
      byPeer = new Map(s.nodes.flatMap((n) => (n.peerId ? [[n.peerId, n] as const] : [])))
      warned = false
    } catch (e) {
      if (!warned) init.logger.warn({ oracle: init.oracle, err: (e as Error).message }, 'farm: the Oracle\'s served counts are unavailable; shown again once it answers')
      warned = true
    }
  }
  void poll()
  const timer = setInterval(() => void poll(), init.intervalMs ?? 5000)
  timer.unref()
  return { of: (peerId) => (peerId ? byPeer.get(peerId) : undefined), stop: () => clearInterval(timer) }
}
