import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16 } from '../../shared/model/float16.ts'
import { PlumiseTensorError } from './plumiseTensorError.ts'
import { PickleCall, PickleGlobal, PicklePersistentId, restrictedUnpickle, type PickleValue } from './restrictedUnpickle.ts'
import { readStoredZip, writeStoredZip } from './storedZip.ts'

/**
 * One tensor as `torch.save` writes it: how upstream Plumise sends bfloat16 (numpy has no
 * bfloat16, so it calls `torch.save(t, BytesIO)` and reads with `torch.load(weights_only=True)`).
 */
export type TorchTensor = { shape: number[]; values: Float32Array; dtype: 'bfloat16' | 'float16' | 'float32' }

/** Storage classes (a subset of what weights_only accepts) with their element sizes. */
const STORAGES: Record<string, { dtype: TorchTensor['dtype']; bytes: number }> = {
  'torch.BFloat16Storage': { dtype: 'bfloat16', bytes: 2 },
  'torch.HalfStorage': { dtype: 'float16', bytes: 2 },
  'torch.FloatStorage': { dtype: 'float32', bytes: 4 },
}
const REBUILD = 'torch._utils._rebuild_tensor_v2'
const ORDERED_DICT = 'collections.OrderedDict'
/** Globals this reader lets a pickle name: all are on torch's weights_only allow-list. */
export const TORCH_ARCHIVE_GLOBALS: ReadonlySet<string> = new Set([REBUILD, ORDERED_DICT, ...Object.keys(STORAGES)])

/** PyTorch's record format version (`kProducedFileFormatVersion`), newline-terminated as it writes it. */
const VERSION = '3\n'
const MAX_DIMS = 8

export type WriteTorchArchiveParameters = {
  values: Float32Array
  shape: number[]
  /** The top folder of the archive; torch.save into a buffer uses "archive". @default 'archive' */
  name?: string
}

/** A bfloat16 tensor as the bytes of `torch.save(tensor, buffer)`. */
export function writeTorchArchive({ values, shape, name = 'archive' }: WriteTorchArchiveParameters): Uint8Array {
  const numel = shape.reduce((a, b) => a * b, 1)
  if (numel !== values.length) throw new PlumiseTensorError(`shape [${shape.join(', ')}] holds ${numel} values, got ${values.length}`)
  const halves = float32ToBfloat16(values)
  const enc = new TextEncoder()
  return writeStoredZip([
    { name: `${name}/data.pkl`, data: rebuildPickle(shape, numel) },
    { name: `${name}/byteorder`, data: enc.encode('little') },
    { name: `${name}/data/0`, data: new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength) },
    { name: `${name}/version`, data: enc.encode(VERSION) },
  ])
}

/**
 * The pickle torch writes for one contiguous CPU tensor (protocol 2):
 * `_rebuild_tensor_v2(<persistent ('storage', BFloat16Storage, '0', 'cpu', numel)>, 0, size, stride, False, OrderedDict())`.
 */
function rebuildPickle(shape: number[], numel: number): Uint8Array {
  const out: number[] = [0x80, 0x02]
  const ascii = (s: string) => out.push(...new TextEncoder().encode(s))
  const global = (module: string, name: string) => (out.push(0x63), ascii(`${module}\n${name}\n`))
  const str = (s: string) => {
    const b = new TextEncoder().encode(s)
    out.push(0x58, b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24, ...b)
  }
  const int = (n: number) => {
    if (n < 0x100) out.push(0x4b, n)
    else if (n < 0x10000) out.push(0x4d, n & 0xff, n >> 8)
    else if (n < 0x80000000) out.push(0x4a, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24)
    else {
      // LONG1, little-endian two's complement with room for the sign bit
      const bytes: number[] = []
      let x = BigInt(n)
      while (x > 0n) bytes.push(Number(x & 0xffn)), (x >>= 8n)
      if (bytes[bytes.length - 1]! & 0x80) bytes.push(0)
      out.push(0x8a, bytes.length, ...bytes)
    }
  }
  const tuple = (xs: number[]) => {
    if (xs.length === 0) return void out.push(0x29)
    if (xs.length > 3) out.push(0x28)
    for (const x of xs) int(x)
    out.push(xs.length === 1 ? 0x85 : xs.length === 2 ? 0x86 : xs.length === 3 ? 0x87 : 0x74)
  }
  const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1))
  global('torch._utils', '_rebuild_tensor_v2')
  out.push(0x28) // MARK: the arguments
  out.push(0x28) // MARK: the persistent id
  str('storage')
  global('torch', 'BFloat16Storage')
  str('0')
  str('cpu')
  int(numel)
  out.push(0x74, 0x51) // TUPLE, BINPERSID
  int(0) // storage offset
  tuple(shape)
  tuple(stride)
  out.push(0x89) // requires_grad False
  global('collections', 'OrderedDict')
  out.push(0x29, 0x52) // OrderedDict() (backward hooks)
  out.push(0x74, 0x52, 0x2e) // TUPLE, REDUCE, STOP
  return Uint8Array.from(out)
}

