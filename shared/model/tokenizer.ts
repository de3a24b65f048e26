import { Tokenizer } from '@huggingface/tokenizers'
import type { ModelSource } from './modelSource.ts'

/** Text ↔ token ids for one checkpoint, from its `tokenizer.json` (no network). */
export type TextTokenizer = {
  encode(text: string): number[]
  /** Special tokens are skipped unless asked for, as the Hugging Face `tokenizers` library does. */
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string
  /** Ids of the special tokens (BOS, EOS, padding …). */
  specialIds: number[]
}

export async function loadTokenizer(source: ModelSource, signal?: AbortSignal): Promise<TextTokenizer> {
  const [json, config] = await Promise.all([
    source.readText('tokenizer.json', signal).then((t) => JSON.parse(t) as object),
    readTokenizerConfig(source, signal),
  ])
  const tok = new Tokenizer(json, config)
  const specialIds = (tok as unknown as { all_special_ids: number[] }).all_special_ids ?? []
  return {
    encode: (text) => tok.encode(text).ids,
    decode: (ids, opts) => (ids.length ? tok.decode(ids, { skip_special_tokens: opts?.skipSpecialTokens ?? true }) : ''),
    specialIds,
  }
}

/** `tokenizer_config.json` (chat template, special tokens), or `{}` when the checkpoint has none. */
export async function readTokenizerConfig(source: ModelSource, signal?: AbortSignal): Promise<Record<string, unknown>> {
  if (!(await source.has('tokenizer_config.json', signal))) return {}
  return JSON.parse(await source.readText('tokenizer_config.json', signal)) as Record<string, unknown>
}
