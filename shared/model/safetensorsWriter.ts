import type { SafetensorsDtype } from './safetensors.ts'

export type TensorToWrite = { dtype: SafetensorsDtype; shape: number[]; data: ArrayBufferView }

/**
 * Serializes tensors to the safetensors format: an 8-byte header length, the JSON header
 * (padded with spaces to 8 bytes), then the tensors' bytes in order. Returns the pieces to write,
 * so large tensors are never copied into one buffer.
 */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {}
  const pieces: Uint8Array[] = []
  let offset = 0
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] }
    pieces.push(bytes)
    offset += bytes.byteLength
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (json.length % 8)) % 8)
  const headerBytes = new TextEncoder().encode(json)
  const length = new Uint8Array(8)
  new DataView(length.buffer).setBigUint64(0, BigInt(headerBytes.length), true)
  return [length, headerBytes, ...pieces]
}
