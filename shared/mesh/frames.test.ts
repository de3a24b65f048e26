import assert from 'node:assert/strict'
import { test } from 'node:test'
import { create } from '@bufbuild/protobuf'
import { FrameSchema, type DType } from '../../proto/gen/mesh_pb.js'
import { BadTensorError, MalformedFrameError, decodeFrame, decodeHidden, encodeFrame, encodeHidden } from './frames.ts'

test('a forward frame with a float16 hidden state round-trips within half precision', () => {
  const values = Float32Array.from({ length: 3 * 8 }, (_, i) => Math.sin(i) * 10)
  const frame = create(FrameSchema, { kind: { case: 'forward', value: { sessionId: 's', step: 4n, positionOffset: 17, input: { case: 'hidden', value: encodeHidden(values, 8) } } } })
  const bytes = encodeFrame(frame)
  assert.ok(bytes.length < values.byteLength, 'float16 on the wire: about half the bytes of float32')
  const back = decodeFrame(bytes)
  assert.equal(back.kind.case, 'forward')
  if (back.kind.case !== 'forward' || back.kind.value.input.case !== 'hidden') throw new Error('unreachable')
  const decoded = decodeHidden(back.kind.value.input.value, 8)
  values.forEach((v, i) => assert.ok(Math.abs(decoded[i]! - v) <= Math.abs(v) * 1e-3 + 1e-6))
  assert.equal(back.kind.value.positionOffset, 17)
  const exact = decodeHidden(encodeHidden(values, 8, 'float32'), 8)
  assert.deepEqual(exact, values)
})

test('malformed bytes and wrong tensors are typed errors', () => {
  assert.throws(() => decodeFrame(Uint8Array.of(0xff, 0xff, 0xff)), MalformedFrameError)
  assert.throws(() => decodeFrame(new Uint8Array(0)), MalformedFrameError)
  const t = encodeHidden(new Float32Array(16), 8)
  assert.throws(() => decodeHidden(t, 16), BadTensorError)
  assert.throws(() => decodeHidden({ ...t, data: t.data.subarray(1) }, 8), /needs 32 bytes, got 31/)
  assert.throws(() => decodeHidden({ ...t, dtype: 42 as DType }, 8), /unsupported tensor dtype/)
  assert.throws(() => decodeHidden(undefined, 8), /no input/)
})
