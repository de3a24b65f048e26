// IEEE half and bfloat16 conversions for weights and wire tensors.

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

let halfTable: Float32Array | undefined
function table(): Float32Array {
  if (halfTable) return halfTable
  halfTable = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1
    const exp = (h >> 10) & 0x1f
    const frac = h & 0x3ff
    halfTable[h] =
      exp === 0 ? sign * frac * 2 ** -24 : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * (1 + frac / 1024) * 2 ** (exp - 15)
  }
  return halfTable
}

export function float16ToFloat32(src: Uint16Array): Float32Array {
  const t = table()
  const out = new Float32Array(src.length)
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!
  return out
}

export function bfloat16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length)
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16
  return new Float32Array(out.buffer)
}

/** Round-to-nearest-even float32 → float16 bits. */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length)
  for (let i = 0; i < src.length; i++) {
    f32[0] = src[i]!
    const x = u32[0]!
    const sign = (x >>> 16) & 0x8000
    const exp = (x >>> 23) & 0xff
    let mant = x & 0x7fffff
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0)
      continue
    }
    const e = exp - 127 + 15
    if (e >= 31) {
      out[i] = sign | 0x7c00
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign
        continue
      }
      mant |= 0x800000
      const shift = 14 - e
      let h = mant >>> shift
      const rem = mant & ((1 << shift) - 1)
      const half = 1 << (shift - 1)
      if (rem > half || (rem === half && h & 1)) h++
      out[i] = sign | h
    } else {
      let h = (e << 10) | (mant >>> 13)
      const rem = mant & 0x1fff
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++
      out[i] = sign | h
    }
  }
  return out
}

/** float32 → bfloat16 bits, round-to-nearest-even. */
export function float32ToBfloat16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  const out = new Uint16Array(src.length)
  for (let i = 0; i < src.length; i++) {
    const x = bits[i]!
    out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff
  }
  return out
}
