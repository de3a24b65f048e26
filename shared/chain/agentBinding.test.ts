import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Address } from 'viem'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { agentBindingMessage, AgentBindingError, createAgentMetadata, ed25519Signer, nodeIdFromPeerId, verifyAgentBinding } from './agentBinding.ts'

const wallet: Address = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const other: Address = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC'

async function peer() {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key)
  return { key, peerId: peerId.toString(), multihash: peerId.toMultihash().bytes }
}

test('nodeId is keccak256 of the peer id bytes', async () => {
  const p = await peer()
  assert.equal(nodeIdFromPeerId(p.peerId), `0x${bytesToHex(keccak_256(p.multihash))}`)
  assert.equal(p.multihash.length, 38) // identity multihash of the protobuf Ed25519 public key
})

test('a binding signed by the libp2p key, or by its raw seed, verifies; the metadata keeps extra fields', async () => {
  const p = await peer()
  const metadata = await createAgentMetadata({ chainId: 31337, wallet, peer: { peerId: p.peerId, sign: (m) => p.key.sign(m) }, extra: { model: 'm', peerId: 'ignored' } })
  const record = { wallet, nodeId: nodeIdFromPeerId(p.peerId), metadata }
  const binding = await verifyAgentBinding({ chainId: 31337, agent: record })
  assert.equal(binding.peerId, p.peerId)
  assert.equal(binding.metadata.model, 'm')
  // Ed25519 is deterministic: the seed signer gives the same signature as the libp2p key
  const fromSeed = await createAgentMetadata({ chainId: 31337, wallet, peer: { peerId: p.peerId, sign: ed25519Signer(p.key.raw.slice(0, 32)) }, extra: { model: 'm' } })
  assert.equal(fromSeed, metadata)
  assert.ok(await p.key.publicKey.verify(agentBindingMessage({ chainId: 31337, wallet, peerId: p.peerId }), Buffer.from(JSON.parse(metadata).peerSig.slice(2), 'hex')))
})

test('a binding fails for another chain, another wallet, another peer\'s nodeId, a foreign signature or bad metadata', async () => {
  const p = await peer()
  const q = await peer()
  const metadata = await createAgentMetadata({ chainId: 1, wallet, peer: { peerId: p.peerId, sign: (m) => p.key.sign(m) } })
  const record = { wallet, nodeId: nodeIdFromPeerId(p.peerId), metadata }
  const rejects = (chainId: number, agent: typeof record, why: RegExp) => assert.rejects(verifyAgentBinding({ chainId, agent }), (e: unknown) => e instanceof AgentBindingError && why.test(e.message))
  await rejects(2, record, /peerSig is not/)
  await rejects(1, { ...record, wallet: other }, /peerSig is not/)
  await rejects(1, { ...record, nodeId: nodeIdFromPeerId(q.peerId) }, /is not keccak256 of peer/)
  const qSigned = await createAgentMetadata({ chainId: 1, wallet, peer: { peerId: q.peerId, sign: (m) => q.key.sign(m) } })
  await rejects(1, { ...record, metadata: JSON.stringify({ ...JSON.parse(qSigned), peerId: p.peerId }) }, /peerSig is not/)
  await rejects(1, { ...record, metadata: 'not json' }, /not JSON/)
  await rejects(1, { ...record, metadata: '{"peerId":"x"}' }, /lacks peerId\/peerSig/)
  await rejects(1, { ...record, metadata: JSON.stringify({ ...JSON.parse(metadata), peerId: 'QmNotAPeer' }) }, /not an Ed25519 libp2p peer id/)
})

test('the peer key signs a domain-separated message: the binding prefix, then chain, wallet and peer', () => {
  const text = new TextDecoder().decode(agentBindingMessage({ chainId: 41956, wallet, peerId: '12D3KooWpeer' }))
  assert.equal(text, `shardmesh agent binding v1\nchain: 41956\nwallet: ${wallet}\npeer: 12D3KooWpeer`)
})
