import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:net'
import { create, toBinary } from '@bufbuild/protobuf'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { after, test } from 'node:test'
import { PeerInfoSchema } from '../../proto/gen/mesh_pb.js'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { INFO_PROTOCOL, MAX_KNOWN_PEERS, fetchInfo } from './infoProtocol.ts'
import { createPeerTable } from './peerTable.ts'

const nodes: NodeLibp2p[] = []
let canary: Server | undefined
after(async () => {
  for (const n of nodes) await n.stop()
  canary?.close()
})

const make = async () => {
  const n = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
  nodes.push(n)
  return n
}
const randomPeerId = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

test('info answers: the peer id is the connection\'s, second-hand peers are bounded hints asked at a bounded rate, never routed through unanswered', async () => {
  // A TCP port that counts the connections made to it: where the liar's second-hand peers "live".
  let dialled = 0
  canary = createServer((socket) => (dialled++, socket.destroy()))
  await new Promise<void>((resolve) => canary!.listen(0, '127.0.0.1', resolve))
  const canaryPort = (canary.address() as { port: number }).port
  const [liar, victim, origin] = [await make(), await make(), await make()]
  const fakes = await Promise.all(Array.from({ length: 300 }, randomPeerId))
  // The liar claims the victim's peer id, and lists 300 second-hand peers serving every layer.
  await liar.handle(INFO_PROTOCOL, async (stream) => {
    const message = create(PeerInfoSchema, {
      peerId: victim.peerId.toString(),
      multiaddrs: liar.getMultiaddrs().map(String),
      model: 'm',
      range: { start: 0, end: 8 },
      numLayers: 8,
      known: fakes.map((id) => ({ peerId: id, multiaddrs: [`/ip4/127.0.0.1/tcp/${canaryPort}/p2p/${id}`, `/dns4/metadata.internal/tcp/80/p2p/${id}`], range: { start: 0, end: 8 } })),
    })
    await lpStream(stream).write(toBinary(PeerInfoSchema, message))
    await stream.close()
  })

  const info = await fetchInfo(origin, liar.getMultiaddrs()[0]!.toString())
  assert.equal(info.peerId, liar.peerId.toString(), 'the peer id the connection authenticated, not the declared one')
  assert.equal(info.known.length, MAX_KNOWN_PEERS)
  for (const k of info.known) assert.deepEqual(k.multiaddrs, [`/ip4/127.0.0.1/tcp/${canaryPort}/p2p/${k.peerId}`], 'DNS names dropped')

  const table = createPeerTable({ node: origin, model: 'm', bootstrap: [liar.getMultiaddrs()[0]!.toString()] })
  for (let i = 0; i < 3; i++) await table.refresh()
  // Only the liar itself, under its own id: second-hand peers are not routed through until they answer.
  assert.deepEqual(table.peers().map((p) => p.peerId), [liar.peerId.toString()])
  assert.ok(table.hints().length <= MAX_KNOWN_PEERS, `${table.hints().length} hints kept`)
  // Three refreshes dial a few second-hand peers, each once, not all of them every time.
  assert.ok(dialled > 0 && dialled <= 3 * 8, `${dialled} dials to second-hand addresses`)
})
