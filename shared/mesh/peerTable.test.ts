import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { after, test } from 'node:test'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { serveInfo } from './infoProtocol.ts'
import { createPeerTable } from './peerTable.ts'

const nodes: NodeLibp2p[] = []
after(async () => {
  for (const n of nodes) await n.stop()
})

test('the peer table learns ranges transitively, measures latency, and drops peers that stop answering', async () => {
  const make = async () => {
    const n = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(n)
    return n
  }
  const [a, b, origin] = [await make(), await make(), await make()]
  const peerB = { peerId: b.peerId.toString(), multiaddrs: b.getMultiaddrs().map(String), start: 4, end: 8 }
  await serveInfo(a, () => ({ model: 'm', numLayers: 8, range: { start: 0, end: 4 }, known: [peerB] }))
  await serveInfo(b, () => ({ model: 'm', numLayers: 8, range: { start: 4, end: 8 }, known: [] }))
  const table = createPeerTable({ node: origin, model: 'm', bootstrap: [a.getMultiaddrs()[0]!.toString()] })
  await table.refresh()
  await table.refresh()
  const peers = table.peers()
  assert.deepEqual(peers.map((p) => [p.start, p.end]).sort(), [[0, 4], [4, 8]])
  assert.equal(table.numLayers(), 8)
  for (const p of peers) assert.ok(p.latencyMs! > 0 && p.latencyMs! < 1000, `latency of ${p.peerId}: ${p.latencyMs}`)
  await b.stop()
  await table.refresh()
  assert.deepEqual(table.peers().map((p) => [p.start, p.end]), [[0, 4]])
  // A still lists B, but a peer that stopped answering is not re-learnt second-hand.
  await table.refresh()
  assert.deepEqual(table.peers().map((p) => [p.start, p.end]), [[0, 4]])
})
