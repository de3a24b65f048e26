import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import type { MeshNode } from './forwardService.ts'
import { INFO_PROTOCOL, fetchInfo } from './infoProtocol.ts'
import type { PeerShard } from './planRoute.ts'

export type PeerTableInit = {
  node: MeshNode
  model: string
  /** Addresses to ask first (`--peer`). */
  bootstrap: string[]
  /** More addresses to ask on each refresh, e.g. from the oracle's topology (one per peer). */
  discover?: () => Promise<string[]>
  /** This peer's own shard, when it serves one. */
  self?: () => PeerShard | undefined
  logger?: Logger
}

/**
 * The peers an origin knows for one model: asked over the info protocol, each answer adding the
 * peers that peer knows. Refreshed periodically; a peer that stops answering is dropped.
 */
export function createPeerTable(init: PeerTableInit) {
  const logger = init.logger ?? silentLogger
  const known = new Map<string, PeerShard>()
  /** Peers that stopped answering, and when: not re-learnt second-hand for a minute. */
  const gone = new Map<string, number>()
  const TOMBSTONE_MS = 60_000
  let numLayers = 0
  let timer: ReturnType<typeof setInterval> | undefined

  async function ask(address: string): Promise<void> {
    const t0 = performance.now()
    const info = await fetchInfo(init.node, address)
    // The info round trip (a stream open and one answer) is the latency estimate routes are planned by.
    const rtt = performance.now() - t0
    if (info.model !== init.model) {
      logger.warn({ address, model: info.model }, 'peer serves another model')
      return
    }
    numLayers = info.numLayers || numLayers
    gone.delete(info.peerId)
    if (info.range && info.range.end > info.range.start) {
      const before = known.get(info.peerId)?.latencyMs
      const latencyMs = before === undefined ? rtt : 0.7 * before + 0.3 * rtt
      known.set(info.peerId, { peerId: info.peerId, multiaddrs: info.multiaddrs, start: info.range.start, end: info.range.end, latencyMs })
    }
    for (const k of info.known) {
      const recentlyGone = (gone.get(k.peerId) ?? -Infinity) > Date.now() - TOMBSTONE_MS
      if (k.peerId !== init.node.peerId.toString() && k.range && !known.has(k.peerId) && !recentlyGone) {
        known.set(k.peerId, { peerId: k.peerId, multiaddrs: k.multiaddrs, start: k.range.start, end: k.range.end })
      }
    }
  }

  async function refresh(): Promise<void> {
    const attempt = (address: string) =>
      ask(address).then(
        () => true,
        (e: Error) => (logger.debug({ address, err: e.message }, 'peer did not answer'), false),
      )
    // Tombstones outlive their minute only until the next refresh: churn must not grow the map for ever.
    for (const [id, at] of gone) if (at <= Date.now() - TOMBSTONE_MS) gone.delete(id)
    const discovered = init.discover ? await init.discover().catch((e: Error) => (logger.debug({ err: e.message }, 'discovery failed'), [])) : []
    await Promise.all([...new Set([...init.bootstrap, ...discovered])].map(attempt))
    // A known peer that no longer answers at any of its addresses is dropped.
    await Promise.all(
      [...known.values()].map(async (p) => {
        const tcpFirst = [...p.multiaddrs].sort((a, b) => Number(a.includes('/ws')) - Number(b.includes('/ws')))
        for (const a of tcpFirst) if (await attempt(a)) return
        known.delete(p.peerId)
        gone.set(p.peerId, Date.now())
      }),
    )
  }

  const onIdentify = (evt: CustomEvent<{ peerId: { toString(): string }; protocols: string[] }>) => {
    if (!evt.detail.protocols.includes(INFO_PROTOCOL)) return
    const id = evt.detail.peerId.toString()
    if (known.has(id)) return
    ask(id).catch((e: Error) => logger.debug({ peerId: id, err: e.message }, 'identified peer did not answer info'))
  }

  return {
    refresh,
    /** Every known peer serving the model, this one included. */
    peers(): PeerShard[] {
      const own = init.self?.()
      return [...(own ? [own] : []), ...[...known.values()].filter((p) => p.peerId !== own?.peerId)]
    },
    numLayers: () => numLayers,
    remove(peerId: string) {
      known.delete(peerId)
      gone.set(peerId, Date.now())
    },
    /** Refreshes periodically, and asks every peer that identifies itself as speaking the info protocol. */
    start(intervalMs = 30_000) {
      timer = setInterval(() => void refresh(), intervalMs)
      timer.unref?.()
      init.node.addEventListener('peer:identify', onIdentify)
    },
    stop() {
      if (timer) clearInterval(timer)
      init.node.removeEventListener('peer:identify', onIdentify)
    },
  }
}

export type PeerTable = ReturnType<typeof createPeerTable>
