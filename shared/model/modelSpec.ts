import { z } from 'zod'

/** The decoder families the graph builder knows; every supported architecture maps to one. */
export type ModelFamily = 'llama' | 'bloom' | 'gpt2'

export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  | { type: 'longrope'; shortFactor: number[]; longFactor: number[]; originalMaxPositions: number; attentionFactor: number }

/** Everything the graph builder needs to know about a checkpoint, read from its `config.json`. */
export type ModelSpec = {
  architecture: string
  modelType: string
  family: ModelFamily
  numLayers: number
  hiddenSize: number
  numHeads: number
  numKvHeads: number
  headDim: number
  intermediateSize: number
  vocabSize: number
  maxPositions: number
  norm: { kind: 'rms' | 'layer'; eps: number; /** Gemma: the weight is stored as `w - 1`. */ unitOffset: boolean }
  activation: 'silu' | 'gelu_tanh' | 'gelu'
  positions: 'rope' | 'alibi' | 'learned'
  rope: { theta: number; rotaryDim: number; scaling: RopeScaling } | null
  tiedEmbeddings: boolean
  /** Bias on the q, k, v projections. */
  qkvBias: boolean
  /** Bias on the attention output projection. */
  outputBias: boolean
  mlpBias: boolean
  /** Gemma multiplies embeddings by sqrt(hidden). */
  embeddingScale: number | null
  /** BLOOM normalizes the embeddings. */
  embeddingNorm: boolean
  /** Mistral / Phi-3 / Qwen2: a query at position q sees keys k with q - k < slidingWindow (on the layers `layerTypes` marks). */
  slidingWindow: number | null
  /** Per decoder layer, as Hugging Face's `layer_types`: which layers use the sliding window. */
  layerTypes: Array<'full_attention' | 'sliding_attention'>
  /** GPT-2's `scale_attn_weights` (scores divided by sqrt(headDim)); true elsewhere. */
  scaleAttentionWeights: boolean
  /** GPT-2's `scale_attn_by_inverse_layer_idx`: scores of layer i also divided by i + 1. */
  scaleAttentionByLayer: boolean
  bosTokenId: number | null
  eosTokenIds: number[]
}

export class ModelConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ModelConfigError'
  }
}

export class UnsupportedArchitectureError extends ModelConfigError {
  readonly architecture: string

  constructor(architecture: string) {
    super(
      `unsupported architecture "${architecture}": supported are ${Object.keys(ARCHITECTURES).join(', ')}`,
    )
    this.architecture = architecture
    this.name = 'UnsupportedArchitectureError'
  }
}

const ARCHITECTURES: Record<string, ModelFamily> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'llama',
  Qwen2ForCausalLM: 'llama',
  Phi3ForCausalLM: 'llama',
  GemmaForCausalLM: 'llama',
  GPT2LMHeadModel: 'gpt2',
  BloomForCausalLM: 'bloom',
}

const positive = z.number().int().positive()
const tokenIds = z.union([z.number().int(), z.array(z.number().int())]).nullish()

const ropeScalingSchema = z
  .object({
    rope_type: z.string().optional(),
    type: z.string().optional(),
    rope_theta: z.number().positive().optional(),
    factor: z.number().positive().optional(),
    low_freq_factor: z.number().optional(),
    high_freq_factor: z.number().optional(),
    original_max_position_embeddings: z.number().int().optional(),
    short_factor: z.array(z.number()).optional(),
    long_factor: z.array(z.number()).optional(),
    attention_factor: z.number().optional(),
    partial_rotary_factor: z.number().optional(),
  })
  .passthrough()
  .nullish()

const configSchema = z
  .object({
    architectures: z.array(z.string()).min(1).optional(),
    model_type: z.string().optional(),
    vocab_size: positive,
    hidden_size: positive.optional(),
    n_embd: positive.optional(),
    n_embed: positive.optional(),
    num_hidden_layers: positive.optional(),
    n_layer: positive.optional(),
    num_attention_heads: positive.optional(),
    n_head: positive.optional(),
    num_key_value_heads: positive.nullish(),
    head_dim: positive.nullish(),
    intermediate_size: positive.optional(),
    n_inner: positive.nullish(),
    max_position_embeddings: positive.optional(),
    n_positions: positive.optional(),
    rms_norm_eps: z.number().positive().optional(),
    layer_norm_epsilon: z.number().positive().optional(),
    rope_theta: z.number().positive().optional(),
    rope_parameters: ropeScalingSchema,
    rope_scaling: ropeScalingSchema,
    partial_rotary_factor: z.number().positive().max(1).optional(),
    hidden_act: z.string().optional(),
    activation_function: z.string().optional(),
    tie_word_embeddings: z.boolean().optional(),
    attention_bias: z.boolean().optional(),
    mlp_bias: z.boolean().optional(),
    sliding_window: z.number().int().positive().nullish(),
    use_sliding_window: z.boolean().optional(),
    max_window_layers: z.number().int().nonnegative().optional(),
    layer_types: z.array(z.string()).optional(),
    original_max_position_embeddings: positive.optional(),
    scale_attn_weights: z.boolean().optional(),
    scale_attn_by_inverse_layer_idx: z.boolean().optional(),
    apply_residual_connection_post_layernorm: z.boolean().optional(),
    bos_token_id: tokenIds,
    eos_token_id: tokenIds,
  })
  .passthrough()

