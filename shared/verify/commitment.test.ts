import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test } from 'node:test'
import { create } from '@bufbuild/protobuf'
import { bytesToHex } from '@noble/hashes/utils.js'
import { StepInputSchema, type StepInput } from '../../proto/gen/mesh_pb.js'
import { finishStepDigest, startStepDigest, stepDigest, type StepMeta } from './commitment.ts'

const meta: StepMeta = { peer: '12D3KooWpeer', session: 's', origin: '12D3KooWorigin', model: 'm', step: 3, chunk: 0, start: 0, end: 2, length: 4, row: 'hidden' }
const hidden = (over: { data?: number[]; shape?: number[]; dtype?: number; step?: bigint; chunkIndex?: number } = {}): StepInput =>
  create(StepInputSchema, { step: over.step ?? 3n, chunkIndex: over.chunkIndex ?? 0, input: { case: 'hidden', value: { dtype: over.dtype ?? 1, shape: over.shape ?? [1, 1, 2], data: new Uint8Array(over.data ?? [1, 2, 3, 4, 5, 6, 7, 8]) } } })
const tokens = (ids: number[]): StepInput => create(StepInputSchema, { step: 3n, chunkIndex: 0, input: { case: 'tokens', value: { ids } } })
const row = Float32Array.from([0.5, -1])

test('a step digest changes with every part it binds: the input header, each input byte, token ids, each meta field, each output value', () => {
  const base = bytesToHex(stepDigest(meta, hidden(), row))
  const variants: Array<[string, string]> = [
    ['step', bytesToHex(stepDigest(meta, hidden({ step: 4n }), row))],
    ['chunk', bytesToHex(stepDigest(meta, hidden({ chunkIndex: 1 }), row))],
    ['dtype', bytesToHex(stepDigest(meta, hidden({ dtype: 2 }), row))],
    ['shape', bytesToHex(stepDigest(meta, hidden({ shape: [1, 2, 1] }), row))],
    ['an input byte', bytesToHex(stepDigest(meta, hidden({ data: [1, 2, 3, 4, 5, 6, 7, 9] }), row))],
    // the header states the input's length, so no byte can shift from one part of the hash into the next
    ['a shorter input', bytesToHex(stepDigest(meta, hidden({ data: [1, 2, 3, 4, 5, 6, 7] }), row))],
    ['tokens', bytesToHex(stepDigest(meta, tokens([1, 2]), row))],
    ['other tokens', bytesToHex(stepDigest(meta, tokens([1, 3]), row))],
    ['the meta', bytesToHex(stepDigest({ ...meta, length: 5 }, hidden(), row))],
    ['the weights', bytesToHex(stepDigest({ ...meta, weights: 'int4' }, hidden(), row))],
    ['an output value', bytesToHex(stepDigest(meta, hidden(), Float32Array.from([0.5, -1.0000001])))],
  ]
  const seen = new Set([base])
  for (const [what, d] of variants) {
    assert.ok(!seen.has(d), `changing ${what} left the digest as another's`)
    seen.add(d)
  }
  // float32 is the default: naming it or not is the same step
  assert.equal(bytesToHex(stepDigest({ ...meta, weights: 'float32' }, hidden(), row)), base)
})

test("the hop's two halves (the input first, the output once computed) give the one-call digest, with noble's or node:crypto's SHA-256", () => {
  for (const input of [hidden(), tokens([5, 6, 7])]) {
    const whole = bytesToHex(stepDigest(meta, input, row))
    assert.equal(bytesToHex(finishStepDigest(startStepDigest(input), meta, row)), whole)
    assert.equal(bytesToHex(finishStepDigest(startStepDigest(input, () => createHash('sha256')), meta, row)), whole)
  }
})
