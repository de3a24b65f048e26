import { PlumiseTensorError } from './plumiseTensorError.ts'
import { decodeRawTensor, encodeRawTensor } from './rawTensor.ts'
import { readTorchArchive, writeTorchArchive } from './torchArchive.ts'

/** Dtypes on the Plumise wire: float32/float16 raw little-endian, bfloat16 a torch.save archive. */
export type PlumiseDtype = 'float32' | 'float16' | 'bfloat16'
export const PLUMISE_DTYPES: readonly PlumiseDtype[] = ['float32', 'float16', 'bfloat16']

/** The tensor fields of a ForwardRequest/ForwardResponse. */
export type PlumiseTensorFields = { hiddenStates: Uint8Array; shape: bigint[]; dtype: string }

/** Upstream's message limit; a tensor cannot be larger. */
export const PLUMISE_MAX_MESSAGE_BYTES = 256 << 20

export const isPlumiseDtype = (d: string): d is PlumiseDtype => (PLUMISE_DTYPES as readonly string[]).includes(d)

/** A hidden state `[1, seq, hidden]` in the given wire dtype. */
export function encodePlumiseHidden(values: Float32Array, hidden: number, dtype: PlumiseDtype): PlumiseTensorFields {
  const seq = values.length / hidden
  if (!Number.isInteger(seq) || seq < 1) throw new PlumiseTensorError(`${values.length} values are not whole rows of ${hidden}`)
  const shape = [1, seq, hidden]
  const hiddenStates = dtype === 'bfloat16' ? writeTorchArchive({ values, shape }) : encodeRawTensor(values, dtype)
  return { hiddenStates, shape: shape.map(BigInt), dtype }
}

/** Validates a hidden state `[1, seq, hidden]` from the wire and returns its float32 values. */
export function decodePlumiseHidden(t: PlumiseTensorFields, hidden: number): { values: Float32Array; seq: number; dtype: PlumiseDtype } {
  const dtype = t.dtype
  if (!isPlumiseDtype(dtype)) throw new PlumiseTensorError(`unsupported dtype "${dtype}" (float32, float16, bfloat16)`)
  if (t.shape.length !== 3 || t.shape[0] !== 1n || t.shape[2] !== BigInt(hidden) || t.shape[1]! < 1n) {
    throw new PlumiseTensorError(`hidden state shape [${t.shape.join(', ')}] is not [1, seq, ${hidden}]`)
  }
  // Bounded before anything is allocated: no tensor can be larger than a message.
  if (t.shape[1]! * BigInt(hidden) * 2n > BigInt(PLUMISE_MAX_MESSAGE_BYTES)) throw new PlumiseTensorError(`hidden state of shape [${t.shape.join(', ')}] is over the message limit`)
  const seq = Number(t.shape[1])
  const count = seq * hidden
  if (dtype !== 'bfloat16') return { values: decodeRawTensor(t.hiddenStates, dtype, count), seq, dtype }
  const tensor = readTorchArchive(t.hiddenStates, { maxElements: count })
  if (tensor.shape.join(',') !== `1,${seq},${hidden}`) {
    throw new PlumiseTensorError(`archive holds a tensor of shape [${tensor.shape.join(', ')}], the request says [1, ${seq}, ${hidden}]`)
  }
  if (tensor.dtype !== 'bfloat16') throw new PlumiseTensorError(`dtype "bfloat16" but the archive holds ${tensor.dtype}`)
  return { values: tensor.values, seq, dtype }
}
