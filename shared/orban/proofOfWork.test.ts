import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { leadingZeroBits, proofOfWorkHash, solveProofOfWork, verifyProofOfWork } from './proofOfWork.ts'

// Independent reference: node:crypto's SHA-256 and zero bits counted from the binary string.
function referenceHash(nonce: Uint8Array, counter: bigint): Buffer {
  const le = Buffer.alloc(8)
  le.writeBigUInt64LE(counter)
  return createHash('sha256').update(nonce).update(le).digest()
}
function referenceZeroBits(hash: Uint8Array): number {
  const bits = [...hash].map((b) => b.toString(2).padStart(8, '0')).join('')
  const one = bits.indexOf('1')
  return one === -1 ? bits.length : one
}

test('solve finds the first counter with the required zero bits, as node:crypto computes it', async () => {
  const nonce = randomBytes(32)
  const solution = await solveProofOfWork({ nonce, difficulty: 10, chunk: 97 })
  const hash = referenceHash(nonce, solution.counter)
  assert.ok(referenceZeroBits(hash) >= 10)
  assert.equal(solution.response, hash.toString('hex'))
  assert.equal(solution.attempts, Number(solution.counter) + 1)
  for (let c = 0n; c < solution.counter; c++) assert.ok(referenceZeroBits(referenceHash(nonce, c)) < 10, `counter ${c} already met the difficulty`)
  assert.equal(verifyProofOfWork({ nonce, difficulty: 10, counter: solution.counter, response: solution.response }), true)
  assert.equal(verifyProofOfWork({ nonce, difficulty: 10, counter: solution.counter, response: '0x' + solution.response.toUpperCase() }), true)
})

test('a counter that does not meet the difficulty, a wrong response or a wrong nonce is refused', async () => {
  const nonce = randomBytes(16)
  const { counter } = await solveProofOfWork({ nonce, difficulty: 8 })
  let wrong = counter + 1n
  while (referenceZeroBits(referenceHash(nonce, wrong)) >= 8) wrong++
  assert.equal(verifyProofOfWork({ nonce, difficulty: 8, counter: wrong }), false)
  // The right counter with a hash that is not its own (a forged response).
  assert.equal(verifyProofOfWork({ nonce, difficulty: 8, counter, response: '00'.repeat(32) }), false)
  // Someone else's nonce.
  const other = randomBytes(16)
  if (referenceZeroBits(referenceHash(other, counter)) < 8) assert.equal(verifyProofOfWork({ nonce: other, difficulty: 8, counter }), false)
  assert.equal(verifyProofOfWork({ nonce, difficulty: 8, counter: -1n }), false)
})

test('counters past 2^32 are written as 8 little-endian bytes', async () => {
  const nonce = randomBytes(8)
  const start = 0x1_2345_6789n
  const solution = await solveProofOfWork({ nonce, difficulty: 6, start })
  assert.ok(solution.counter >= start)
  assert.deepEqual(Buffer.from(proofOfWorkHash(nonce, solution.counter)), referenceHash(nonce, solution.counter))
  assert.equal(verifyProofOfWork({ nonce, difficulty: 6, counter: solution.counter, response: solution.response }), true)
  // Across the 2^32 boundary in the middle of a chunk.
  const edge = 0xffff_fff0n
  const crossed = await solveProofOfWork({ nonce, difficulty: 9, start: edge })
  for (let c = edge; c < crossed.counter; c++) assert.ok(referenceZeroBits(referenceHash(nonce, c)) < 9)
  assert.ok(referenceZeroBits(referenceHash(nonce, crossed.counter)) >= 9)
})

test('leading zero bits agree with the reference', () => {
  for (let i = 0; i < 200; i++) {
    const bytes = randomBytes(4)
    bytes[0] = bytes[0]! >> (i % 9)
    if (i % 17 === 0) bytes[1] = 0
    assert.equal(leadingZeroBits(bytes), referenceZeroBits(bytes))
  }
  assert.equal(leadingZeroBits(new Uint8Array(32)), 256)
})

test('solving stops when the signal aborts', async () => {
  const controller = new AbortController()
  setTimeout(() => controller.abort(new Error('deadline')), 30)
  await assert.rejects(solveProofOfWork({ nonce: randomBytes(32), difficulty: 80, signal: controller.signal, chunk: 256 }), /deadline/)
})
