import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { agentIdOf, type OrbanAuthMode } from '../identity/orbanIdentity.ts'
import type { OrbanHardware, OrbanMeshInfo } from './orbanMessages.ts'

/**
 * What an Orban agent may claim about its libp2p node (AGENT_REGISTER's `mesh`), checked against
 * what it proved. The rule:
 * - The peer id is the one its authenticated Ed25519 key implies (libp2p's peerIdFromPublicKey),
 *   and only an agent that signed our domain-separated challenge may claim one: a raw (upstream)
 *   signature is what a key would give anyone, so it vouches for no peer. The agent id must be the
 *   key-derived one too, so one key is one node (it cannot register twice under other ids).
 * - Multiaddrs: only those that parse, are at most `maxMultiaddrLength` characters, end in
 *   `/p2p/<that peer id>` and do not start at a link-local, unspecified or multicast IP (cloud
 *   metadata endpoints live at 169.254.169.254 and fe80::/10); the first `maxMultiaddrs` kept.
 *   DNS names pass (dialers must still gate what they resolve to).
 * - Capacity: memory at most `maxMemoryMb` and at most what its declared hardware holds (its
 *   largest of system memory and total GPU memory); the benchmark score at most
 *   `maxBenchmarkTokPerSec`. The Oracle counts the score only once the agent answered a proof of
 *   work (createOracle), and weighs it as the median node until then. Nothing here measures real
 *   throughput: the "honest compute" work verifies that.
 */

export type OrbanMeshLimits = {
  /** @default 16 */
  maxMultiaddrs: number
  /** @default 256 */
  maxMultiaddrLength: number
  /** 256 GiB. @default 262144 */
  maxMemoryMb: number
  /** @default 10000 */
  maxBenchmarkTokPerSec: number
}

export const ORBAN_MESH_LIMITS: OrbanMeshLimits = { maxMultiaddrs: 16, maxMultiaddrLength: 256, maxMemoryMb: 256 * 1024, maxBenchmarkTokPerSec: 10_000 }

export type OrbanMeshClaimErrorCode = 'PEER_ID_UNPROVEN' | 'PEER_ID_MISMATCH' | 'AGENT_ID_NOT_DERIVED'

/** A mesh claim that cannot be accepted at all (the registration is refused). */
export class OrbanMeshClaimError extends Error {
  readonly code: OrbanMeshClaimErrorCode
  constructor(code: OrbanMeshClaimErrorCode, message: string) {
    super(message)
    this.name = 'OrbanMeshClaimError'
    this.code = code
  }
}

export type CheckOrbanMeshParameters = {
  mesh: OrbanMeshInfo
  agentId: string
  /** The authenticated Ed25519 public key (32 bytes). */
  publicKey: Uint8Array
  authMode: OrbanAuthMode
  hardware: OrbanHardware
  limits?: Partial<OrbanMeshLimits>
}

export type CheckOrbanMeshResult = {
  /** The claim as the Oracle takes it: multiaddrs filtered, capacity capped. */
  mesh: OrbanMeshInfo
  /** Multiaddrs left out, with why. */
  dropped: Array<{ multiaddr: string; reason: string }>
}

/** The libp2p peer id of a raw Ed25519 public key. */
export function peerIdOfEd25519(publicKey: Uint8Array): string {
  return peerIdFromPublicKey(publicKeyFromRaw(publicKey)).toString()
}

/** Checks and bounds a mesh claim; throws OrbanMeshClaimError when it cannot be taken at all. */
export function checkOrbanMeshClaims(p: CheckOrbanMeshParameters): CheckOrbanMeshResult {
  const limits = { ...ORBAN_MESH_LIMITS, ...p.limits }
  if (p.authMode !== 'domain-separated') {
    throw new OrbanMeshClaimError('PEER_ID_UNPROVEN', 'a raw challenge signature vouches for no libp2p peer: sign "orban-auth-v1" ‖ challenge to announce one')
  }
  const peerId = peerIdOfEd25519(p.publicKey)
  if (p.mesh.peer_id !== peerId) throw new OrbanMeshClaimError('PEER_ID_MISMATCH', `peer_id ${p.mesh.peer_id} is not ${peerId}, the peer of the authenticated key`)
  if (p.agentId !== agentIdOf(p.publicKey)) throw new OrbanMeshClaimError('AGENT_ID_NOT_DERIVED', `an agent announcing a peer must use its key's agent id ${agentIdOf(p.publicKey)}`)

  const dropped: CheckOrbanMeshResult['dropped'] = []
  const kept: string[] = []
  for (const address of p.mesh.multiaddrs) {
    const reason = kept.length >= limits.maxMultiaddrs ? `more than ${limits.maxMultiaddrs} addresses` : multiaddrProblem(address, peerId, limits.maxMultiaddrLength)
    if (reason) dropped.push({ multiaddr: address.slice(0, 80), reason })
    else kept.push(address)
  }

  const gpuMb = p.hardware.gpus.reduce((sum, g) => sum + g.vram_gb, 0) * 1024
  const hardwareMb = Math.floor(Math.max(gpuMb, p.hardware.memory_gb * 1024))
  const mesh: OrbanMeshInfo = { ...p.mesh, multiaddrs: kept }
  if (mesh.memory_mb !== undefined) mesh.memory_mb = Math.min(mesh.memory_mb, limits.maxMemoryMb, hardwareMb)
  if (mesh.benchmark_tok_per_sec !== undefined) mesh.benchmark_tok_per_sec = Math.min(mesh.benchmark_tok_per_sec, limits.maxBenchmarkTokPerSec)
  return { mesh, dropped }
}

/** Why a multiaddr is not announced for `peerId`, or undefined when it is fine. */
function multiaddrProblem(address: string, peerId: string, maxLength: number): string | undefined {
  if (address.length > maxLength) return `longer than ${maxLength} characters`
  let components
  try {
    components = multiaddr(address).getComponents()
  } catch {
    return 'not a multiaddr'
  }
  const last = components.at(-1)
  if (last?.name !== 'p2p' || last.value !== peerId) return `does not end in /p2p/${peerId}`
  const first = components[0]
  if (first?.name === 'ip4' && first.value !== undefined && badIp4(first.value)) return `${first.value} is link-local, unspecified or multicast`
  if (first?.name === 'ip6' && first.value !== undefined && badIp6(first.value)) return `${first.value} is link-local, unspecified or multicast`
  return undefined
}

function badIp4(ip: string): boolean {
  const [a, b] = ip.split('.').map(Number) as [number, number]
  return a === 0 || (a === 169 && b === 254) || a >= 224
}

function badIp6(ip: string): boolean {
  const lower = ip.toLowerCase()
  if (lower === '::' || /^fe[89ab]/.test(lower) || lower.startsWith('ff')) return true
  // IPv4-mapped (::ffff:a.b.c.d, which multiaddr writes as ::ffff:xxxx:xxxx).
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower)
  if (dotted) return badIp4(dotted[1]!)
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower)
  if (!hex) return false
  const [high, low] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)]
  return badIp4(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`)
}