function activation(name: string | null | undefined): ModelSpec['activation'] {
  switch (name ?? 'silu') {
    case 'silu':
    case 'swish':
      return 'silu'
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return 'gelu_tanh'
    case 'gelu':
      return 'gelu'
    default:
      throw new ModelConfigError(`unsupported activation "${name}"`)
  }
}

function ropeScaling(raw: z.infer<typeof ropeScalingSchema>, maxPositions: number, topLevelOriginal: number | undefined): RopeScaling {
  const type = raw?.rope_type ?? raw?.type ?? 'default'
  switch (type) {
    case 'default':
      return { type: 'default' }
    case 'linear':
      return { type: 'linear', factor: raw?.factor ?? 1 }
    case 'llama3':
      return {
        type: 'llama3',
        factor: raw?.factor ?? 8,
        lowFreqFactor: raw?.low_freq_factor ?? 1,
        highFreqFactor: raw?.high_freq_factor ?? 4,
        originalMaxPositions: raw?.original_max_position_embeddings ?? 8192,
      }
    case 'longrope':
    case 'su': {
      // Phi-3 keeps original_max_position_embeddings at the top level of config.json (v5 also
      // copies it into rope_parameters); without it, HF uses max_position_embeddings.
      const original = raw?.original_max_position_embeddings ?? topLevelOriginal ?? maxPositions
      const factor = raw?.factor ?? maxPositions / original
      return {
        type: 'longrope',
        shortFactor: raw?.short_factor ?? [],
        longFactor: raw?.long_factor ?? [],
        originalMaxPositions: original,
        attentionFactor: raw?.attention_factor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original))),
      }
    }
    default:
      throw new ModelConfigError(`unsupported rope scaling type "${type}"`)
  }
}

function asIds(v: number | number[] | null | undefined): number[] {
  return v == null ? [] : Array.isArray(v) ? v : [v]
}

