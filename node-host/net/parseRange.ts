/** Bytes `start` to `end` of a file, both included. */
export type ByteRange = { start: number; end: number }

/**
 * Reads a `Range` header against a file of `size` bytes (RFC 9110 §14):
 * - one satisfiable range (`bytes=a-b`, `bytes=a-`, `bytes=-n`): that range, clamped to the file;
 * - no ranges at all satisfiable (every first byte past the end, `bytes=-0`, `b < a`): `'unsatisfiable'` (416);
 * - absent, not a `bytes` range, malformed, or several ranges: `null`, i.e. send the whole file
 *   with 200, which RFC 9110 allows for any Range request and spares the server multipart bodies
 *   and the overlapping-range amplification they invite.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (header === undefined) return null
  const m = /^bytes=(.*)$/i.exec(header.trim())
  if (!m) return null
  const specs = m[1]!.split(',').map((s) => s.trim()).filter(Boolean)
  if (specs.length === 0) return null
  const ranges: Array<ByteRange | 'unsatisfiable'> = []
  for (const spec of specs) {
    const r = /^(\d*)-(\d*)$/.exec(spec)
    if (!r || (!r[1] && !r[2])) return null
    if (!r[1]) {
      // Suffix: the last n bytes.
      const n = Number(r[2])
      ranges.push(n === 0 || size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 })
      continue
    }
    const start = Number(r[1])
    const last = r[2] ? Number(r[2]) : Infinity
    if (last < start || start >= size) ranges.push('unsatisfiable')
    else ranges.push({ start, end: Math.min(last, size - 1) })
  }
  if (ranges.every((r) => r === 'unsatisfiable')) return 'unsatisfiable'
  return ranges.length === 1 ? (ranges[0] as ByteRange) : null
}