export type ReadTorchArchiveOptions = {
  /** Refuse archives above this size. @default 256 MiB */
  maxBytes?: number
  /** Refuse tensors with more elements (checked before any allocation). */
  maxElements?: number
}

/** Reads one tensor saved by `torch.save`, accepting only what `torch.load(weights_only=True)` would. */
export function readTorchArchive(bytes: Uint8Array, opts: ReadTorchArchiveOptions = {}): TorchTensor {
  const maxBytes = opts.maxBytes ?? 256 << 20
  if (bytes.length > maxBytes) throw new PlumiseTensorError(`archive of ${bytes.length} bytes is over the ${maxBytes}-byte limit`)
  const files = readStoredZip(bytes)
  const pkl = [...files.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n))
  if (!pkl) throw new PlumiseTensorError('not a torch.save archive: no <name>/data.pkl')
  const prefix = pkl.slice(0, -'data.pkl'.length)
  for (const n of files.keys()) if (!n.startsWith(prefix)) throw new PlumiseTensorError(`not a torch.save archive: ${n} is outside ${prefix}`)
  const byteorder = files.get(`${prefix}byteorder`)
  if (byteorder && new TextDecoder().decode(byteorder) !== 'little') throw new PlumiseTensorError('only little-endian archives are supported')
  if (!files.has(`${prefix}version`) && !files.has(`${prefix}.data/version`)) throw new PlumiseTensorError('not a torch.save archive: no version record')

  const root = restrictedUnpickle(files.get(pkl)!, { allowedGlobals: TORCH_ARCHIVE_GLOBALS })
  const bad = (why: string): never => {
    throw new PlumiseTensorError(`archive does not hold one tensor: ${why}`)
  }
  if (!(root instanceof PickleCall) || root.fn.qualified !== REBUILD) return bad(`the pickle must rebuild a tensor with ${REBUILD}`)
  const [persistent, offset, size, stride, requiresGrad] = root.args
  if (root.args.length < 5 || root.args.length > 7) bad(`${REBUILD} takes 5 to 7 arguments, got ${root.args.length}`)
  if (!(persistent instanceof PicklePersistentId)) return bad('first argument is not a storage reference')
  const pid = persistent.id
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') return bad("storage reference is not ('storage', type, key, location, numel)")
  const [, type, key, location, numel] = pid
  if (!(type instanceof PickleGlobal) || !(type.qualified in STORAGES)) return bad('unknown storage type')
  const storage = STORAGES[type.qualified]!
  if (typeof key !== 'string' || !/^\d+$/.test(key)) return bad('storage key is not a number string')
  if (location !== 'cpu' && !(typeof location === 'string' && location.startsWith('cuda'))) bad(`storage location ${String(location)}`)
  const isCount = (x: PickleValue): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
  if (!isCount(numel) || !isCount(offset)) return bad('storage size or offset is not a non-negative integer')
  if (!isTuple(size, isCount) || !isTuple(stride, isCount) || size.length !== stride.length || size.length > MAX_DIMS) return bad('size and stride are not tuples of equal length')
  if (typeof requiresGrad !== 'boolean') bad('requires_grad is not a bool')
  const hooks = root.args[5]
  if (hooks !== undefined && !(hooks instanceof PickleCall && hooks.fn.qualified === ORDERED_DICT && hooks.args.length === 0)) bad('backward hooks are not an empty OrderedDict')

  const count = size.reduce((a, b) => a * b, 1)
  if (opts.maxElements !== undefined && count > opts.maxElements) bad(`${count} elements, over the limit of ${opts.maxElements}`)
  const contiguous = size.map((_, i) => size.slice(i + 1).reduce((a, b) => a * b, 1))
  if (count > 0 && stride.some((s, i) => size[i]! > 1 && s !== contiguous[i])) bad('only contiguous tensors are supported')
  if (offset + count > numel) bad(`tensor of ${count} elements at offset ${offset} overruns its storage of ${numel}`)
  const data = files.get(`${prefix}data/${key}`)
  if (!data) return bad(`storage record data/${key} is missing`)
  if (data.length !== numel * storage.bytes) bad(`storage record holds ${data.length} bytes, ${numel} ${storage.dtype} values need ${numel * storage.bytes}`)
  // Copy out of the archive into aligned memory; sizes are checked against real bytes above.
  const slice = new Uint8Array(data.subarray(offset * storage.bytes, (offset + count) * storage.bytes))
  const values =
    storage.dtype === 'float32'
      ? new Float32Array(slice.buffer)
      : storage.dtype === 'float16'
        ? float16ToFloat32(new Uint16Array(slice.buffer))
        : bfloat16ToFloat32(new Uint16Array(slice.buffer))
  return { shape: size, values, dtype: storage.dtype }
}

function isTuple<T extends PickleValue>(x: PickleValue | undefined, each: (v: PickleValue) => v is T): x is T[] {
  return Array.isArray(x) && x.every(each)
}
