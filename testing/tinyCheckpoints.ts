import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Tiny random checkpoints in the Hugging Face layout (`config.json` with each architecture's own
 * field names, `model.safetensors` with its tensor names), for the architectures that have no
 * fixture with library outputs. Each case picks the config features worth proving: the biases,
 * the fused projections, partial rotary, both rotary paths of the graph builder (head_dim a
 * multiple of 16 with the whole head rotated, or not), sliding windows short enough to matter,
 * LongRoPE switching inside a prompt and during decoding, tied heads, and the three weight dtypes.
 */

export type TinyDtype = 'F32' | 'BF16' | 'F16'

type Init = 'weight' | 'bias' | 'norm' | 'norm0' | 'causal'
type TensorPlan = { name: string; shape: number[]; init: Init }

export type TinyCheckpoint = {
  name: string
  /** What the case proves, for test names. */
  covers: string
  dtype: TinyDtype
  config: Record<string, unknown>
  prompts: number[][]
  newTokens: number
  /** GPT-2 only: the Hub's original file layout (no `transformer.` prefix, `attn.bias` mask buffers). */
  hubLayout?: boolean
}

const hfVersion = { transformers_version: '4.56.2' }

/** Prompts: one short, one long enough for the sliding windows and the LongRoPE switch. */
const PROMPTS = [
  [17, 3, 201, 88, 140],
  [5, 99, 12, 250, 61, 33, 190, 7, 144, 76, 28],
]

