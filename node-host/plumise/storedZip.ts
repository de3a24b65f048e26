import { crc32 } from './crc32.ts'
import { PlumiseTensorError } from './plumiseTensorError.ts'

/**
 * The subset of zip that `torch.save` writes: stored (uncompressed) entries, no zip64, data
 * aligned to 64 bytes with an "FB" padding extra field as PyTorch's writer does.
 */
export type ZipEntry = { name: string; data: Uint8Array }

const LOCAL = 0x04034b50
const CENTRAL = 0x02014b50
const END = 0x06054b50
const ALIGN = 64
/** 1980-01-01, 00:00 in DOS format: deterministic archives. */
const DOS_DATE = 0x21

export function writeStoredZip(entries: ZipEntry[]): Uint8Array {
  const enc = new TextEncoder()
  const names = entries.map((e) => enc.encode(e.name))
  const crcs = entries.map((e) => crc32(e.data))
  const locals: { offset: number; extra: number }[] = []
  let size = 0
  for (const [i, e] of entries.entries()) {
    const start = 30 + names[i]!.length + 4
    const extra = 4 + ((ALIGN - ((size + start) % ALIGN)) % ALIGN)
    locals.push({ offset: size, extra })
    size += 30 + names[i]!.length + extra + e.data.length
  }
  const cdOffset = size
  for (const n of names) size += 46 + n.length
  const cdSize = size - cdOffset
  size += 22
  const out = new Uint8Array(size)
  const v = new DataView(out.buffer)
  for (const [i, e] of entries.entries()) {
    const { offset, extra } = locals[i]!
    const n = names[i]!
    v.setUint32(offset, LOCAL, true)
    v.setUint16(offset + 4, 20, true)
    v.setUint16(offset + 12, DOS_DATE, true)
    v.setUint32(offset + 14, crcs[i]!, true)
    v.setUint32(offset + 18, e.data.length, true)
    v.setUint32(offset + 22, e.data.length, true)
    v.setUint16(offset + 26, n.length, true)
    v.setUint16(offset + 28, extra, true)
    out.set(n, offset + 30)
    const x = offset + 30 + n.length
    v.setUint16(x, 0x4246, true) // "FB", PyTorch's padding field
    v.setUint16(x + 2, extra - 4, true)
    out.fill(0x5a, x + 4, x + extra) // 'Z', as PyTorch pads
    out.set(e.data, x + extra)
  }
  let p = cdOffset
  for (const [i, e] of entries.entries()) {
    const n = names[i]!
    v.setUint32(p, CENTRAL, true)
    v.setUint16(p + 4, 20, true)
    v.setUint16(p + 6, 20, true)
    v.setUint16(p + 14, DOS_DATE, true)
    v.setUint32(p + 16, crcs[i]!, true)
    v.setUint32(p + 20, e.data.length, true)
    v.setUint32(p + 24, e.data.length, true)
    v.setUint16(p + 28, n.length, true)
    v.setUint32(p + 42, locals[i]!.offset, true)
    out.set(n, p + 46)
    p += 46 + n.length
  }
  v.setUint32(p, END, true)
  v.setUint16(p + 8, entries.length, true)
  v.setUint16(p + 10, entries.length, true)
  v.setUint32(p + 12, cdSize, true)
  v.setUint32(p + 16, cdOffset, true)
  return out
}

/**
 * Reads a stored-only zip into views of `bytes` (no copies, nothing allocated from sizes the
 * archive claims before they are checked against its length). CRCs are verified.
 */
export function readStoredZip(bytes: Uint8Array, opts: { maxEntries?: number } = {}): Map<string, Uint8Array> {
  const maxEntries = opts.maxEntries ?? 64
  const fail = (why: string): never => {
    throw new PlumiseTensorError(`not a torch.save archive: ${why}`)
  }
  if (bytes.length < 22) fail('too short for a zip')
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let end = -1
  for (let p = bytes.length - 22; p >= Math.max(0, bytes.length - 22 - 0xffff); p--) {
    if (v.getUint32(p, true) === END) {
      end = p
      break
    }
  }
  if (end < 0) fail('no end-of-central-directory record')
  const count = v.getUint16(end + 10, true)
  const cdSize = v.getUint32(end + 12, true)
  const cdOffset = v.getUint32(end + 16, true)
  if (count === 0xffff || cdOffset === 0xffffffff) fail('zip64 archives are not supported')
  if (count > maxEntries) fail(`${count} entries, over the limit of ${maxEntries}`)
  if (cdOffset + cdSize > end) fail('central directory out of bounds')
  const dec = new TextDecoder('utf-8', { fatal: true })
  const files = new Map<string, Uint8Array>()
  let p = cdOffset
  for (let i = 0; i < count; i++) {
    if (p + 46 > end || v.getUint32(p, true) !== CENTRAL) fail(`bad central directory entry ${i}`)
    const flags = v.getUint16(p + 8, true)
    const method = v.getUint16(p + 10, true)
    const crc = v.getUint32(p + 16, true)
    const compSize = v.getUint32(p + 20, true)
    const size = v.getUint32(p + 24, true)
    const nameLen = v.getUint16(p + 28, true)
    const extraLen = v.getUint16(p + 30, true)
    const commentLen = v.getUint16(p + 32, true)
    const local = v.getUint32(p + 42, true)
    if (p + 46 + nameLen > end) fail('entry name out of bounds')
    const name = dec.decode(bytes.subarray(p + 46, p + 46 + nameLen))
    p += 46 + nameLen + extraLen + commentLen
    if (flags & 1) fail(`entry ${name} is encrypted`)
    if (method !== 0) fail(`entry ${name} is compressed (method ${method}); torch.save stores entries`)
    if (compSize !== size || size === 0xffffffff || local === 0xffffffff) fail(`entry ${name} has zip64 or inconsistent sizes`)
    if (files.has(name)) fail(`duplicate entry ${name}`)
    if (local + 30 > cdOffset || v.getUint32(local, true) !== LOCAL) fail(`entry ${name}: bad local header`)
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true)
    if (start + size > cdOffset) fail(`entry ${name}: data out of bounds`)
    const data = bytes.subarray(start, start + size)
    if (crc32(data) !== crc) fail(`entry ${name}: CRC mismatch`)
    files.set(name, data)
  }
  return files
}
