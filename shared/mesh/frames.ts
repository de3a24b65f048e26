import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import { DType, FrameSchema, TensorSchema, type Frame, type Tensor } from '../../proto/gen/mesh_pb.js'
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from '../model/float16.ts'

/** The peer protocol's id; the version changes when frames stop being compatible. */
export const FORWARD_PROTOCOL = '/shardmesh/forward/1.0.0'

export class MalformedFrameError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'MalformedFrameError'
  }
}

export class BadTensorError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'BadTensorError'
  }
}

export function encodeFrame(frame: Frame): Uint8Array {
  return toBinary(FrameSchema, frame)
}

/** Decodes one frame; a frame that is not valid protobuf or carries nothing is a MalformedFrameError. */
export function decodeFrame(bytes: Uint8Array): Frame {
  let frame: Frame
  try {
    frame = fromBinary(FrameSchema, bytes)
  } catch (e) {
    throw new MalformedFrameError(`frame is not a valid shardmesh.mesh.v1.Frame: ${(e as Error).message}`)
  }
  if (frame.kind.case === undefined) throw new MalformedFrameError('frame carries no message')
  return frame
}

export type WireDtype = 'float32' | 'float16' | 'bfloat16'

const BYTES: Record<WireDtype, number> = { float32: 4, float16: 2, bfloat16: 2 }
const TO_ENUM: Record<WireDtype, DType> = { float32: DType.DTYPE_FLOAT32, float16: DType.DTYPE_FLOAT16, bfloat16: DType.DTYPE_BFLOAT16 }

/** A hidden state `[1, seq, hidden]` as a wire tensor (float16 by default: half the bytes). */
export function encodeHidden(values: Float32Array, hidden: number, dtype: WireDtype = 'float16'): Tensor {
  const seq = values.length / hidden
  const data =
    dtype === 'float32'
      ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
      : new Uint8Array((dtype === 'float16' ? float32ToFloat16(values) : float32ToBfloat16(values)).buffer)
  return create(TensorSchema, { dtype: TO_ENUM[dtype], shape: [1, seq, hidden], data })
}

/** Validates a wire tensor against the expected hidden size and returns float32 values. */
export function decodeHidden(tensor: Tensor | undefined, hidden: number): Float32Array {
  if (!tensor) throw new BadTensorError('forward frame has no input')
  const dtype = (Object.keys(TO_ENUM) as WireDtype[]).find((k) => TO_ENUM[k] === tensor.dtype)
  if (!dtype) throw new BadTensorError(`unsupported tensor dtype ${tensor.dtype}`)
  const [batch, seq, width] = tensor.shape
  if (tensor.shape.length !== 3 || batch !== 1 || !seq || width !== hidden) {
    // A shape of any length fits in a frame: only a short one is echoed.
    const shape = tensor.shape.length <= 4 ? tensor.shape.join(', ') : `${tensor.shape.length} dimensions`
    throw new BadTensorError(`hidden state shape [${shape}] is not [1, seq, ${hidden}]`)
  }
  // The byte count follows from the shape and is checked before anything is allocated for the values.
  const expected = seq * hidden * BYTES[dtype]
  if (tensor.data.byteLength !== expected) {
    throw new BadTensorError(`hidden state of shape [1, ${seq}, ${hidden}] ${dtype} needs ${expected} bytes, got ${tensor.data.byteLength}`)
  }
  // A copy with its own aligned buffer (the decoder may hand out views of a Node Buffer pool).
  const copy = new Uint8Array(tensor.data)
  if (dtype === 'float32') return new Float32Array(copy.buffer)
  const halves = new Uint16Array(copy.buffer)
  return dtype === 'float16' ? float16ToFloat32(halves) : bfloat16ToFloat32(halves)
}
