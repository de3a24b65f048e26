import assert from 'node:assert/strict'
import { test } from 'node:test'
import { PlumiseTensorError } from './plumiseTensorError.ts'
import { decodeRawTensor, encodeRawTensor } from './rawTensor.ts'

test('float32 is raw little-endian IEEE bytes', () => {
  const bytes = encodeRawTensor(Float32Array.of(1, -2.5), 'float32')
  assert.deepEqual([...bytes], [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0])
  assert.deepEqual([...decodeRawTensor(bytes, 'float32', 2)], [1, -2.5])
})

test('float16 is raw little-endian half bytes (numpy float16.tobytes())', () => {
  const bytes = encodeRawTensor(Float32Array.of(1, -2.5, 65504), 'float16')
  // 1.0 = 0x3c00, -2.5 = 0xc100, 65504 = 0x7bff
  assert.deepEqual([...bytes], [0x00, 0x3c, 0x00, 0xc1, 0xff, 0x7b])
  assert.deepEqual([...decodeRawTensor(bytes, 'float16', 3)], [1, -2.5, 65504])
})

test('a wrong byte count is refused, including from an unaligned view', () => {
  assert.throws(() => decodeRawTensor(new Uint8Array(7), 'float32', 2), PlumiseTensorError)
  assert.throws(() => decodeRawTensor(new Uint8Array(5), 'float16', 2), PlumiseTensorError)
  const unaligned = new Uint8Array(9).subarray(1)
  assert.equal(decodeRawTensor(unaligned, 'float32', 2).length, 2)
})
