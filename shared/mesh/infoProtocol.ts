import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { PeerInfoSchema, type PeerInfo } from '../../proto/gen/mesh_pb.js'
import type { MeshNode } from './forwardService.ts'
import type { PeerShard } from './planRoute.ts'

export const INFO_PROTOCOL = '/shardmesh/info/1.0.0'

/** Answers info requests with what this peer serves and the peers it knows. */
export async function serveInfo(node: MeshNode, info: () => { model: string; numLayers: number; range?: { start: number; end: number }; known: PeerShard[] }): Promise<void> {
  await node.handle(INFO_PROTOCOL, async (stream) => {
    const lp = lpStream(stream)
    const i = info()
    const message = create(PeerInfoSchema, {
      peerId: node.peerId.toString(),
      multiaddrs: node.getMultiaddrs().map(String),
      model: i.model,
      range: i.range,
      numLayers: i.numLayers,
      known: i.known.map((k) => ({ peerId: k.peerId, multiaddrs: k.multiaddrs, range: { start: k.start, end: k.end } })),
    })
    try {
      await lp.write(toBinary(PeerInfoSchema, message), { signal: AbortSignal.timeout(5000) })
      await stream.close()
    } catch {
      stream.abort(new Error('info write failed'))
    }
  })
}

/** Asks a peer (by multiaddr, or by peer id when connected or in the peer store) what it serves. */
export async function fetchInfo(node: MeshNode, address: string, signal = AbortSignal.timeout(5000)): Promise<PeerInfo> {
  const target = address.startsWith('/') ? [multiaddr(address)] : peerIdFromString(address)
  const stream = await node.dialProtocol(target, INFO_PROTOCOL, { signal })
  const lp = lpStream(stream)
  const bytes = await lp.read({ signal })
  await stream.close().catch(() => undefined)
  return fromBinary(PeerInfoSchema, bytes.subarray())
}
