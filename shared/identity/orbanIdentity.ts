import * as ed from '@noble/ed25519'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { base64ToBytes, bytesToBase64 } from '../orban/base64.ts'

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

/*
 * Why a domain-separated message and not a key of its own: the Orban key IS the libp2p identity
 * key (one identity: agent key = peer id, so the Oracle can tie an agent to the peer it announces
 * without a second proof). Upstream's agent signs the decoded challenge bytes as they come; with
 * this key that would let whoever sends AUTH_CHALLENGE (a malicious Oracle, or anyone on a plain
 * ws:// path) obtain our signature over bytes of their choice: a Noise handshake payload
 * ("noise-libp2p-static-key:" ‖ key, so they could speak as our peer id), the chain's
 * agent-binding message (binding our peer to their wallet), a libp2p signed envelope. So our
 * agent signs only bytes it builds itself: the ASCII domain "orban-auth-v1" followed by exactly
 * 32 challenge bytes (45 bytes in all), and refuses any other challenge size. No other message
 * this key signs starts with that domain (Noise: "noise-libp2p-static-key:"; binding: "shardmesh
 * agent binding v1"; signed envelopes start with a varint length, 0x6f = 111 here, longer than the
 * 44 bytes that follow, so no envelope parses). A separate derived key would keep upstream's raw
 * signature, but the Oracle would then need the libp2p key to sign a binding anyway: the same
 * problem, one step later. Our Oracle still accepts upstream agents' raw signatures, but an agent
 * authenticated that way may not announce a libp2p peer id (see orbanChannel).
 */

/** Prefix of every challenge signature our agents make. */
export const ORBAN_AUTH_DOMAIN = 'orban-auth-v1'
/** The one challenge size our agents sign (and our Oracle sends). */
export const ORBAN_CHALLENGE_BYTES = 32
const DOMAIN_BYTES = new TextEncoder().encode(ORBAN_AUTH_DOMAIN)

/** How an agent signed its challenge: our domain-separated message, or upstream's raw bytes. */
export type OrbanAuthMode = 'domain-separated' | 'raw'

/** A challenge our agent will not sign: not base64, or not exactly ORBAN_CHALLENGE_BYTES long. */
export class OrbanChallengeError extends OrbanIdentityError {
  constructor(message: string) {
    super(message)
    this.name = 'OrbanChallengeError'
  }
}

/** The exact bytes our agents sign for a challenge: "orban-auth-v1" ‖ challenge (32 bytes). Throws OrbanChallengeError. */
export function orbanAuthMessage(challenge: Uint8Array): Uint8Array {
  if (challenge.length !== ORBAN_CHALLENGE_BYTES) throw new OrbanChallengeError(`a challenge is ${ORBAN_CHALLENGE_BYTES} bytes, not ${challenge.length}`)
  const message = new Uint8Array(DOMAIN_BYTES.length + challenge.length)
  message.set(DOMAIN_BYTES)
  message.set(challenge, DOMAIN_BYTES.length)
  return message
}

/**
 * AUTH_RESPONSE's signature (base64): Ed25519 over orbanAuthMessage(decoded challenge). A
 * challenge that is not base64 of exactly 32 bytes is an OrbanChallengeError, and nothing is signed.
 */
export async function signOrbanChallenge(seed: Uint8Array, challengeBase64: string): Promise<string> {
  let challenge: Uint8Array
  try {
    challenge = base64ToBytes(challengeBase64)
  } catch {
    throw new OrbanChallengeError('the challenge is not base64')
  }
  return bytesToBase64(await ed.signAsync(orbanAuthMessage(challenge), seed))
}

/**
 * Checks a signature over exactly `message` (RFC 8032 strict verification, not ZIP-215);
 * a malformed key or signature is false, never a throw.
 */
export async function verifyOrbanSignature(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): Promise<boolean> {
  if (signature.length !== 64 || publicKey.length !== 32) return false
  try {
    return await ed.verifyAsync(signature, message, publicKey, { zip215: false })
  } catch {
    return false
  }
}

/**
 * The platform's check of AUTH_RESPONSE: which way the signature covers the challenge (our
 * domain-separated message first, then upstream's raw bytes), or undefined when neither.
 */
export async function verifyOrbanAuth(challenge: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): Promise<OrbanAuthMode | undefined> {
  if (challenge.length === ORBAN_CHALLENGE_BYTES && (await verifyOrbanSignature(orbanAuthMessage(challenge), signature, publicKey))) return 'domain-separated'
  if (await verifyOrbanSignature(challenge, signature, publicKey)) return 'raw'
  return undefined
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}
