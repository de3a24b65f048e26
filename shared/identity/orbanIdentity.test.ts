import { generateKeyPair } from '@libp2p/crypto/keys'
import assert from 'node:assert/strict'
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto'
import { test } from 'node:test'
import { base64ToBytes, bytesToBase64 } from '../orban/base64.ts'
import {
  agentIdOf,
  createOrbanIdentity,
  isDerivedAgentId,
  ORBAN_AUTH_DOMAIN,
  orbanAuthMessage,
  OrbanChallengeError,
  OrbanIdentityError,
  signOrbanChallenge,
  verifyOrbanAuth,
  verifyOrbanSignature,
} from './orbanIdentity.ts'

test('the libp2p Ed25519 key is the Orban key: same public key, signatures libp2p and node:crypto accept', async () => {
  const key = await generateKeyPair('Ed25519')
  assert.equal(key.raw.length, 64)
  const identity = await createOrbanIdentity(key.raw)
  assert.deepEqual(identity.publicKey, key.publicKey.raw)
  assert.deepEqual(identity.seed, key.raw.subarray(0, 32))
  assert.equal(identity.agentId, 'agent-' + createHash('sha256').update(key.publicKey.raw).digest('hex').slice(0, 32))
  assert.ok(isDerivedAgentId(identity.agentId))
  assert.equal(agentIdOf(identity.publicKey), identity.agentId)

  const challenge = randomBytes(32)
  const signature = base64ToBytes(await signOrbanChallenge(identity.seed, challenge.toString('base64')))
  assert.equal(signature.length, 64)
  // What is signed is "orban-auth-v1" ‖ the decoded challenge bytes, checked by two independent verifiers.
  const signed = Buffer.concat([Buffer.from('orban-auth-v1', 'ascii'), challenge])
  assert.deepEqual(orbanAuthMessage(challenge), new Uint8Array(signed))
  assert.equal(await key.publicKey.verify(signed, signature), true)
  const nodeKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(identity.publicKey).toString('base64url') }, format: 'jwk' })
  assert.equal(verify(null, signed, nodeKey, signature), true)
  assert.equal(await verifyOrbanAuth(challenge, signature, identity.publicKey), 'domain-separated')

  // Never over the raw challenge (what upstream's agent signs), nor over the base64 text.
  assert.equal(await key.publicKey.verify(challenge, signature), false)
  assert.equal(verify(null, challenge, nodeKey, signature), false)
  assert.equal(await verifyOrbanSignature(new TextEncoder().encode(challenge.toString('base64')), signature, identity.publicKey), false)
  const flipped = signature.slice()
  flipped[5]! ^= 1
  assert.equal(await verifyOrbanAuth(challenge, flipped, identity.publicKey), undefined)
  assert.equal(await verifyOrbanAuth(challenge, signature.subarray(0, 63), identity.publicKey), undefined)
  assert.equal(await verifyOrbanAuth(challenge, signature, new Uint8Array(32).fill(0xff)), undefined)

  // The platform still recognises an upstream agent's raw signature, as such.
  const raw = await key.sign(challenge)
  assert.equal(await verifyOrbanAuth(challenge, raw, identity.publicKey), 'raw')
})

test('the agent key signs nothing it did not build: a Noise static-key payload, a chain binding or any other size offered as a challenge is refused', async () => {
  const key = await generateKeyPair('Ed25519')
  const identity = await createOrbanIdentity(key.raw)
  // libp2p Noise: the identity key signs "noise-libp2p-static-key:" ‖ the 32-byte static key; 56 bytes.
  const noisePayload = Buffer.concat([Buffer.from('noise-libp2p-static-key:'), randomBytes(32)])
  const binding = Buffer.from(`shardmesh agent binding v1\nchain: 31337\nwallet: 0x${'ab'.repeat(20)}\npeer: 12D3KooW`)
  for (const bytes of [noisePayload, binding, randomBytes(31), randomBytes(33), randomBytes(64), randomBytes(768), new Uint8Array(0)]) {
    await assert.rejects(signOrbanChallenge(identity.seed, Buffer.from(bytes).toString('base64')), OrbanChallengeError, `${bytes.length} bytes`)
  }
  await assert.rejects(signOrbanChallenge(identity.seed, 'not base64!'), OrbanChallengeError)
  assert.throws(() => orbanAuthMessage(noisePayload), OrbanChallengeError)
  // Even a 32-byte challenge that is the tail of a Noise payload yields a signature over our domain, which no Noise verifier accepts.
  const staticKey = randomBytes(32)
  const sig = base64ToBytes(await signOrbanChallenge(identity.seed, staticKey.toString('base64')))
  assert.equal(await key.publicKey.verify(Buffer.concat([Buffer.from('noise-libp2p-static-key:'), staticKey]), sig), false)
  assert.equal(Buffer.from(orbanAuthMessage(staticKey)).subarray(0, ORBAN_AUTH_DOMAIN.length).toString(), 'orban-auth-v1')
})

test('a 32-byte seed works alone; a wrong length or a mismatched public half is refused', async () => {
  const seed = randomBytes(32)
  const identity = await createOrbanIdentity(seed, 'agent-tw-a1b2c3d4')
  assert.equal(identity.agentId, 'agent-tw-a1b2c3d4')
  assert.equal(isDerivedAgentId(identity.agentId), false)
  await assert.rejects(createOrbanIdentity(randomBytes(31)), OrbanIdentityError)
  await assert.rejects(createOrbanIdentity(new Uint8Array([...seed, ...randomBytes(32)])), OrbanIdentityError)
})

test('base64 accepts the standard and URL-safe alphabets, padded or not, and refuses the rest', () => {
  const bytes = randomBytes(67)
  assert.equal(bytesToBase64(bytes), bytes.toString('base64'))
  assert.deepEqual(base64ToBytes(bytes.toString('base64')), new Uint8Array(bytes))
  assert.deepEqual(base64ToBytes(bytes.toString('base64url')), new Uint8Array(bytes))
  assert.throws(() => base64ToBytes('abc$'))
  assert.throws(() => base64ToBytes('abcde'))
})
