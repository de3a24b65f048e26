/** Standard base64 with padding (what the Orban wire carries for keys, signatures, challenges). */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

export class Base64Error extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'Base64Error'
  }
}

/**
 * Decodes base64; the URL-safe alphabet and missing padding are accepted too (senders differ),
 * anything else is a Base64Error.
 */
export function base64ToBytes(text: string): Uint8Array {
  const standard = text.replace(/-/g, '+').replace(/_/g, '/')
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(standard)) throw new Base64Error('not base64')
  const bare = standard.replace(/=+$/, '')
  if (bare.length % 4 === 1) throw new Base64Error('base64 has a dangling character')
  let binary: string
  try {
    binary = atob(bare + '='.repeat((4 - (bare.length % 4)) % 4))
  } catch {
    throw new Base64Error('not base64')
  }
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
