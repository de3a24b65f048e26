import assert from 'node:assert/strict'
import { test } from 'node:test'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { computeProofHash, createInferenceProof, inferenceProofHash, normalizeInferenceProof, ProofHashMismatchError } from './proofHash.ts'

// The reference: @noble/hashes' keccak over the spec's byte layout, assembled by hand.
const k = (bytes: Uint8Array) => `0x${bytesToHex(keccak_256(bytes))}`
const utf8 = (s: string) => new TextEncoder().encode(s)

test('keccak256 of the empty string is the well-known constant', () => {
  assert.equal(k(utf8('')), '0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470')
  assert.equal(createInferenceProof({ model: '', prompt: '', output: '', agentAddress: '0x0000000000000000000000000000000000000001', tokenCount: 0 }).modelHash, k(utf8('')))
})

test('a proof hashes the real texts and 128 bytes: modelHash ‖ inputHash ‖ outputHash ‖ agent left-padded', () => {
  const agent = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
  const model = 'bigscience/bloom-560m'
  const prompt = 'Ünïcode prompt: 日本語 ✓'
  const output = ' and the generated text, streamed or not.'
  const proof = createInferenceProof({ model, prompt, output, agentAddress: agent.toLowerCase() as `0x${string}`, tokenCount: 9 })
  assert.equal(proof.modelHash, k(utf8(model)))
  assert.equal(proof.inputHash, k(utf8(prompt)))
  assert.equal(proof.outputHash, k(utf8(output)))
  assert.equal(proof.agentAddress, agent) // checksummed
  const buf = new Uint8Array(128)
  buf.set(keccak_256(utf8(model)), 0)
  buf.set(keccak_256(utf8(prompt)), 32)
  buf.set(keccak_256(utf8(output)), 64)
  buf.set(hexToBytes(agent.slice(2)), 96 + 12)
  assert.equal(proof.proofHash, k(buf))
  assert.equal(proof.tokenCount, 9)
  assert.notEqual(proof.outputHash, k(utf8('[streamed 9 tokens]')))
})

test('normalizeInferenceProof accepts both upstream shapes and rejects a proofHash that does not match', () => {
  const agent = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
  const full = createInferenceProof({ model: 'm', prompt: 'p', output: 'o', agentAddress: agent, tokenCount: 3 })
  const { agentAddress: _a, proofHash: _p, ...bare } = full
  assert.deepEqual(normalizeInferenceProof(bare, agent), full)
  assert.deepEqual(normalizeInferenceProof(JSON.parse(JSON.stringify(full))), full)
  assert.throws(() => normalizeInferenceProof({ ...full, proofHash: computeProofHash({ ...full, outputHash: full.inputHash }) }), ProofHashMismatchError)
  assert.throws(() => normalizeInferenceProof(bare), /no agentAddress/)
  assert.throws(() => normalizeInferenceProof(full, '0x0000000000000000000000000000000000000001'), /not 0x0000/)
  assert.throws(() => normalizeInferenceProof({ ...full, modelHash: '0x12' }))
  assert.throws(() => normalizeInferenceProof({ ...full, tokenCount: -1 }))
})

test('inferenceProofHash (the Oracle store\'s plain-string fields, agent in any case) is the proof\'s proofHash', () => {
  const agent = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
  const proof = createInferenceProof({ model: 'm', prompt: 'p', output: 'o', agentAddress: agent, tokenCount: 3 })
  assert.equal(inferenceProofHash({ ...proof, agent: agent.toLowerCase() }), proof.proofHash)
  assert.equal(inferenceProofHash({ ...proof, agent: agent.toUpperCase().replace('0X', '0x') }), proof.proofHash)
  assert.notEqual(inferenceProofHash({ ...proof, outputHash: proof.inputHash, agent }), proof.proofHash)
})