export const TINY_CHECKPOINTS: TinyCheckpoint[] = [
  {
    name: 'llama',
    covers: 'attention and MLP biases, llama3 rope scaling (v5 rope_parameters), GQA 4/2, head_dim 16 (fused rotary)',
    dtype: 'F32',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: 256,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      hidden_act: 'silu',
      max_position_embeddings: 128,
      rms_norm_eps: 1e-6,
      attention_bias: true,
      mlp_bias: true,
      tie_word_embeddings: false,
      rope_parameters: { rope_type: 'llama3', rope_theta: 10000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
      bos_token_id: 1,
      eos_token_id: 2,
      dtype: 'float32',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'mistral',
    covers: 'sliding_window 4, multi-query attention (1 KV head), top-level rope_theta',
    dtype: 'F32',
    config: {
      architectures: ['MistralForCausalLM'],
      model_type: 'mistral',
      vocab_size: 256,
      hidden_size: 64,
      intermediate_size: 112,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      hidden_act: 'silu',
      max_position_embeddings: 128,
      rms_norm_eps: 1e-5,
      rope_theta: 1000000.0,
      sliding_window: 4,
      tie_word_embeddings: false,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'float32',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'qwen2',
    covers: 'q/k/v biases without o_proj bias, tied head, sliding window on layers >= max_window_layers, head_dim 8 (RotaryEmbedding path), GQA 8/2, float16 weights',
    dtype: 'F16',
    config: {
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      vocab_size: 256,
      hidden_size: 64,
      intermediate_size: 80,
      num_hidden_layers: 3,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      hidden_act: 'silu',
      max_position_embeddings: 128,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      tie_word_embeddings: true,
      use_sliding_window: true,
      sliding_window: 5,
      max_window_layers: 1,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'float16',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'phi3',
    covers: 'fused qkv_proj and gate_up_proj, sliding_window 7, longrope switching in prefill and decode (fused rotary path)',
    dtype: 'F32',
    config: {
      architectures: ['Phi3ForCausalLM'],
      model_type: 'phi3',
      vocab_size: 256,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 4,
      hidden_act: 'silu',
      max_position_embeddings: 64,
      original_max_position_embeddings: 10,
      rms_norm_eps: 1e-5,
      rope_parameters: {
        rope_type: 'longrope',
        rope_theta: 10000.0,
        original_max_position_embeddings: 10,
        short_factor: [1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 1.7],
        long_factor: [1.0, 1.3, 1.9, 2.8, 4.1, 6.0, 8.5, 12.0],
      },
      sliding_window: 7,
      tie_word_embeddings: false,
      bos_token_id: 1,
      eos_token_id: 2,
      dtype: 'float32',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'phi4-mini-like',
    covers: 'partial_rotary_factor 0.75 (RotaryEmbedding path), top-level original_max_position_embeddings with legacy rope_scaling longrope, GQA, tied head, bfloat16 weights',
    dtype: 'BF16',
    config: {
      architectures: ['Phi3ForCausalLM'],
      model_type: 'phi3',
      vocab_size: 256,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      hidden_act: 'silu',
      max_position_embeddings: 64,
      original_max_position_embeddings: 8,
      partial_rotary_factor: 0.75,
      rms_norm_eps: 1e-5,
      rope_theta: 10000.0,
      rope_scaling: {
        type: 'longrope',
        short_factor: [1.0, 1.1, 1.2, 1.4, 1.6, 1.9],
        long_factor: [1.0, 1.5, 2.5, 4.0, 6.5, 10.0],
      },
      sliding_window: 262144,
      tie_word_embeddings: true,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'bfloat16',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'gemma',
    covers: 'sqrt(hidden) embedding scale, (1 + weight) RMSNorm, gelu_pytorch_tanh, head_dim 32 != hidden/heads, default tied head, bfloat16 weights',
    dtype: 'BF16',
    config: {
      architectures: ['GemmaForCausalLM'],
      model_type: 'gemma',
      vocab_size: 256,
      hidden_size: 48,
      intermediate_size: 96,
      num_hidden_layers: 3,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      head_dim: 32,
      hidden_act: 'gelu_pytorch_tanh',
      hidden_activation: 'gelu_pytorch_tanh',
      max_position_embeddings: 128,
      rms_norm_eps: 1e-6,
      rope_theta: 10000.0,
      attention_bias: false,
      bos_token_id: 2,
      eos_token_id: 1,
      torch_dtype: 'bfloat16',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'gemma-legacy-config',
    covers: 'the first Gemma configs: hidden_act "gelu" beside hidden_activation (HF >= 4.48 runs hidden_act), no head_dim (GemmaConfig default 256)',
    dtype: 'F32',
    config: {
      architectures: ['GemmaForCausalLM'],
      model_type: 'gemma',
      vocab_size: 256,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 3,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      hidden_act: 'gelu',
      hidden_activation: 'gelu_pytorch_tanh',
      max_position_embeddings: 128,
      rms_norm_eps: 1e-6,
      rope_theta: 10000.0,
      bos_token_id: 2,
      eos_token_id: 1,
      torch_dtype: 'float32',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'gpt2',
    covers: 'transformer. prefix, Conv1D weights, learned positions, gelu_new, tied head',
    dtype: 'F32',
    config: {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      vocab_size: 256,
      n_embd: 48,
      n_head: 4,
      n_layer: 3,
      n_positions: 64,
      n_ctx: 64,
      n_inner: null,
      activation_function: 'gelu_new',
      layer_norm_epsilon: 1e-5,
      scale_attn_weights: true,
      bos_token_id: 0,
      eos_token_id: 0,
      torch_dtype: 'float32',
    },
    prompts: PROMPTS,
    newTokens: 8,
  },
  {
    name: 'gpt2-hub-layout',
    covers: 'unprefixed names with attn.bias buffers (the Hub gpt2 layout), n_inner, scale_attn_by_inverse_layer_idx, float16 weights',
    dtype: 'F16',
    config: {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      vocab_size: 256,
      n_embd: 32,
      n_head: 2,
      n_layer: 3,
      n_positions: 64,
      n_ctx: 64,
      n_inner: 80,
      activation_function: 'gelu_new',
      layer_norm_epsilon: 1e-5,
      scale_attn_by_inverse_layer_idx: true,
      bos_token_id: 0,
      eos_token_id: 0,
      torch_dtype: 'float16',
    },
    prompts: PROMPTS,
    newTokens: 8,
    hubLayout: true,
  },
]

const n = (c: Record<string, unknown>, k: string): number | undefined => (typeof c[k] === 'number' ? (c[k] as number) : undefined)

/** The tensors `save_pretrained` writes for a config (tied heads have no `lm_head.weight`). */
function tensorPlan(config: Record<string, unknown>, hubLayout: boolean): TensorPlan[] {
  const arch = (config.architectures as string[])[0]!
  if (arch === 'GPT2LMHeadModel') {
    // `save_pretrained` writes `transformer.`; the Hub's original gpt2 files have no prefix and keep the mask buffers.
    const P = hubLayout ? '' : 'transformer.'
    const H = n(config, 'n_embd')!
    const I = n(config, 'n_inner') ?? 4 * H
    const ctx = n(config, 'n_positions')!
    const plan: TensorPlan[] = [
      { name: `${P}wte.weight`, shape: [n(config, 'vocab_size')!, H], init: 'weight' },
      { name: `${P}wpe.weight`, shape: [ctx, H], init: 'weight' },
    ]
    for (let i = 0; i < n(config, 'n_layer')!; i++) {
      const p = `${P}h.${i}.`
      plan.push(
        { name: `${p}ln_1.weight`, shape: [H], init: 'norm' },
        { name: `${p}ln_1.bias`, shape: [H], init: 'bias' },
        { name: `${p}attn.c_attn.weight`, shape: [H, 3 * H], init: 'weight' },
        { name: `${p}attn.c_attn.bias`, shape: [3 * H], init: 'bias' },
        { name: `${p}attn.c_proj.weight`, shape: [H, H], init: 'weight' },
        { name: `${p}attn.c_proj.bias`, shape: [H], init: 'bias' },
        { name: `${p}ln_2.weight`, shape: [H], init: 'norm' },
        { name: `${p}ln_2.bias`, shape: [H], init: 'bias' },
        { name: `${p}mlp.c_fc.weight`, shape: [H, I], init: 'weight' },
        { name: `${p}mlp.c_fc.bias`, shape: [I], init: 'bias' },
        { name: `${p}mlp.c_proj.weight`, shape: [I, H], init: 'weight' },
        { name: `${p}mlp.c_proj.bias`, shape: [H], init: 'bias' },
      )
      if (hubLayout) plan.push({ name: `${p}attn.bias`, shape: [1, 1, ctx, ctx], init: 'causal' })
    }
    plan.push({ name: `${P}ln_f.weight`, shape: [H], init: 'norm' }, { name: `${P}ln_f.bias`, shape: [H], init: 'bias' })
    return plan
  }
  const H = n(config, 'hidden_size')!
  const heads = n(config, 'num_attention_heads')!
  const kv = n(config, 'num_key_value_heads') ?? heads
  const isGemma = arch === 'GemmaForCausalLM'
  const D = n(config, 'head_dim') ?? (isGemma ? 256 : H / heads)
  const I = n(config, 'intermediate_size')!
  const V = n(config, 'vocab_size')!
  const norm: Init = isGemma ? 'norm0' : 'norm'
  const qkvBias = arch === 'Qwen2ForCausalLM' || config.attention_bias === true
  const oBias = arch !== 'Qwen2ForCausalLM' && config.attention_bias === true
  const mlpBias = config.mlp_bias === true
  const plan: TensorPlan[] = [{ name: 'model.embed_tokens.weight', shape: [V, H], init: 'weight' }]
  for (let i = 0; i < n(config, 'num_hidden_layers')!; i++) {
    const p = `model.layers.${i}.`
    plan.push({ name: `${p}input_layernorm.weight`, shape: [H], init: norm }, { name: `${p}post_attention_layernorm.weight`, shape: [H], init: norm })
    if (arch === 'Phi3ForCausalLM') {
      plan.push(
        { name: `${p}self_attn.qkv_proj.weight`, shape: [(heads + 2 * kv) * D, H], init: 'weight' },
        { name: `${p}mlp.gate_up_proj.weight`, shape: [2 * I, H], init: 'weight' },
      )
    } else {
      for (const [proj, out] of [['q', heads * D], ['k', kv * D], ['v', kv * D]] as const) {
        plan.push({ name: `${p}self_attn.${proj}_proj.weight`, shape: [out, H], init: 'weight' })
        if (qkvBias) plan.push({ name: `${p}self_attn.${proj}_proj.bias`, shape: [out], init: 'bias' })
      }
      for (const proj of ['gate', 'up']) {
        plan.push({ name: `${p}mlp.${proj}_proj.weight`, shape: [I, H], init: 'weight' })
        if (mlpBias) plan.push({ name: `${p}mlp.${proj}_proj.bias`, shape: [I], init: 'bias' })
      }
    }
    plan.push({ name: `${p}self_attn.o_proj.weight`, shape: [H, heads * D], init: 'weight' })
    if (oBias) plan.push({ name: `${p}self_attn.o_proj.bias`, shape: [H], init: 'bias' })
    plan.push({ name: `${p}mlp.down_proj.weight`, shape: [H, I], init: 'weight' })
    if (mlpBias) plan.push({ name: `${p}mlp.down_proj.bias`, shape: [H], init: 'bias' })
  }
  plan.push({ name: 'model.norm.weight', shape: [H], init: norm })
  const tied = typeof config.tie_word_embeddings === 'boolean' ? config.tie_word_embeddings : isGemma
  if (!tied) plan.push({ name: 'lm_head.weight', shape: [V, H], init: 'weight' })
  return plan
}

/** mulberry32, seeded per tensor so each tensor's values do not depend on the others. */
function rng(seedText: string): () => number {
  let s = 2166136261
  for (const ch of seedText) s = Math.imul(s ^ ch.charCodeAt(0), 16777619)
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function normals(count: number, seed: string): Float64Array {
  const r = rng(seed)
  const out = new Float64Array(count)
  for (let i = 0; i < count; i++) out[i] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())
  return out
}

function values(t: TensorPlan, seed: string): Float64Array {
  const count = t.shape.reduce((a, b) => a * b, 1)
  if (t.init === 'causal') {
    const ctx = t.shape[3]!
    return Float64Array.from({ length: count }, (_, i) => (i % ctx <= Math.floor(i / ctx) ? 1 : 0))
  }
  const z = normals(count, `${seed}/${t.name}`)
  switch (t.init) {
    case 'weight':
      return z.map((x) => 0.2 * x)
    case 'bias':
      return z.map((x) => 0.1 * x)
    case 'norm':
      return z.map((x) => 1 + 0.1 * x)
    case 'norm0':
      return z.map((x) => 0.1 * x)
  }
}

/** IEEE half, round to nearest (ties away; random data never ties). */
function toHalfBits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0
  const a = Math.abs(x)
  if (a === 0) return sign
  let e = Math.floor(Math.log2(a))
  if (e < -14) return sign | Math.round(a / 2 ** -24)
  let m = Math.round((a / 2 ** e - 1) * 1024)
  if (m === 1024) {
    m = 0
    e++
  }
  if (e > 15) throw new Error(`${x} overflows float16`)
  return sign | ((e + 15) << 10) | m
}

function encode(data: Float64Array, dtype: TinyDtype): Uint8Array {
  const width = dtype === 'F32' ? 4 : 2
  const out = new Uint8Array(data.length * width)
  const view = new DataView(out.buffer)
  const f32 = new DataView(new ArrayBuffer(4))
  for (let i = 0; i < data.length; i++) {
    if (dtype === 'F32') view.setFloat32(4 * i, data[i]!, true)
    else if (dtype === 'F16') view.setUint16(2 * i, toHalfBits(data[i]!), true)
    else {
      f32.setFloat32(0, data[i]!, true)
      const bits = f32.getUint32(0, true)
      view.setUint16(2 * i, ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff, true)
    }
  }
  return out
}

/** A safetensors file: 8-byte header length, JSON header padded with spaces to 8 bytes, data. */
function safetensors(tensors: Array<{ name: string; dtype: TinyDtype; shape: number[]; bytes: Uint8Array }>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  let offset = 0
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] }
    offset += t.bytes.length
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8)
  const head = new TextEncoder().encode(json)
  const out = new Uint8Array(8 + head.length + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true)
  out.set(head, 8)
  let at = 8 + head.length
  for (const t of tensors) {
    out.set(t.bytes, at)
    at += t.bytes.length
  }
  return out
}

export type WriteTinyCheckpointOptions = {
  /** Tensors to leave out (to test the missing-tensor error). */
  omit?: string[]
  /** Fields merged over the case's config.json. */
  config?: Record<string, unknown>
}

/** Writes `config.json` and `model.safetensors` of a case into `dir` (created if needed); returns `dir`. */
export async function writeTinyCheckpoint(c: TinyCheckpoint, dir: string, opts: WriteTinyCheckpointOptions = {}): Promise<string> {
  await mkdir(dir, { recursive: true })
  const config = { ...c.config, ...hfVersion, ...opts.config }
  const omit = new Set(opts.omit ?? [])
  const plan = tensorPlan(config, c.hubLayout ?? false).filter((t) => !omit.has(t.name))
  // Mask buffers are stored as float32 like the originals; weights in the case's dtype.
  const tensors = plan.map((t) => {
    const dtype: TinyDtype = t.init === 'causal' ? 'F32' : c.dtype
    return { name: t.name, dtype, shape: t.shape, bytes: encode(values(t, c.name), dtype) }
  })
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2))
  await writeFile(join(dir, 'model.safetensors'), safetensors(tensors))
  return dir
}
