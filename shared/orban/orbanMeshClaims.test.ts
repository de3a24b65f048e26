import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { agentIdOf } from '../identity/orbanIdentity.ts'
import { checkOrbanMeshClaims, ORBAN_MESH_LIMITS, OrbanMeshClaimError, peerIdOfEd25519, type CheckOrbanMeshParameters } from './orbanMeshClaims.ts'
import type { OrbanHardware } from './orbanMessages.ts'

const hardware: OrbanHardware = {
  gpus: [{ index: 0, vendor: 'NVIDIA', model: 'RTX 4090', vram_gb: 24, compute_capability: '8.9', cuda_cores: null, pcie_bandwidth_gbps: 64 }],
  cpu: { model: 'x', cores: 8, threads: 16 },
  memory_gb: 64,
  storage_available_gb: 100,
}

async function claimant() {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key).toString()
  const base: CheckOrbanMeshParameters = {
    mesh: { peer_id: peerId, multiaddrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${peerId}`], memory_mb: 4096, benchmark_tok_per_sec: 50 },
    agentId: agentIdOf(key.publicKey.raw),
    publicKey: key.publicKey.raw,
    authMode: 'domain-separated',
    hardware,
  }
  return { key, peerId, base }
}

const refusal = (p: CheckOrbanMeshParameters) => {
  try {
    checkOrbanMeshClaims(p)
  } catch (e) {
    assert.ok(e instanceof OrbanMeshClaimError)
    return e.code
  }
  assert.fail('the claim was accepted')
}

test("the peer id is the authenticated key's (libp2p's own derivation), claimed only by our domain-separated signature and the key's agent id", async () => {
  const { key, peerId, base } = await claimant()
  assert.equal(peerIdOfEd25519(key.publicKey.raw), peerId)
  assert.deepEqual(checkOrbanMeshClaims(base), { mesh: base.mesh, dropped: [] })
  const other = await claimant()
  assert.equal(refusal({ ...base, mesh: { ...base.mesh, peer_id: other.peerId } }), 'PEER_ID_MISMATCH')
  assert.equal(refusal({ ...base, authMode: 'raw' }), 'PEER_ID_UNPROVEN')
  assert.equal(refusal({ ...base, agentId: 'rig-7' }), 'AGENT_ID_NOT_DERIVED')
})

test("multiaddrs: only this peer's, parseable, not link-local or unspecified, bounded in length and count", async () => {
  const { peerId, base } = await claimant()
  const other = await claimant()
  const good = [
    `/ip4/10.0.0.5/tcp/4001/p2p/${peerId}`,
    `/ip6/::1/tcp/4002/ws/p2p/${peerId}`,
    `/dns4/host.example/tcp/443/wss/p2p/${peerId}`,
    `/ip4/127.0.0.1/tcp/9/ws/p2p/${other.peerId}/p2p-circuit/webrtc/p2p/${peerId}`,
  ]
  const bad = [
    `/ip4/10.0.0.5/tcp/4001`,
    `/ip4/10.0.0.5/tcp/4001/p2p/${other.peerId}`,
    `/ip4/127.0.0.1/tcp/9/p2p/${peerId}/p2p-circuit/p2p/${other.peerId}`,
    `/ip4/169.254.169.254/tcp/80/p2p/${peerId}`,
    `/ip4/0.0.0.0/tcp/80/p2p/${peerId}`,
    `/ip4/239.1.1.1/tcp/80/p2p/${peerId}`,
    `/ip6/fe80::1/tcp/80/p2p/${peerId}`,
    `/ip6/::ffff:169.254.169.254/tcp/80/p2p/${peerId}`,
    `/dns4/${'a'.repeat(300)}/tcp/1/p2p/${peerId}`,
    'not a multiaddr',
  ]
  const { mesh, dropped } = checkOrbanMeshClaims({ ...base, mesh: { ...base.mesh, multiaddrs: [...bad.slice(0, 5), ...good, ...bad.slice(5)] } })
  assert.deepEqual(mesh.multiaddrs, good)
  assert.equal(dropped.length, bad.length)
  assert.ok(dropped.every((d) => d.multiaddr.length <= 80 && d.reason.length > 0))

  const many = Array.from({ length: 40 }, (_, i) => `/ip4/10.0.0.${i}/tcp/4001/p2p/${peerId}`)
  const capped = checkOrbanMeshClaims({ ...base, mesh: { ...base.mesh, multiaddrs: many } })
  assert.deepEqual(capped.mesh.multiaddrs, many.slice(0, ORBAN_MESH_LIMITS.maxMultiaddrs))
  assert.equal(capped.dropped.length, 40 - ORBAN_MESH_LIMITS.maxMultiaddrs)
})

test('capacity: memory capped by the hard cap and by the declared hardware, the score by its cap', async () => {
  const { base } = await claimant()
  // 64 GB of RAM, one 24 GB GPU: at most 64 GiB.
  assert.equal(checkOrbanMeshClaims({ ...base, mesh: { ...base.mesh, memory_mb: 10_000_000 } }).mesh.memory_mb, 64 * 1024)
  const big: OrbanHardware = { ...hardware, memory_gb: 4096, gpus: [] }
  assert.equal(checkOrbanMeshClaims({ ...base, hardware: big, mesh: { ...base.mesh, memory_mb: 10_000_000 } }).mesh.memory_mb, ORBAN_MESH_LIMITS.maxMemoryMb)
  const noRam: OrbanHardware = { ...hardware, memory_gb: 0, gpus: [] }
  assert.equal(checkOrbanMeshClaims({ ...base, hardware: noRam }).mesh.memory_mb, 0)
  assert.equal(checkOrbanMeshClaims({ ...base, mesh: { ...base.mesh, benchmark_tok_per_sec: 1e9 } }).mesh.benchmark_tok_per_sec, ORBAN_MESH_LIMITS.maxBenchmarkTokPerSec)
  // Honest claims pass unchanged.
  assert.equal(checkOrbanMeshClaims(base).mesh.memory_mb, 4096)
  assert.equal(checkOrbanMeshClaims(base).mesh.benchmark_tok_per_sec, 50)
})
