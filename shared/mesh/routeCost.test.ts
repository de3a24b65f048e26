import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { after, test } from 'node:test'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { serveInfo } from './infoProtocol.ts'
import { createPeerTable } from './peerTable.ts'
import { planRoute, type PeerShard } from './planRoute.ts'
import { hopCost } from './routeCost.ts'
import { createShardLoad } from './shardLoad.ts'

const peer = (peerId: string, start: number, end: number, latencyMs: number, activeSessions = 0, queueDepth = 0): PeerShard => ({ peerId, multiaddrs: [], start, end, latencyMs, load: { activeSessions, queueDepth } })
const ids = (route: PeerShard[]) => route.map((p) => p.peerId)

test('two pipelines, one loaded: the route goes to the other; unloaded, latency decides', () => {
  // Pipeline a is 1 ms closer per hop; b is the other.
  const idle = [peer('a1', 0, 4, 1), peer('a2', 4, 8, 1), peer('b1', 0, 4, 2), peer('b2', 4, 8, 2)]
  assert.deepEqual(ids(planRoute(idle, 8)), ['a1', 'a2'])
  const loaded = [peer('a1', 0, 4, 1, 3), peer('a2', 4, 8, 1, 3), peer('b1', 0, 4, 2), peer('b2', 4, 8, 2)]
  assert.deepEqual(ids(planRoute(loaded, 8)), ['b1', 'b2'])
  // A queue on one hop is enough to go around it, crossing over where the pipelines share a cut point.
  const queued = [peer('a1', 0, 4, 1), peer('a2', 4, 8, 1, 1, 2), peer('b1', 0, 4, 2), peer('b2', 4, 8, 2)]
  assert.deepEqual(ids(planRoute(queued, 8)), ['a1', 'b2'])
  // Load weighs with latency: a far peer is not chosen for one session less.
  assert.ok(hopCost({ latencyMs: 100 }) > hopCost({ latencyMs: 1, load: { activeSessions: 1, queueDepth: 0 } }))
  assert.ok(hopCost({ latencyMs: 1, load: { activeSessions: 1, queueDepth: 0 } }) > hopCost({ latencyMs: 2 }))
})

test('concurrent sessions of one origin spread over pipelines before any peer reports load', () => {
  const load = createShardLoad()
  const peers = [peer('a1', 0, 4, 1), peer('a2', 4, 8, 1), peer('b1', 0, 4, 2), peer('b2', 4, 8, 2)].map(({ load: _, ...p }) => p)
  const first = planRoute(load.weigh(peers), 8)
  const leaveFirst = load.enter(first)
  const second = planRoute(load.weigh(peers), 8)
  const leaveSecond = load.enter(second)
  assert.deepEqual([ids(first), ids(second)], [['a1', 'a2'], ['b1', 'b2']])
  leaveFirst()
  leaveFirst()
  // The first ended: the next goes where it went.
  assert.deepEqual(ids(planRoute(load.weigh(peers), 8)), ['a1', 'a2'])
  leaveSecond()
  assert.deepEqual(load.weigh(peers), peers)
})

const nodes: NodeLibp2p[] = []
after(async () => {
  for (const n of nodes) await n.stop()
})

test('load travels in the info protocol over libp2p: the origin\'s peer table routes around the busy pipeline', async () => {
  const make = async () => {
    const n = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(n)
    return n
  }
  const [a1, a2, b1, b2, origin] = [await make(), await make(), await make(), await make(), await make()]
  const busy = { activeSessions: 6, queueDepth: 3 }
  const serve = (n: NodeLibp2p, start: number, end: number, load = { activeSessions: 0, queueDepth: 0 }) => serveInfo(n, () => ({ model: 'm', numLayers: 8, range: { start, end }, known: [], load }))
  await Promise.all([serve(a1, 0, 4, busy), serve(a2, 4, 8, busy), serve(b1, 0, 4), serve(b2, 4, 8)])
  const table = createPeerTable({ node: origin, model: 'm', bootstrap: [a1, a2, b1, b2].map((n) => n.getMultiaddrs()[0]!.toString()) })
  await table.refresh()
  const byId = new Map(table.peers().map((p) => [p.peerId, p]))
  assert.deepEqual(byId.get(a1.peerId.toString())!.load, busy)
  assert.deepEqual(byId.get(b1.peerId.toString())!.load, { activeSessions: 0, queueDepth: 0 })
  // The first info round trip includes the dial and handshake, tens of ms apart on a loaded
  // machine: equal latencies here, so that the reported load decides.
  assert.deepEqual(ids(planRoute(table.peers().map((p) => ({ ...p, latencyMs: 1 })), 8)), [b1.peerId.toString(), b2.peerId.toString()])
})