/** Parses and validates a Hugging Face `config.json` (object or text). */
export function parseModelConfig(input: unknown): ModelSpec {
  let json = input
  if (typeof input === 'string') {
    try {
      json = JSON.parse(input)
    } catch (e) {
      throw new ModelConfigError(`config.json is not valid JSON: ${(e as Error).message}`)
    }
  }
  const parsed = configSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new ModelConfigError(`config.json: ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  const c = parsed.data
  const architecture = c.architectures?.[0] ?? ''
  const family = ARCHITECTURES[architecture]
  if (!family) throw new UnsupportedArchitectureError(architecture || `(model_type ${c.model_type ?? 'missing'})`)
  const need = (value: number | null | undefined, name: string): number => {
    if (value == null) throw new ModelConfigError(`config.json: ${architecture} needs "${name}"`)
    return value
  }
  const hiddenSize = need(c.hidden_size ?? c.n_embd ?? c.n_embed, 'hidden_size')
  const numLayers = need(c.num_hidden_layers ?? c.n_layer, 'num_hidden_layers')
  const numHeads = need(c.num_attention_heads ?? c.n_head, 'num_attention_heads')
  const numKvHeads = c.num_key_value_heads ?? numHeads
  // GemmaConfig's head_dim defaults to 256, not hidden / heads.
  const headDim = c.head_dim ?? (architecture === 'GemmaForCausalLM' ? 256 : hiddenSize / numHeads)
  if (!Number.isInteger(headDim)) throw new ModelConfigError(`config.json: hidden_size ${hiddenSize} is not divisible by ${numHeads} heads`)
  if (numHeads % numKvHeads !== 0) throw new ModelConfigError(`config.json: ${numHeads} heads are not a multiple of ${numKvHeads} key/value heads`)
  const maxPositions = c.max_position_embeddings ?? c.n_positions ?? 2048
  const modelType = c.model_type ?? architecture
  const base = {
    architecture,
    modelType,
    family,
    numLayers,
    hiddenSize,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: c.vocab_size,
    maxPositions,
    bosTokenId: asIds(c.bos_token_id)[0] ?? null,
    eosTokenIds: asIds(c.eos_token_id),
    slidingWindow: null,
    layerTypes: Array.from({ length: numLayers }, () => 'full_attention' as const),
    scaleAttentionWeights: true,
    scaleAttentionByLayer: false,
    embeddingScale: null,
    embeddingNorm: false,
  }
  if (family === 'llama') {
    const isGemma = architecture === 'GemmaForCausalLM'
    const isPhi3 = architecture === 'Phi3ForCausalLM'
    const isQwen2 = architecture === 'Qwen2ForCausalLM'
    const ropeRaw = c.rope_parameters ?? c.rope_scaling
    const theta = c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000
    const partial = c.partial_rotary_factor ?? c.rope_parameters?.partial_rotary_factor ?? 1
    // Mistral and Phi-3 window every layer. Qwen2 only with use_sliding_window, and then only the
    // layers `layer_types` marks, by default those from max_window_layers (default 28) on.
    const window = architecture === 'MistralForCausalLM' || isPhi3 || (isQwen2 && c.use_sliding_window === true) ? (c.sliding_window ?? null) : null
    const layerTypes = base.layerTypes.map((_, i): ModelSpec['layerTypes'][number] => {
      if (window === null) return 'full_attention'
      if (!isQwen2) return 'sliding_attention'
      if (c.layer_types) return c.layer_types[i] === 'sliding_attention' ? 'sliding_attention' : 'full_attention'
      return i >= (c.max_window_layers ?? 28) ? 'sliding_attention' : 'full_attention'
    })
    return {
      ...base,
      intermediateSize: need(c.intermediate_size, 'intermediate_size'),
      // Phi3Config's rms_norm_eps defaults to 1e-5, the others' to 1e-6.
      norm: { kind: 'rms', eps: c.rms_norm_eps ?? (isPhi3 ? 1e-5 : 1e-6), unitOffset: isGemma },
      // Gemma: transformers >= 4.48 (and v5) run `hidden_act` (GemmaConfig default
      // gelu_pytorch_tanh); the older `hidden_activation` key is no longer read.
      activation: activation(isGemma ? (c.hidden_act ?? 'gelu_pytorch_tanh') : c.hidden_act),
      positions: 'rope',
      rope: { theta, rotaryDim: Math.floor(headDim * partial), scaling: ropeScaling(ropeRaw, maxPositions, c.original_max_position_embeddings) },
      tiedEmbeddings: c.tie_word_embeddings ?? (isGemma ? true : false),
      qkvBias: isQwen2 ? true : (c.attention_bias ?? false),
      outputBias: isQwen2 ? false : (c.attention_bias ?? false),
      mlpBias: c.mlp_bias ?? false,
      embeddingScale: isGemma ? Math.sqrt(hiddenSize) : null,
      slidingWindow: layerTypes.includes('sliding_attention') ? window : null,
      layerTypes,
    }
  }
  if (family === 'bloom') {
    if (c.apply_residual_connection_post_layernorm) {
      throw new ModelConfigError('config.json: BLOOM with apply_residual_connection_post_layernorm is not supported')
    }
    return {
      ...base,
      intermediateSize: 4 * hiddenSize,
      norm: { kind: 'layer', eps: c.layer_norm_epsilon ?? 1e-5, unitOffset: false },
      activation: 'gelu_tanh',
      positions: 'alibi',
      rope: null,
      tiedEmbeddings: true,
      qkvBias: true,
      outputBias: true,
      mlpBias: true,
      embeddingNorm: true,
    }
  }
  return {
    ...base,
    intermediateSize: c.n_inner ?? 4 * hiddenSize,
    norm: { kind: 'layer', eps: c.layer_norm_epsilon ?? 1e-5, unitOffset: false },
    activation: activation(c.activation_function ?? 'gelu_new'),
    positions: 'learned',
    rope: null,
    tiedEmbeddings: c.tie_word_embeddings ?? true,
    qkvBias: true,
    outputBias: true,
    mlpBias: true,
    scaleAttentionWeights: c.scale_attn_weights ?? true,
    scaleAttentionByLayer: c.scale_attn_by_inverse_layer_idx ?? false,
  }
}
