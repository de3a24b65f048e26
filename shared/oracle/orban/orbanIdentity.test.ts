import { generateKeyPair } from '@libp2p/crypto/keys'
import assert from 'node:assert/strict'
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto'
import { test } from 'node:test'
import { base64ToBytes, bytesToBase64 } from './base64.ts'
import { agentIdOf, createOrbanIdentity, isDerivedAgentId, OrbanIdentityError, signOrbanChallenge, verifyOrbanSignature } from './orbanIdentity.ts'

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
  assert.equal(await key.publicKey.verify(challenge, signature), true)
  const nodeKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(identity.publicKey).toString('base64url') }, format: 'jwk' })
  assert.equal(verify(null, challenge, nodeKey, signature), true)
  assert.equal(await verifyOrbanSignature(challenge, signature, identity.publicKey), true)

  // The signature is over the decoded bytes, not the base64 text.
  assert.equal(await verifyOrbanSignature(new TextEncoder().encode(challenge.toString('base64')), signature, identity.publicKey), false)
  const flipped = signature.slice()
  flipped[5]! ^= 1
  assert.equal(await verifyOrbanSignature(challenge, flipped, identity.publicKey), false)
  assert.equal(await verifyOrbanSignature(challenge, signature.subarray(0, 63), identity.publicKey), false)
  assert.equal(await verifyOrbanSignature(challenge, signature, new Uint8Array(32).fill(0xff)), false)
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
