import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import type { MeshNode } from './forwardService.ts'
import { INFO_PROTOCOL, fetchInfo, type PeerHint } from './infoProtocol.ts'
import { planDial, type DialPlan } from './peerAddress.ts'
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

/** Most second-hand peers remembered to ask. */
const MAX_HINTS = 256
/** Most second-hand peers asked per refresh. */
const HINTS_PER_REFRESH = 8
/** A peer named second-hand (or identified) is asked at most once per this long. */
const ASK_INTERVAL_MS = 60_000
/** Peers that stopped answering are not re-learnt second-hand for this long. */
const TOMBSTONE_MS = 60_000

/**
 * The peers an origin knows for one model: asked over the info protocol. A peer's range is taken
 * only from that peer's own answer, under the peer id its connection authenticated; the peers it
 * lists are hints, asked at a bounded rate, until they answer themselves. Refreshed periodically;
 * a peer that stops answering is dropped.
 */
export function createPeerTable(init: PeerTableInit) {
  const logger = init.logger ?? silentLogger
  const self = init.node.peerId.toString()
  const known = new Map<string, PeerShard>()
  /** Second-hand peers to ask, and when each was last asked (so none is dialled more than once a minute). */
  const hints = new Map<string, PeerHint>()
  const asked = new Map<string, number>()
  /** Peers that stopped answering, and when: not re-learnt second-hand for a minute. */
  const gone = new Map<string, number>()
  /** When each known peer last answered (unix ms): an origin readmits a peer that failed a route once it answers again. */
  const answered = new Map<string, number>()
  const forget = (peerId: string) => {
    known.delete(peerId)
    answered.delete(peerId)
  }
  let numLayers = 0
  let timer: ReturnType<typeof setInterval> | undefined

  const recentlyGone = (peerId: string) => (gone.get(peerId) ?? -Infinity) > Date.now() - TOMBSTONE_MS
  const recentlyAsked = (peerId: string) => (asked.get(peerId) ?? -Infinity) > Date.now() - ASK_INTERVAL_MS

  async function ask(target: string | DialPlan): Promise<string> {
    const t0 = performance.now()
    const info = await fetchInfo(init.node, target)
    // The info round trip (a stream open and one answer) is the latency estimate routes are planned by.
    const rtt = performance.now() - t0
    asked.set(info.peerId, Date.now())
    hints.delete(info.peerId)
    if (info.model !== init.model) {
      logger.warn({ peerId: info.peerId, model: info.model }, 'peer serves another model')
      return info.peerId
    }
    numLayers = info.numLayers || numLayers
    gone.delete(info.peerId)
    if (info.range) {
      const before = known.get(info.peerId)?.latencyMs
      const latencyMs = before === undefined ? rtt : 0.7 * before + 0.3 * rtt
      known.set(info.peerId, { peerId: info.peerId, multiaddrs: info.multiaddrs, start: info.range.start, end: info.range.end, latencyMs, load: info.load, ...(info.weights ? { weights: info.weights } : {}) })
      answered.set(info.peerId, Date.now())
    } else forget(info.peerId)
    for (const k of info.known) {
      if (k.peerId === self || known.has(k.peerId) || hints.has(k.peerId) || recentlyGone(k.peerId)) continue
      if (hints.size >= MAX_HINTS) break
      hints.set(k.peerId, k)
    }
    return info.peerId
  }

  async function refresh(): Promise<void> {
    const attempt = (target: string | DialPlan, label: string) =>
      ask(target).then(
        () => true,
        (e: Error) => (logger.debug({ peer: label, err: e.message }, 'peer did not answer'), false),
      )
    // Tombstones outlive their minute only until the next refresh: churn must not grow the map for ever.
    for (const [id, at] of gone) if (at <= Date.now() - TOMBSTONE_MS) gone.delete(id)
    const discovered = init.discover ? await init.discover().catch((e: Error) => (logger.debug({ err: e.message }, 'discovery failed'), [])) : []
    await Promise.all([...new Set([...init.bootstrap, ...discovered])].map((a) => attempt(a, a)))
    // A known peer that no longer answers (at its own addresses) is dropped.
    await Promise.all(
      [...known.values()].map(async (p) => {
        let plan: DialPlan
        try {
          plan = planDial(p)
        } catch {
          plan = planDial({ peerId: p.peerId, multiaddrs: [] })
        }
        if (await attempt(plan, p.peerId)) return
        forget(p.peerId)
        gone.set(p.peerId, Date.now())
      }),
    )
    await askHints()
  }

  /** Asks a few second-hand peers that were not asked recently; those that answer become known. */
  async function askHints(): Promise<void> {
    const due = [...hints.values()].filter((h) => !known.has(h.peerId) && !recentlyAsked(h.peerId) && !recentlyGone(h.peerId)).slice(0, HINTS_PER_REFRESH)
    await Promise.all(
      due.map(async (h) => {
        asked.set(h.peerId, Date.now())
        hints.delete(h.peerId)
        try {
          const answered = await ask(planDial(h))
          if (answered !== h.peerId) logger.warn({ hinted: h.peerId, answered }, 'a second-hand peer answered as another peer')
        } catch (e) {
          logger.debug({ peerId: h.peerId, err: (e as Error).message }, 'second-hand peer did not answer')
        }
      }),
    )
    for (const [id, t] of asked) if (t < Date.now() - ASK_INTERVAL_MS) asked.delete(id)
  }

  const onIdentify = (evt: CustomEvent<{ peerId: { toString(): string }; protocols: string[] }>) => {
    if (!evt.detail.protocols.includes(INFO_PROTOCOL)) return
    const id = evt.detail.peerId.toString()
    if (known.has(id) || recentlyAsked(id)) return
    asked.set(id, Date.now())
    ask(id).catch((e: Error) => logger.debug({ peerId: id, err: e.message }, 'identified peer did not answer info'))
  }

  return {
    refresh,
    /** Every known peer serving the model, this one included (second-hand peers only once they answered). */
    peers(): PeerShard[] {
      const own = init.self?.()
      return [...(own ? [own] : []), ...[...known.values()].filter((p) => p.peerId !== own?.peerId)]
    },
    /** Second-hand peers not asked yet (or that did not answer). */
    hints: (): PeerHint[] => [...hints.values()],
    numLayers: () => numLayers,
    /** When a known peer serving the model last answered (unix ms); undefined for peers not known. */
    answeredAt: (peerId: string): number | undefined => answered.get(peerId),
    remove(peerId: string) {
      forget(peerId)
      gone.set(peerId, Date.now())
    },
    /** Refreshes periodically, and asks every peer that identifies itself as speaking the info protocol. */
    start(intervalMs = 30_000) {
      timer = setInterval(() => void refresh().catch((e: Error) => logger.warn({ err: e.message }, 'peer table refresh failed')), intervalMs)
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
