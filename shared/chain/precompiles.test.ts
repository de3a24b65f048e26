import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { bytesToHex } from '@noble/hashes/utils.js'
import { capabilityId, decodeVerifyInference, encodeAgentRegister, encodeClaim, encodeHeartbeat, encodeVerifyInference, PrecompileCalldataError, PRECOMPILES } from './precompiles.ts'

const h = (byte: string) => `0x${byte.repeat(32)}` as `0x${string}`
const agent = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const agentWord = `000000000000000000000000${agent.slice(2).toLowerCase()}`

test('precompile addresses are 0x…20 to 0x…23', () => {
  assert.deepEqual(Object.values(PRECOMPILES).map((a) => BigInt(a)), [0x20n, 0x21n, 0x22n, 0x23n])
})

test('verifyInference: 160 bytes, agent last or first, token count as uint256', () => {
  const proof = { modelHash: h('aa'), inputHash: h('bb'), outputHash: h('cc'), agentAddress: agent, tokenCount: 258 } as const
  const tokens = `${'00'.repeat(30)}0102`
  assert.equal(encodeVerifyInference(proof, 'agent-last'), `0x${'aa'.repeat(32)}${'bb'.repeat(32)}${'cc'.repeat(32)}${agentWord}${tokens}`)
  assert.equal(encodeVerifyInference(proof, 'agent-first'), `0x${agentWord}${'aa'.repeat(32)}${'bb'.repeat(32)}${'cc'.repeat(32)}${tokens}`)
  assert.throws(() => encodeVerifyInference({ ...proof, modelHash: '0xaa' }, 'agent-last'), PrecompileCalldataError)
  assert.throws(() => encodeVerifyInference({ ...proof, tokenCount: -1 }, 'agent-last'), PrecompileCalldataError)
  // the other layout's calldata is recognised as wrong rather than misread
  assert.throws(() => decodeVerifyInference(encodeVerifyInference(proof, 'agent-first'), 'agent-last'), /wrong layout/)
})

test('verifyInference calldata decodes back to the proof in both layouts', () => {
  const hash = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `0x${bytesToHex(b)}` as `0x${string}`)
  const address = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => `0x${bytesToHex(b)}` as `0x${string}`)
  fc.assert(
    fc.property(hash, hash, hash, address, fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }), fc.constantFrom('agent-last' as const, 'agent-first' as const), (m, i, o, a, t, layout) => {
      const d = decodeVerifyInference(encodeVerifyInference({ modelHash: m, inputHash: i, outputHash: o, agentAddress: a, tokenCount: t }, layout), layout)
      assert.deepEqual([d.modelHash, d.inputHash, d.outputHash, d.agentAddress.toLowerCase(), d.tokenCount], [m, i, o, a, t])
    }),
  )
})

test('agentRegister: name right-padded, modelHash, capCount, capabilities', () => {
  const caps = [capabilityId('text-generation'), h('11')]
  const data = encodeAgentRegister({ name: 'node-1', modelHash: h('ee'), capabilities: caps })
  const name = Buffer.from('node-1').toString('hex').padEnd(64, '0')
  const tg = Buffer.from('text-generation').toString('hex').padEnd(64, '0')
  assert.equal(data, `0x${name}${'ee'.repeat(32)}${'00'.repeat(31)}02${tg}${'11'.repeat(32)}`)
  assert.equal(encodeAgentRegister({ name: 'x', modelHash: h('ee') }).length, 2 + 96 * 2)
  assert.throws(() => encodeAgentRegister({ name: 'x'.repeat(33), modelHash: h('ee') }), /1 to 32 bytes/)
  assert.throws(() => encodeAgentRegister({ name: '', modelHash: h('ee') }), /1 to 32 bytes/)
  assert.throws(() => capabilityId('c'.repeat(33)), /longer than 32 bytes/)
})

test('heartbeat and claim: empty for the sender, a left-padded address for an operator', () => {
  assert.equal(encodeHeartbeat(), '0x')
  assert.equal(encodeClaim(), '0x')
  assert.equal(encodeHeartbeat(agent), `0x${agentWord}`)
  assert.equal(encodeClaim(agent), `0x${agentWord}`)
  assert.throws(() => encodeClaim('0x1234'), PrecompileCalldataError)
})
