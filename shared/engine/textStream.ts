import type { TextTokenizer } from '../model/tokenizer.ts'

/**
 * Turns generated ids into text pieces as they arrive. Decodes the whole continuation each time
 * (byte-level BPE can split one character across tokens) and holds back a trailing U+FFFD.
 */
export function createTextStream(tokenizer: TextTokenizer): { push(id: number): string; flush(): string; text(): string } {
  const ids: number[] = []
  let emitted = 0
  let full = ''
  return {
    push(id) {
      ids.push(id)
      full = tokenizer.decode(ids)
      if (full.endsWith('\uFFFD')) return ''
      const piece = full.slice(emitted)
      emitted = full.length
      return piece
    },
    flush() {
      const piece = full.slice(emitted)
      emitted = full.length
      return piece
    },
    text: () => full,
  }
}
