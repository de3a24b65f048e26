import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import type { PeerId } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { PeerInfoSchema } from '../../proto/gen/mesh_pb.js'
import { silentLogger, type Logger } from '../logger.ts'
import type { MeshNode } from './forwardService.ts'
import { MAX_ADDRESS_LENGTH, p2pAddresses, planDial, type DialPlan } from './peerAddress.ts'
import type { PeerShard } from './planRoute.ts'
import type { PeerLoad } from './routeCost.ts'
import { DEFAULT_WEIGHTS, parseWeights } from '../verify/weightFormat.ts'

export const INFO_PROTOCOL = '/shardmesh/info/1.0.0'

/** Largest info answer read (a peer's own addresses and up to MAX_KNOWN_PEERS others). */
export const MAX_INFO_BYTES = 128 << 10
/** Most second-hand peers taken from (and put in) one info answer. */
export const MAX_KNOWN_PEERS = 64
/** Layer counts and indices above this are not a model's. */
const MAX_LAYERS = 100_000
/** Reported session and queue counts are capped here (a peer cannot make itself infinitely busy or negative). */
const MAX_LOAD = 1_000_000

/** A peer another peer says it knows: where to ask, nothing more (its range is not trusted). */
export type PeerHint = { peerId: string; multiaddrs: string[] }

/** An info answer, checked: the peer id is the one the connection authenticated, never a declared one. */
export type PeerInfoAnswer = {
  peerId: string
  /** Its own addresses, each ending in `/p2p/<peerId>`. */
  multiaddrs: string[]
  model: string
  range?: { start: number; end: number }
  numLayers: number
  /** Weight format of its shard (PeerInfo.weights); absent: float32. */
  weights?: string
  /** Second-hand peers (at most MAX_KNOWN_PEERS): hints to ask, not peers to route through. */
  known: PeerHint[]
  /** Its load as it says (peers of older versions say nothing: zeros). */
  load: PeerLoad
}

/** Answers info requests with what this peer serves and the peers it knows. */
export async function serveInfo(
  node: MeshNode,
  info: () => { model: string; numLayers: number; range?: { start: number; end: number }; known: PeerShard[]; load?: PeerLoad; weights?: string },
  logger: Logger = silentLogger,
): Promise<void> {
  await node.handle(
    INFO_PROTOCOL,
    async (stream) => {
      // Nothing thrown here may escape the handler: a failed answer is an aborted stream and a log line.
      try {
        const lp = lpStream(stream)
        const i = info()
        const message = create(PeerInfoSchema, {
          peerId: node.peerId.toString(),
          multiaddrs: node.getMultiaddrs().map(String),
          model: i.model,
          range: i.range,
          numLayers: i.numLayers,
          // float32 stays absent on the wire, as older builds send it.
          weights: i.weights && i.weights !== DEFAULT_WEIGHTS ? i.weights : '',
          known: i.known.slice(0, MAX_KNOWN_PEERS).map((k) => ({ peerId: k.peerId, multiaddrs: p2pAddresses(k.peerId, k.multiaddrs), range: { start: k.start, end: k.end } })),
          activeSessions: i.load?.activeSessions ?? 0,
          queueDepth: i.load?.queueDepth ?? 0,
        })
        await lp.write(toBinary(PeerInfoSchema, message), { signal: AbortSignal.timeout(5000) })
        await stream.close()
      } catch (e) {
        logger.debug({ err: (e as Error).message }, 'info answer failed')
        stream.abort(new Error('info write failed'))
      }
    },
    { maxInboundStreams: 8 },
  )
}

/**
 * Asks a peer what it serves: by a configured multiaddr (bootstrap, the oracle's topology), or by a
 * dial plan (a peer id with `/p2p/` hints, e.g. a second-hand peer: Noise checks it is that peer).
 * The answer is bounded in size and counts, and carries the connection's peer id.
 */
export async function fetchInfo(node: MeshNode, target: string | DialPlan, signal = AbortSignal.timeout(5000)): Promise<PeerInfoAnswer> {
  let dialTarget: Multiaddr | Multiaddr[] | PeerId
  if (typeof target !== 'string') dialTarget = target.hints.length ? target.hints : target.peerId
  else dialTarget = target.startsWith('/') ? multiaddr(target) : planDial({ peerId: target, multiaddrs: [] }).peerId
  const connection = await node.dial(dialTarget, { signal })
  const stream = await connection.newStream(INFO_PROTOCOL, { signal })
  const lp = lpStream(stream, { maxDataLength: MAX_INFO_BYTES })
  const bytes = await lp.read({ signal })
  await stream.close().catch(() => undefined)
  const info = fromBinary(PeerInfoSchema, bytes.subarray())
  const peerId = connection.remotePeer.toString()
  const numLayers = Math.min(info.numLayers, MAX_LAYERS)
  const range = info.range && info.range.start < info.range.end && info.range.end <= MAX_LAYERS ? { start: info.range.start, end: info.range.end } : undefined
  return {
    peerId,
    multiaddrs: p2pAddresses(peerId, info.multiaddrs.slice(0, 64).filter((a) => a.length <= MAX_ADDRESS_LENGTH)),
    model: info.model.slice(0, 256),
    range,
    numLayers,
    weights: parseWeights(info.weights),
    known: info.known
      .slice(0, MAX_KNOWN_PEERS)
      .filter((k) => k.peerId && k.peerId !== peerId && k.peerId.length <= 128)
      .map((k) => ({ peerId: k.peerId, multiaddrs: p2pAddresses(k.peerId, k.multiaddrs.slice(0, 64)) })),
    load: { activeSessions: Math.min(info.activeSessions, MAX_LOAD), queueDepth: Math.min(info.queueDepth, MAX_LOAD) },
  }
}
