import type { ModelSource } from './modelSource.ts'
import { float16ToFloat32, bfloat16ToFloat32 } from './float16.ts'

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I8' | 'U8' | 'BOOL' | 'F64'

const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I8: 1, U8: 1, BOOL: 1 }

export type TensorInfo = {
  name: string
  file: string
  dtype: SafetensorsDtype
  shape: number[]
  /** Absolute byte range in `file`. */
  start: number
  end: number
}

export type RawTensor = { info: TensorInfo; bytes: Uint8Array }

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SafetensorsError'
  }
}

export class MissingTensorError extends SafetensorsError {
  readonly tensor: string
  readonly location: string

  constructor(tensor: string, location: string) {
    super(`tensor "${tensor}" is missing from the checkpoint in ${location}`)
    this.tensor = tensor
    this.location = location
    this.name = 'MissingTensorError'
  }
}

/** Headers of every safetensors file of a checkpoint: names, dtypes, shapes and byte ranges. */
export type SafetensorsIndex = {
  source: ModelSource
  tensors: Map<string, TensorInfo>
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024

async function readHeader(source: ModelSource, file: string, signal?: AbortSignal): Promise<TensorInfo[]> {
  const lenBytes = await source.readRange(file, 0, 8, signal)
  const headerLength = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true))
  if (headerLength <= 1 || headerLength > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`${file}: implausible safetensors header length ${headerLength}`)
  }
  const headerBytes = await source.readRange(file, 8, 8 + headerLength, signal)
  let header: Record<string, unknown>
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes))
  } catch (e) {
    throw new SafetensorsError(`${file}: safetensors header is not valid JSON (${(e as Error).message})`)
  }
  const dataStart = 8 + headerLength
  const out: TensorInfo[] = []
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const v = value as { dtype?: string; shape?: number[]; data_offsets?: [number, number] }
    const dtype = v.dtype as SafetensorsDtype
    if (!(dtype in DTYPE_BYTES)) throw new SafetensorsError(`${file}: tensor "${name}" has unsupported dtype ${v.dtype}`)
    if (!Array.isArray(v.shape) || !Array.isArray(v.data_offsets)) throw new SafetensorsError(`${file}: tensor "${name}" has no shape or offsets`)
    const [s, e] = v.data_offsets
    const expected = v.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype]
    if (e - s !== expected) throw new SafetensorsError(`${file}: tensor "${name}" spans ${e - s} bytes, its shape needs ${expected}`)
    out.push({ name, file, dtype, shape: v.shape, start: dataStart + s, end: dataStart + e })
  }
  return out
}

/** Reads the header of one named safetensors file (outputs, references: not a checkpoint). */
export async function openSafetensorsFile(source: ModelSource, file: string, signal?: AbortSignal): Promise<SafetensorsIndex> {
  return { source, tensors: new Map((await readHeader(source, file, signal)).map((t) => [t.name, t])) }
}

/** Reads the header(s) only: `model.safetensors`, or every file of `model.safetensors.index.json`. */
export async function openSafetensors(source: ModelSource, signal?: AbortSignal): Promise<SafetensorsIndex> {
  let files: string[]
  if (await source.has('model.safetensors.index.json', signal)) {
    const index = JSON.parse(await source.readText('model.safetensors.index.json', signal)) as { weight_map?: Record<string, string> }
    if (!index.weight_map) throw new SafetensorsError('model.safetensors.index.json has no weight_map')
    files = [...new Set(Object.values(index.weight_map))]
  } else {
    files = ['model.safetensors']
  }
  const tensors = new Map<string, TensorInfo>()
  for (const infos of await Promise.all(files.map((f) => readHeader(source, f, signal)))) {
    for (const info of infos) tensors.set(info.name, info)
  }
  return { source, tensors }
}

export function tensorInfo(index: SafetensorsIndex, name: string): TensorInfo {
  const info = index.tensors.get(name)
  if (!info) throw new MissingTensorError(name, index.source.location)
  return info
}

/**
 * Reads the named tensors, merging neighbouring byte ranges of a file into one read
 * (one HTTP Range request for a run of layers instead of one per tensor).
 */
export async function readTensors(index: SafetensorsIndex, names: string[], signal?: AbortSignal): Promise<Map<string, RawTensor>> {
  const infos = names.map((n) => tensorInfo(index, n))
  const byFile = new Map<string, TensorInfo[]>()
  for (const info of infos) byFile.set(info.file, [...(byFile.get(info.file) ?? []), info])
  const out = new Map<string, RawTensor>()
  const MAX_GAP = 1 << 20
  const MAX_READ = 256 << 20
  const reads: Promise<void>[] = []
  for (const [file, list] of byFile) {
    list.sort((a, b) => a.start - b.start)
    let group: TensorInfo[] = []
    const flush = (g: TensorInfo[]) => {
      if (g.length === 0) return
      const start = g[0]!.start
      const end = Math.max(...g.map((t) => t.end))
      reads.push(
        index.source.readRange(file, start, end, signal).then((bytes) => {
          for (const t of g) out.set(t.name, { info: t, bytes: bytes.subarray(t.start - start, t.end - start) })
        }),
      )
    }
    for (const info of list) {
      const first = group[0]
      const last = group[group.length - 1]
      if (first && last && (info.start - last.end > MAX_GAP || info.end - first.start > MAX_READ)) {
        flush(group)
        group = []
      }
      group.push(info)
    }
    flush(group)
  }
  await Promise.all(reads)
  return out
}

/** The 16-bit elements of an F16 or BF16 tensor: a view of its bytes when they are 2-aligned, else a copy. */
export function halfBits(raw: RawTensor): Uint16Array {
  const { bytes, info } = raw
  if (info.dtype !== 'F16' && info.dtype !== 'BF16') throw new SafetensorsError(`tensor "${info.name}" is ${info.dtype}, not a 16-bit float tensor`)
  return bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2) : new Uint16Array(bytes.slice().buffer)
}

/** Upcasts a floating-point tensor to float32 (copying; the result owns its buffer). */
export function toFloat32(raw: RawTensor): Float32Array {
  const { bytes, info } = raw
  switch (info.dtype) {
    case 'F32':
      return new Float32Array(bytes.slice().buffer)
    case 'F16':
      return float16ToFloat32(halfBits(raw))
    case 'BF16':
      return bfloat16ToFloat32(halfBits(raw))
    case 'F64':
      return Float32Array.from(new Float64Array(bytes.slice().buffer))
    default:
      throw new SafetensorsError(`tensor "${info.name}" is ${info.dtype}, not a floating-point tensor`)
  }
}
