import { copyFile, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** Dimensions of a LLaMA checkpoint, named as in Hugging Face's `LlamaConfig`. */
export type LlamaConfig = {
  hidden_size: number
  num_hidden_layers: number
  num_attention_heads: number
  num_key_value_heads: number
  intermediate_size: number
  vocab_size: number
  tie_word_embeddings: boolean
  rope_theta: number
  rms_norm_eps: number
  max_position_embeddings: number
}

/** Named shapes: real checkpoints' dimensions, and a tiny one for tests. */
export const LLAMA_PRESETS = {
  /** TinyLlama-1.1B (1.10 B parameters, untied LM head). */
  'tinyllama-1.1b': {
    hidden_size: 2048,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    intermediate_size: 5632,
    vocab_size: 32000,
    tie_word_embeddings: false,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 2048,
  },
  /** A few hundred thousand parameters: head size 16 (the fused-rotary path), untied, GQA. */
  tiny: {
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    intermediate_size: 160,
    vocab_size: 320,
    tie_word_embeddings: false,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 128,
  },
} satisfies Record<string, LlamaConfig>

export type LlamaPreset = keyof typeof LLAMA_PRESETS

export type SynthesizeLlamaParameters = {
  /** Output folder (created; existing files of the same names are replaced). */
  dir: string
  config: LlamaConfig
  /** Element type of the weights in `model.safetensors`. */
  dtype: 'float16' | 'float32'
  /** Same seed, same bytes. @default 1 */
  seed?: number
  /** A Hugging Face folder whose `tokenizer.json` is copied when its `config.json` has the same vocab size. */
  tokenizerFrom?: string
  /** Called after each tensor is written. */
  onProgress?: (writtenBytes: number, totalBytes: number) => void
}

export type SynthesizeLlamaResult = {
  dir: string
  parameters: number
  /** Size of `model.safetensors`. */
  bytes: number
  /** `copied` from `tokenizerFrom`, else a synthetic byte-level BPE vocabulary. */
  tokenizer: 'copied' | 'byte-level'
  ms: number
}

/** Standard deviation of the random matrices (Hugging Face's `initializer_range`). */
export const WEIGHT_STD = 0.02
/** Token id of `<|endoftext|>` in the synthetic byte-level vocabulary (after the 256 bytes). */
export const SYNTHETIC_EOS_ID = 256

type TensorPlan = { name: string; shape: number[]; kind: 'matrix' | 'norm' }

/** Every tensor of a `LlamaForCausalLM` checkpoint, in the order a shard reads them. */
export function llamaTensorPlan(c: LlamaConfig): TensorPlan[] {
  const H = c.hidden_size
  const D = H / c.num_attention_heads
  const q = c.num_attention_heads * D
  const kv = c.num_key_value_heads * D
  const I = c.intermediate_size
  const plan: TensorPlan[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocab_size, H], kind: 'matrix' }]
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`
    plan.push(
      { name: `${p}input_layernorm.weight`, shape: [H], kind: 'norm' },
      { name: `${p}self_attn.q_proj.weight`, shape: [q, H], kind: 'matrix' },
      { name: `${p}self_attn.k_proj.weight`, shape: [kv, H], kind: 'matrix' },
      { name: `${p}self_attn.v_proj.weight`, shape: [kv, H], kind: 'matrix' },
      { name: `${p}self_attn.o_proj.weight`, shape: [H, q], kind: 'matrix' },
      { name: `${p}post_attention_layernorm.weight`, shape: [H], kind: 'norm' },
      { name: `${p}mlp.gate_proj.weight`, shape: [I, H], kind: 'matrix' },
      { name: `${p}mlp.up_proj.weight`, shape: [I, H], kind: 'matrix' },
      { name: `${p}mlp.down_proj.weight`, shape: [H, I], kind: 'matrix' },
    )
  }
  plan.push({ name: 'model.norm.weight', shape: [H], kind: 'norm' })
  if (!c.tie_word_embeddings) plan.push({ name: 'lm_head.weight', shape: [c.vocab_size, H], kind: 'matrix' })
  return plan
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1)

/**
 * Value tables indexed by the sum of a 32-bit random word's four bytes (0…1020): an Irwin–Hall
 * sum of four uniforms is bell-shaped, so one xorshift step and one lookup give a value that is
 * N(mean, std)-ish, clipped at ±3.45 std. 1021 levels are plenty for benchmark weights.
 */
function valueTable(mean: number, std: number, dtype: SynthesizeLlamaParameters['dtype']): Float32Array | Uint16Array {
  const sumMean = 510
  const sumStd = Math.sqrt((4 * (256 * 256 - 1)) / 12)
  const f32 = Float32Array.from({ length: 1021 }, (_, s) => mean + ((s - sumMean) / sumStd) * std)
  return dtype === 'float32' ? f32 : toFloat16Bits(f32)
}

/** float32 → IEEE half bits (round to nearest; the table's values are normal halves). */
function toFloat16Bits(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  return Uint16Array.from(bits, (x) => {
    const sign = (x >>> 16) & 0x8000
    const e = ((x >>> 23) & 0xff) - 127 + 15
    if ((x & 0x7fffffff) === 0 || e <= 0) return sign // zero, or below half's normal range: flush
    const h = (e << 10) | ((x & 0x7fffff) >>> 13)
    return sign | (h + ((x >>> 12) & 1)) // round half up on the first dropped bit
  })
}

/** A per-tensor xorshift32 state from the seed and the tensor's index (never 0). */
function tensorState(seed: number, index: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + Math.imul(index + 1, 0x85ebca6b)) >>> 0
  z = Math.imul(z ^ (z >>> 16), 0x7feb352d) >>> 0
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b) >>> 0
  z = (z ^ (z >>> 16)) >>> 0
  return z || 0x9e3779b9
}

/** Fills `out` from the table; returns the generator's next state. */
function fillRandom(out: Float32Array | Uint16Array, table: Float32Array | Uint16Array, state: number): number {
  let x = state
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = table[(x & 255) + ((x >>> 8) & 255) + ((x >>> 16) & 255) + ((x >>> 24) & 255)]!
  }
  return x
}

/** The safetensors header: 8-byte length, JSON padded with spaces to a multiple of 8. */
function safetensorsHeader(plan: TensorPlan[], dtype: SynthesizeLlamaParameters['dtype']): { bytes: Uint8Array; dataBytes: number } {
  const size = dtype === 'float32' ? 4 : 2
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  let offset = 0
  for (const t of plan) {
    const n = numel(t.shape) * size
    header[t.name] = { dtype: dtype === 'float32' ? 'F32' : 'F16', shape: t.shape, data_offsets: [offset, offset + n] }
    offset += n
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (json.length % 8)) % 8)
  const text = new TextEncoder().encode(json)
  const bytes = new Uint8Array(8 + text.length)
  new DataView(bytes.buffer).setBigUint64(0, BigInt(text.length), true)
  bytes.set(text, 8)
  return { bytes, dataBytes: offset }
}

const CHUNK_ELEMENTS = 1 << 22

/**
 * Streams random weights to `model.safetensors`: two chunk buffers, so the next chunk is
 * generated while the previous one is written. Memory stays at a few tens of MB at any size.
 */
async function writeWeights(path: string, plan: TensorPlan[], p: SynthesizeLlamaParameters): Promise<number> {
  const { bytes: header, dataBytes } = safetensorsHeader(plan, p.dtype)
  const make = () => (p.dtype === 'float32' ? new Float32Array(CHUNK_ELEMENTS) : new Uint16Array(CHUNK_ELEMENTS))
  const buffers = [make(), make()]
  const tables = { matrix: valueTable(0, WEIGHT_STD, p.dtype), norm: valueTable(1, WEIGHT_STD, p.dtype) }
  const file = await open(path, 'w')
  try {
    let position = 0
    const writeAll = async (view: Uint8Array) => {
      let done = 0
      while (done < view.length) done += (await file.write(view, done, view.length - done, position + done)).bytesWritten
      position += view.length
    }
    await writeAll(header)
    let pending: Promise<void> = Promise.resolve()
    let turn = 0
    for (const [index, t] of plan.entries()) {
      let state = tensorState(p.seed ?? 1, index)
      for (let left = numel(t.shape); left > 0; ) {
        const n = Math.min(left, CHUNK_ELEMENTS)
        const out = buffers[turn++ % 2]!.subarray(0, n)
        state = fillRandom(out, tables[t.kind], state)
        await pending // the other buffer's write must end before this one is queued (and before it is refilled)
        pending = writeAll(new Uint8Array(out.buffer, out.byteOffset, out.byteLength))
        left -= n
      }
      p.onProgress?.(position - header.length, dataBytes)
    }
    await pending
    p.onProgress?.(dataBytes, dataBytes)
    return position
  } finally {
    await file.close()
  }
}

/** The Hugging Face `config.json` of a `LlamaForCausalLM` with these dimensions. */
export function llamaConfigJson(c: LlamaConfig, dtype: SynthesizeLlamaParameters['dtype'], eosId: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    ...c,
    head_dim: c.hidden_size / c.num_attention_heads,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    initializer_range: WEIGHT_STD,
    bos_token_id: eosId,
    eos_token_id: eosId,
    torch_dtype: dtype,
    use_cache: true,
  }
}

/**
 * A minimal GPT-2-style byte-level BPE tokenizer: the 256 byte symbols (ids 0…255), no merges,
 * and `<|endoftext|>` (id 256). Text encodes to one token per UTF-8 byte; ids above 256 exist in
 * the model only (benchmarks feed token ids directly).
 */
export function byteLevelTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {}
  byteSymbols().forEach((s, b) => (vocab[s] = b))
  vocab['<|endoftext|>'] = SYNTHETIC_EOS_ID
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: SYNTHETIC_EOS_ID, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  }
}

/** GPT-2's `bytes_to_unicode`: the printable character that stands for each byte. */
function byteSymbols(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)
  const out: string[] = []
  let shifted = 0
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + shifted++))
  return out
}

/** Copies `from`'s tokenizer when its vocab size matches; returns whether it did. */
async function copyTokenizer(from: string | undefined, dir: string, vocabSize: number): Promise<boolean> {
  if (!from) return false
  const config = JSON.parse(await readFile(join(from, 'config.json'), 'utf8').catch(() => '{}')) as { vocab_size?: number }
  if (config.vocab_size !== vocabSize) return false
  await copyFile(join(from, 'tokenizer.json'), join(dir, 'tokenizer.json'))
  await copyFile(join(from, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json')).catch(() => undefined)
  return true
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, JSON.stringify(value, null, 2) + '\n')
}

/**
 * Writes a random-weight `LlamaForCausalLM` in Hugging Face layout: `config.json`,
 * `model.safetensors` (streamed, deterministic for a seed; matrices ~N(0, 0.02), norms ~N(1, 0.02)),
 * `tokenizer.json` + `tokenizer_config.json` and `generation_config.json`.
 */
export async function synthesizeLlama(params: SynthesizeLlamaParameters): Promise<SynthesizeLlamaResult> {
  const t0 = performance.now()
  const c = params.config
  if (c.hidden_size % c.num_attention_heads !== 0) throw new RangeError(`hidden_size ${c.hidden_size} is not divisible by ${c.num_attention_heads} heads`)
  if (c.num_attention_heads % c.num_key_value_heads !== 0) throw new RangeError(`${c.num_attention_heads} heads are not a multiple of ${c.num_key_value_heads} KV heads`)
  await mkdir(params.dir, { recursive: true })
  const copied = await copyTokenizer(params.tokenizerFrom, params.dir, c.vocab_size)
  if (!copied && c.vocab_size <= SYNTHETIC_EOS_ID) throw new RangeError(`vocab_size ${c.vocab_size} is too small for the byte-level vocabulary (257 tokens)`)
  let eosId = SYNTHETIC_EOS_ID
  if (copied) {
    const source = JSON.parse(await readFile(join(params.tokenizerFrom!, 'config.json'), 'utf8')) as { eos_token_id?: number | number[] }
    eosId = [source.eos_token_id ?? 0].flat()[0]!
  } else {
    await writeJson(join(params.dir, 'tokenizer.json'), byteLevelTokenizerJson())
    await writeJson(join(params.dir, 'tokenizer_config.json'), {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: '<|endoftext|>',
      eos_token: '<|endoftext|>',
      unk_token: '<|endoftext|>',
      model_max_length: c.max_position_embeddings,
      clean_up_tokenization_spaces: false,
    })
  }
  await writeJson(join(params.dir, 'config.json'), llamaConfigJson(c, params.dtype, eosId))
  await writeJson(join(params.dir, 'generation_config.json'), { _from_model_config: true, bos_token_id: eosId, eos_token_id: eosId })
  const plan = llamaTensorPlan(c)
  await rm(join(params.dir, 'model.safetensors.index.json'), { force: true })
  const bytes = await writeWeights(join(params.dir, 'model.safetensors'), plan, params)
  return {
    dir: params.dir,
    parameters: plan.reduce((a, t) => a + numel(t.shape), 0),
    bytes,
    tokenizer: copied ? 'copied' : 'byte-level',
    ms: performance.now() - t0,
  }
}
