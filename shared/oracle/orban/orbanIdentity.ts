import * as ed from '@noble/ed25519'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { base64ToBytes, bytesToBase64 } from './base64.ts'

/**
 * The Orban identity: a raw 32-byte Ed25519 seed, the same key as the node's libp2p identity (a
 * libp2p Ed25519 PrivateKey's `.raw` is 64 bytes, seed ‖ public key; pass it as it is).
 */
export type OrbanIdentity = {
  /** The 32-byte Ed25519 seed (RFC 8032 secret key). */
  seed: Uint8Array
  /** The 32-byte public key. */
  publicKey: Uint8Array
  /** `agent-` + the first 32 hex digits of SHA-256(public key), unless another id was chosen. */
  agentId: string
}

export class OrbanIdentityError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'OrbanIdentityError'
  }
}

const AGENT_ID_FORM = /^agent-[0-9a-f]{32}$/

/** The agent id a public key implies: `"agent-" + hex(sha256(publicKey)).slice(0, 32)`. */
export function agentIdOf(publicKey: Uint8Array): string {
  return 'agent-' + bytesToHex(sha256(publicKey)).slice(0, 32)
}

/** Whether an agent id has the key-derived form (`agent-` + 32 lowercase hex digits). */
export function isDerivedAgentId(agentId: string): boolean {
  return AGENT_ID_FORM.test(agentId)
}

/**
 * An identity from a 32-byte seed or a 64-byte seed ‖ public key (libp2p's raw Ed25519 key; the
 * public half must match the seed). `agentId` defaults to the key-derived id.
 */
export async function createOrbanIdentity(key: Uint8Array, agentId?: string): Promise<OrbanIdentity> {
  if (key.length !== 32 && key.length !== 64) throw new OrbanIdentityError(`an Ed25519 key is 32 bytes (seed) or 64 (seed and public key), not ${key.length}`)
  const seed = key.slice(0, 32)
  const publicKey = await ed.getPublicKeyAsync(seed)
  if (key.length === 64 && !equalBytes(publicKey, key.subarray(32))) throw new OrbanIdentityError('the public half of the 64-byte key does not belong to its seed')
  return { seed, publicKey, agentId: agentId ?? agentIdOf(publicKey) }
}

/** AUTH_RESPONSE's signature: Ed25519 over the decoded challenge bytes, base64. */
export async function signOrbanChallenge(seed: Uint8Array, challengeBase64: string): Promise<string> {
  return bytesToBase64(await ed.signAsync(base64ToBytes(challengeBase64), seed))
}

/**
 * Checks a signature over the challenge bytes (RFC 8032 strict verification, not ZIP-215);
 * a malformed key or signature is false, never a throw.
 */
export async function verifyOrbanSignature(challenge: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): Promise<boolean> {
  if (signature.length !== 64 || publicKey.length !== 32) return false
  try {
    return await ed.verifyAsync(signature, challenge, publicKey, { zip215: false })
  } catch {
    return false
  }
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}
