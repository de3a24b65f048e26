import type { ShardSession } from '../engine/shardSession.ts'
import type { StepLog } from '../verify/stepLog.ts'
import type { SpotChecker } from '../verify/spotChecker.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { LayerRange } from '../model/shardGraph.ts'
import { createForwardService, type MeshGenerateParameters, type MeshGenerateResult, type MeshNode } from './forwardService.ts'
import { INFO_PROTOCOL, serveInfo } from './infoProtocol.ts'
import { createPeerTable } from './peerTable.ts'
import { NoRouteError, planRoute, type PeerShard } from './planRoute.ts'

export type MeshPeerInit = {
  node: MeshNode
  /** Model name on the wire. */
  model: string
  numLayers: number
  hiddenSize: number
  /** The shard served from the start; absent on an origin-only peer (or one given a range later). */
  shard?: ShardSession
  /** The range this peer serves now, as its info answer and its own peer-table entry say it. @default the served shard's */
  range?: () => LayerRange | undefined
  /** This peer's dialable addresses. @default the node's own */
  multiaddrs?: () => string[]
  /** Addresses the peer table asks first. @default [] */
  bootstrap?: string[]
  /** More addresses to ask on each refresh (the Oracle's topology). */
  discover?: () => Promise<string[]>
  /** The info answer lists the other peers this one knows (a node host does; a page does not). @default false */
  shareKnown?: boolean
  /** The peer table refreshes itself this often; absent, only when asked. */
  refreshMs?: number
  /** How long a generation waits for a lost range to be repaired; absent, a missing route is a NoRouteError at once. */
  routeWaitMs?: number
  /** See ForwardServiceInit.stepTimeoutMs. */
  stepTimeoutMs?: number
  /** Weight format of the served shard, as the info answer advertises it. @default 'float32' */
  weights?: string
  /** Spot checks (shared/verify): see ForwardServiceInit.stepLog and spotChecker. */
  stepLog?: StepLog
  spotChecker?: SpotChecker
  logger?: Logger
}

/** A generation as the mesh peer's origin runs it: through the peer table's peers, or through `peers` when given. */
export type MeshPeerGenerateParameters = Omit<MeshGenerateParameters, 'peers' | 'numLayers' | 'beforeReplan' | 'waitForRoute' | 'readmit'> & {
  /** The route's candidates; absent, what the peer table knows (refreshed before a re-plan). */
  peers?: () => PeerShard[]
}

const hasRoute = (peers: PeerShard[], numLayers: number) => {
  try {
    planRoute(peers, numLayers)
    return true
  } catch {
    return false
  }
}

/**
 * One peer of the mesh for one model, as node hosts, `generate --peer`, the bench and pages all
 * run it: the forward protocol (serving side and origin side), the info protocol, the peer table,
 * and the origin runner that plans routes through the table's peers.
 */
export async function createMeshPeer(init: MeshPeerInit) {
  const { node, numLayers } = init
  const log = init.logger ?? silentLogger
  const peerId = node.peerId.toString()
  const multiaddrs = init.multiaddrs ?? (() => node.getMultiaddrs().map(String))
  const self = (): PeerShard | undefined => {
    const r = range()
    return r ? { peerId, multiaddrs: multiaddrs(), start: r.start, end: r.end, latencyMs: 0, ...(init.weights ? { weights: init.weights } : {}) } : undefined
  }
  const range = init.range ?? (() => service.shard()?.range)
  const table = createPeerTable({ node, model: init.model, bootstrap: init.bootstrap ?? [], discover: init.discover, self, logger: init.logger })
  const service = createForwardService({ node, model: init.model, hiddenSize: init.hiddenSize, shard: init.shard, stepTimeoutMs: init.stepTimeoutMs, logger: init.logger, stepLog: init.stepLog, spotChecker: init.spotChecker })
  await service.start()
  try {
    await serveInfo(node, () => ({ model: init.model, numLayers, range: range(), known: init.shareKnown ? table.peers().filter((p) => p.peerId !== peerId) : [], load: service.load(), weights: init.weights }), log)
  } catch (e) {
    await service.stop()
    throw e
  }
  if (init.refreshMs !== undefined) table.start(init.refreshMs)

  // Every waiting generation shares one refresh in flight, so a burst of requests asks each peer once.
  let refreshing: Promise<void> | undefined
  const refreshOnce = () => (refreshing ??= table.refresh().finally(() => (refreshing = undefined)))
  const routeWaitMs = init.routeWaitMs
  /** Polls what is known of the peers until `routable()` or the deadline (then NoRouteError). */
  const waitForRoute = async (routable: () => boolean, waitMs: number, deadline: number, signal?: AbortSignal) => {
    log.info({ waitS: Math.max(0, Math.round((deadline - Date.now()) / 1000)) }, 'no route covers the layers: waiting for a repair')
    const since = Date.now()
    for (;;) {
      await refreshOnce().catch(() => undefined)
      if (routable()) return void log.info({ waitedS: (Date.now() - since) / 1000 }, 'a route covers the layers again')
      signal?.throwIfAborted()
      if (Date.now() >= deadline) {
        throw new NoRouteError(`no route covers layers [0, ${numLayers}) after waiting ${Math.round(waitMs / 1000)} s for a repair (peers: ${table.peers().map((p) => `${p.start}-${p.end}`).join(', ') || 'none'})`)
      }
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))))
    }
  }

  /** A peer that failed a route is back when it answered the info protocol since (the table refreshes before each re-plan and while waiting). */
  const readmit = (peerId: string, excludedAt: number) => {
    const back = (table.answeredAt(peerId) ?? -Infinity) >= excludedAt
    if (back) log.info({ peer: peerId }, 'a peer that failed a route answers again and is the only way to cover its layers: routing through it again')
    return back
  }

  return {
    node,
    service,
    table,
    peerId,
    /** Asks the peers again; concurrent callers share one refresh. */
    refresh: refreshOnce,
    /** Runs one generation from this peer (the origin): route planned, re-planned and replayed on failure. */
    async generate(params: MeshPeerGenerateParameters): Promise<MeshGenerateResult> {
      const given = params.peers
      const peers = given ?? (() => table.peers())
      if (given) return service.generate({ ...params, peers, numLayers })
      // Learn about peers that joined (or were moved) since the last refresh when what is known has no route.
      if (!hasRoute(peers(), numLayers)) await refreshOnce()
      if (routeWaitMs === undefined) return service.generate({ ...params, peers, numLayers, beforeReplan: refreshOnce, readmit })
      // Waiting for a repair is bounded per generation, however many failovers it takes.
      const deadline = Date.now() + routeWaitMs
      return service.generate({ ...params, peers, numLayers, beforeReplan: refreshOnce, waitForRoute: (routable) => waitForRoute(routable, routeWaitMs, deadline, params.signal), readmit })
    },
    /** Stops the peer table and both protocols (the node itself is the caller's). */
    async stop(): Promise<void> {
      table.stop()
      await service.stop()
      await node.unhandle(INFO_PROTOCOL).catch(() => undefined)
    },
  }
}

export type MeshPeer = Awaited<ReturnType<typeof createMeshPeer>>
