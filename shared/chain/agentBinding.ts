import { peerIdFromString } from '@libp2p/peer-id'
import * as ed from '@noble/ed25519'
import { bytesToHex, getAddress, hexToBytes, keccak256, stringToBytes, type Address, type Hex } from 'viem'
import { z } from 'zod'

// How a wallet proves it speaks for a libp2p peer: the registry's nodeId is keccak256 of the peer
// id's binary form (its multihash bytes: for Ed25519 keys the identity multihash of the public
// key), and the metadata carries the peer id plus an Ed25519 signature, by the peer's key, over
// `agentBindingMessage(chainId, wallet, peerId)`. The wallet's own registerAgent transaction proves
// the other direction, so together they bind the two keys.

/** keccak256 of the peer id's multihash bytes. */
export function nodeIdFromPeerId(peerId: string): Hex {
  return keccak256(peerIdFromString(peerId).toMultihash().bytes)
}

/** The exact bytes the peer key signs. */
export function agentBindingMessage(p: { chainId: number; wallet: Address; peerId: string }): Uint8Array {
  return stringToBytes(`shardmesh agent binding v1\nchain: ${p.chainId}\nwallet: ${getAddress(p.wallet)}\npeer: ${p.peerId}`)
}

/** Signs with an Ed25519 seed (32 bytes: the first half of a libp2p Ed25519 private key's `raw`). */
export function ed25519Signer(seed: Uint8Array): (message: Uint8Array) => Promise<Uint8Array> {
  if (seed.length !== 32) throw new Error(`an Ed25519 seed is 32 bytes, got ${seed.length}`)
  return (message) => ed.signAsync(message, seed)
}

/** Signs `message` as the peer: a libp2p key's `sign`, or `ed25519Signer(seed)`. */
export type PeerSigner = { peerId: string; sign: (message: Uint8Array) => Promise<Uint8Array> | Uint8Array }

/** The registry metadata JSON: `extra` fields, then `peerId` and `peerSig` (0x hex of the 64-byte signature). */
export async function createAgentMetadata(p: { chainId: number; wallet: Address; peer: PeerSigner; extra?: Record<string, unknown> }): Promise<string> {
  const sig = await p.peer.sign(agentBindingMessage({ chainId: p.chainId, wallet: p.wallet, peerId: p.peer.peerId }))
  const { peerId: _p, peerSig: _s, ...extra } = p.extra ?? {}
  return JSON.stringify({ ...extra, peerId: p.peer.peerId, peerSig: bytesToHex(sig) })
}

export class AgentBindingError extends Error {
  constructor(wallet: Address, reason: string) {
    super(`agent ${wallet} is not bound to a peer: ${reason}`)
    this.name = 'AgentBindingError'
  }
}

const metadataSchema = z.looseObject({ peerId: z.string().min(1), peerSig: z.string().regex(/^0x[0-9a-fA-F]{128}$/, 'a 64-byte 0x hex signature') })

export type AgentBinding = { wallet: Address; peerId: string; nodeId: Hex; metadata: Record<string, unknown> }

/**
 * Checks a registry record (`getAgent`) binds its wallet to the peer its metadata names: the
 * nodeId is that peer's, and the peer's key signed (chain id, wallet). Throws AgentBindingError.
 */
export async function verifyAgentBinding(p: { chainId: number; agent: { wallet: Address; nodeId: Hex; metadata: string } }): Promise<AgentBinding> {
  const wallet = getAddress(p.agent.wallet)
  let json: unknown
  try {
    json = JSON.parse(p.agent.metadata)
  } catch {
    throw new AgentBindingError(wallet, 'metadata is not JSON')
  }
  const parsed = metadataSchema.safeParse(json)
  if (!parsed.success) throw new AgentBindingError(wallet, `metadata lacks peerId/peerSig (${parsed.error.issues[0]?.message})`)
  const { peerId, peerSig } = parsed.data
  let publicKey: Uint8Array
  try {
    const id = peerIdFromString(peerId)
    if (id.type !== 'Ed25519') throw new Error(`a ${id.type} peer id`)
    publicKey = id.publicKey.raw
  } catch (e) {
    throw new AgentBindingError(wallet, `peerId ${peerId} is not an Ed25519 libp2p peer id (${(e as Error).message})`)
  }
  const nodeId = nodeIdFromPeerId(peerId)
  if (nodeId !== p.agent.nodeId.toLowerCase()) throw new AgentBindingError(wallet, `nodeId ${p.agent.nodeId} is not keccak256 of peer ${peerId} (${nodeId})`)
  const ok = await ed.verifyAsync(hexToBytes(peerSig as Hex), agentBindingMessage({ chainId: p.chainId, wallet, peerId }), publicKey).catch(() => false)
  if (!ok) throw new AgentBindingError(wallet, `peerSig is not ${peerId}'s signature over chain ${p.chainId} and this wallet`)
  return { wallet, peerId, nodeId, metadata: parsed.data }
}
