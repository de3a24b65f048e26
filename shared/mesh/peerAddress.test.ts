import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { test } from 'node:test'
import { MAX_ADDRESSES_PER_PEER, UnplannedAddressError, p2pAddresses, planDial } from './peerAddress.ts'

const newPeerId = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

test('planDial takes only /p2p/<that peer> addresses without DNS names, and refuses the whole hop otherwise', async () => {
  const [id, other] = [await newPeerId(), await newPeerId()]
  const plan = planDial({ peerId: id, multiaddrs: [`/ip4/10.0.0.1/tcp/4001/p2p/${id}`, `/ip4/10.0.0.2/tcp/1/p2p/${other}/p2p-circuit/p2p/${id}`] })
  assert.equal(plan.peerId.toString(), id)
  assert.equal(plan.hints.length, 2)
  assert.equal(planDial({ peerId: id, multiaddrs: [] }).hints.length, 0)
  for (const bad of ['/ip4/169.254.169.254/tcp/80', `/dns4/metadata.internal/tcp/80/p2p/${id}`, `/dnsaddr/example.com/p2p/${id}`, `/ip4/10.0.0.1/tcp/4001/p2p/${other}`, 'not an address', `/ip4/10.0.0.1/tcp/4001/p2p/${id}`.padEnd(300, '0')]) {
    assert.throws(() => planDial({ peerId: id, multiaddrs: [`/ip4/10.0.0.1/tcp/4001/p2p/${id}`, bad] }), UnplannedAddressError, bad)
  }
  assert.throws(() => planDial({ peerId: 'not-a-peer-id', multiaddrs: [] }), UnplannedAddressError)
  assert.throws(() => planDial({ peerId: id, multiaddrs: Array(MAX_ADDRESSES_PER_PEER + 1).fill(`/ip4/10.0.0.1/tcp/4001/p2p/${id}`) }), UnplannedAddressError)
})

test('p2pAddresses completes bare addresses with /p2p/<peer> and drops the rest', async () => {
  const [id, other] = [await newPeerId(), await newPeerId()]
  assert.deepEqual(p2pAddresses(id, ['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/tcp/1', `/ip4/127.0.0.1/tcp/2/ws/p2p/${id}`, `/ip4/127.0.0.1/tcp/3/p2p/${other}`, '/dns4/localhost/tcp/4', 'junk']), [
    `/ip4/127.0.0.1/tcp/1/p2p/${id}`,
    `/ip4/127.0.0.1/tcp/2/ws/p2p/${id}`,
  ])
})

test('p2pAddresses keeps WebRTC and direct addresses ahead of plain relay circuits when it must drop some', async () => {
  const [id, ...relays] = await Promise.all(Array.from({ length: MAX_ADDRESSES_PER_PEER + 2 }, newPeerId))
  // A page behind many relays: a plain circuit (a limited connection: no forward streams) listed first for each.
  const circuits = relays.map((r, i) => `/ip4/127.0.0.1/tcp/${4000 + i}/ws/p2p/${r}/p2p-circuit/p2p/${id}`)
  const webrtc = `/ip4/127.0.0.1/tcp/4000/ws/p2p/${relays[0]}/p2p-circuit/webrtc/p2p/${id}`
  const kept = p2pAddresses(id, [...circuits, webrtc])
  assert.equal(kept.length, MAX_ADDRESSES_PER_PEER)
  assert.equal(kept[0], webrtc, 'the WebRTC address survives the bound, first')
  assert.doesNotThrow(() => planDial({ peerId: id, multiaddrs: kept }))
})
