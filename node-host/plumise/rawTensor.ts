import { float16ToFloat32, float32ToFloat16 } from '../../shared/model/float16.ts'
import { PlumiseTensorError } from './plumiseTensorError.ts'

/** Dtypes Plumise sends as raw little-endian bytes (numpy `tobytes()` upstream). */
export type RawDtype = 'float32' | 'float16'

const BYTES: Record<RawDtype, number> = { float32: 4, float16: 2 }

/** Float32 values as raw little-endian bytes of `dtype`. */
export function encodeRawTensor(values: Float32Array, dtype: RawDtype): Uint8Array {
  if (dtype === 'float32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
  const halves = float32ToFloat16(values)
  return new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength)
}

/** Raw little-endian bytes of `dtype` holding exactly `count` values, as float32. */
export function decodeRawTensor(bytes: Uint8Array, dtype: RawDtype, count: number): Float32Array {
  const expected = count * BYTES[dtype]
  if (bytes.byteLength !== expected) throw new PlumiseTensorError(`${count} ${dtype} values need ${expected} bytes, got ${bytes.byteLength}`)
  // A copy with its own aligned buffer: the decoder hands out views into Node's pooled buffers.
  const copy = new Uint8Array(bytes)
  return dtype === 'float32' ? new Float32Array(copy.buffer) : float16ToFloat32(new Uint16Array(copy.buffer))
}
