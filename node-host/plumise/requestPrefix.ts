/**
 * The generation a Plumise request belongs to: upstream names each step `<uuid hex>_s<step>`,
 * so the part before `_s<digits>` is the same for every step of one generation.
 */
export function requestPrefix(requestId: string): string {
  const m = /^(.+)_s\d+$/.exec(requestId)
  return m ? m[1]! : requestId
}
