/**
 * An independent reference forward pass for the decoder architectures the shard engine supports:
 * plain TypeScript, float64, straightforward loops, written from the Hugging Face `transformers`
 * modeling code (v4.5x and v5) and from the checkpoint's own `config.json` fields and safetensors
 * tensor names. It shares nothing with the engine: not its spec parser, its safetensors reader,
 * its weight transforms or its graph builder, so an agreement between the two means something.
 *
 * What it reproduces is `model(ids, past_key_values=cache, use_cache=True)` called as
 * `generate()` calls it: one call for the prompt, then one call per new token, each call
 * appending to a per-layer key/value cache. That matters for LongRoPE, whose frequencies are
 * chosen per call (see `ropeFrequencies`), so a cached key keeps the rotation of the call that
 * made it.
 *
 * Numerics: Hugging Face computes in the checkpoint's dtype upcast to float32 (as the fixtures
 * were made: weights upcast to float32, float32 math). This reference computes in float64 from
 * the same weights; the two differ by float32 rounding (~1e-6 relative), well under the 1e-3
 * tolerance of the tests. Where HF rounds a constant to the compute dtype on purpose (Gemma's
 * embedding normalizer) the float32 rounding is reproduced, since that is a semantic choice.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

// ---------------------------------------------------------------------------------------------
// Checkpoint files
// ---------------------------------------------------------------------------------------------

/** A tensor decoded to float64, row-major. */
export type RefTensor = { shape: number[]; data: Float64Array }

function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 31) return frac ? NaN : sign * Infinity
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

/** Reads every tensor of one safetensors file (8-byte little-endian header length, JSON header, data) as float64. */
export function readSafetensorsFile(path: string): Map<string, RefTensor> {
  const buf = readFileSync(path)
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const headerLen = Number(view.getBigUint64(0, true))
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >
  const base = 8 + headerLen
  const scratch = new DataView(new ArrayBuffer(4))
  const out = new Map<string, RefTensor>()
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const n = t.shape.reduce((a, b) => a * b, 1)
    const data = new Float64Array(n)
    const at = base + t.data_offsets[0]
    for (let i = 0; i < n; i++) {
      switch (t.dtype) {
        case 'F64':
          data[i] = view.getFloat64(at + 8 * i, true)
          break
        case 'F32':
          data[i] = view.getFloat32(at + 4 * i, true)
          break
        case 'F16':
          data[i] = halfToNumber(view.getUint16(at + 2 * i, true))
          break
        case 'BF16':
          // bfloat16 is the top half of a float32.
          scratch.setUint32(0, view.getUint16(at + 2 * i, true) << 16, true)
          data[i] = scratch.getFloat32(0, true)
          break
        case 'I64':
          data[i] = Number(view.getBigInt64(at + 8 * i, true))
          break
        case 'I32':
          data[i] = view.getInt32(at + 4 * i, true)
          break
        default:
          throw new Error(`${path}: tensor ${name} has dtype ${t.dtype}`)
      }
    }
    out.set(name, { shape: t.shape, data })
  }
  return out
}

/** `model.safetensors`, or every shard named by `model.safetensors.index.json`. */
function readCheckpoint(dir: string): Map<string, RefTensor> {
  const indexPath = join(dir, 'model.safetensors.index.json')
  if (!existsSync(indexPath)) return readSafetensorsFile(join(dir, 'model.safetensors'))
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map: Record<string, string> }
  const all = new Map<string, RefTensor>()
  for (const file of new Set(Object.values(index.weight_map))) {
    for (const [k, v] of readSafetensorsFile(join(dir, file))) all.set(k, v)
  }
  return all
}

// ---------------------------------------------------------------------------------------------
// Math (float64)
// ---------------------------------------------------------------------------------------------

/** nn.Linear: `y = x W^T + b`, W stored `[out, in]`. Rows of x are positions. */
type Linear = { w: Float64Array; out: number; in: number; b: Float64Array | null }

function applyLinear(x: Float64Array, T: number, lin: Linear): Float64Array {
  const y = new Float64Array(T * lin.out)
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < lin.out; o++) {
      let s = lin.b ? lin.b[o]! : 0
      const wo = o * lin.in
      const xt = t * lin.in
      for (let i = 0; i < lin.in; i++) s += x[xt + i]! * lin.w[wo + i]!
      y[t * lin.out + o] = s
    }
  }
  return y
}

/**
 * LlamaRMSNorm: `h = x.float(); h = h * rsqrt(mean(h^2) + eps); weight * h.to(input_dtype)`.
 * GemmaRMSNorm: the same normalization in float32, then `* (1 + weight.float())`, then the cast
 * back. With float32 compute the casts are no-ops, so both are `x / sqrt(mean(x^2) + eps) * g`
 * with `g = w` or `g = 1 + w`.
 */
function rmsNorm(x: Float64Array, T: number, H: number, weight: Float64Array, eps: number, unitOffset: boolean): Float64Array {
  const y = new Float64Array(T * H)
  for (let t = 0; t < T; t++) {
    let ss = 0
    for (let i = 0; i < H; i++) ss += x[t * H + i]! ** 2
    const r = 1 / Math.sqrt(ss / H + eps)
    for (let i = 0; i < H; i++) y[t * H + i] = x[t * H + i]! * r * (unitOffset ? 1 + weight[i]! : weight[i]!)
  }
  return y
}

/** nn.LayerNorm: `(x - mean) / sqrt(biased var + eps) * w + b`. */
function layerNorm(x: Float64Array, T: number, H: number, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(T * H)
  for (let t = 0; t < T; t++) {
    let mean = 0
    for (let i = 0; i < H; i++) mean += x[t * H + i]!
    mean /= H
    let v = 0
    for (let i = 0; i < H; i++) v += (x[t * H + i]! - mean) ** 2
    const r = 1 / Math.sqrt(v / H + eps)
    for (let i = 0; i < H; i++) y[t * H + i] = (x[t * H + i]! - mean) * r * w[i]! + b[i]!
  }
  return y
}

/** erf to ~1e-16 (series near 0, continued fraction in the tails) for the exact GELU. */
function erf(x: number): number {
  const ax = Math.abs(x)
  if (ax < 2.5) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let term = ax
    let sum = ax
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n
      const add = term / (2 * n + 1)
      sum += add
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum
  }
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz would do; 60 terms suffice here)
  let f = ax
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f
  return Math.sign(x) * (1 - erfc)
}

/**
 * `transformers.activations.ACT2FN`: `silu`/`swish` = x·sigmoid(x); `gelu` = exact (erf) GELU;
 * `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast` = 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))
 * (three spellings of the same tanh approximation); `relu`.
 */
function activationFn(name: string): (x: number) => number {
  switch (name) {
    case 'silu':
    case 'swish':
      return (x) => x / (1 + Math.exp(-x))
    case 'gelu':
      return (x) => 0.5 * x * (1 + erf(x / Math.SQRT2))
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)))
    case 'relu':
      return (x) => Math.max(0, x)
    default:
      throw new Error(`reference: activation ${name} not implemented`)
  }
}

/**
 * Eager attention (`eager_attention_forward`): for each query row and head,
 * `softmax(q·k * scaling + bias + mask) · v` over the cached keys, where the mask is
 * `min_float` (here: excluded) for keys the query may not see. Grouped-query attention repeats
 * each key/value head for `heads / kvHeads` consecutive query heads (`repeat_kv`): query head h
 * reads kv head `floor(h / (heads / kvHeads))`.
 */
function attention(p: {
  q: Float64Array // [T, heads * D]
  keys: Float64Array[] // per cached position [kvHeads * D]
  values: Float64Array[]
  qPositions: number[]
  heads: number
  kvHeads: number
  D: number
  scaling: number
  visible: (q: number, k: number) => boolean
  /** Additive score bias (BLOOM's ALiBi). */
  bias?: (head: number, k: number) => number
}): Float64Array {
  const { q, keys, values, heads, kvHeads, D } = p
  const T = p.qPositions.length
  const out = new Float64Array(T * heads * D)
  const group = heads / kvHeads
  const scores = new Float64Array(keys.length)
  for (let t = 0; t < T; t++) {
    const qp = p.qPositions[t]!
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group)
      const qo = (t * heads + h) * D
      let max = -Infinity
      for (let k = 0; k < keys.length; k++) {
        if (!p.visible(qp, k)) {
          scores[k] = -Infinity
          continue
        }
        let s = 0
        for (let d = 0; d < D; d++) s += q[qo + d]! * keys[k]![kvh * D + d]!
        s = s * p.scaling + (p.bias ? p.bias(h, k) : 0)
        scores[k] = s
        if (s > max) max = s
      }
      let sum = 0
      for (let k = 0; k < keys.length; k++) {
        const e = scores[k] === -Infinity ? 0 : Math.exp(scores[k]! - max)
        scores[k] = e
        sum += e
      }
      for (let k = 0; k < keys.length; k++) {
        const w = scores[k]! / sum
        if (w === 0) continue
        for (let d = 0; d < D; d++) out[qo + d] += w * values[k]![kvh * D + d]!
      }
    }
  }
  return out
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const y = new Float64Array(a.length)
  for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i]!
  return y
}

function rows(table: RefTensor, ids: number[]): Float64Array {
  const H = table.shape[1]!
  const y = new Float64Array(ids.length * H)
  ids.forEach((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= table.shape[0]!) throw new Error(`reference: token id ${id} out of range`)
    y.set(table.data.subarray(id * H, (id + 1) * H), t * H)
  })
  return y
}

// ---------------------------------------------------------------------------------------------
// Configuration, read the way each HF config class reads it
// ---------------------------------------------------------------------------------------------

type Config = Record<string, unknown>

const num = (c: Config, key: string): number | undefined => (typeof c[key] === 'number' ? (c[key] as number) : undefined)
const bool = (c: Config, key: string): boolean | undefined => (typeof c[key] === 'boolean' ? (c[key] as boolean) : undefined)
const str = (c: Config, key: string): string | undefined => (typeof c[key] === 'string' ? (c[key] as string) : undefined)
function must(v: number | undefined, what: string): number {
  if (v === undefined) throw new Error(`reference: config.json lacks ${what}`)
  return v
}

/** The rotary embedding of one call: inverse frequencies over the rotated dims and the cos/sin scale. */
type RopeCall = { inv: Float64Array; scale: number }

/**
 * Rotary parameters. v5 configs carry `rope_parameters` (`rope_type`, `rope_theta`,
 * `partial_rotary_factor`, scaling keys); older ones a top-level `rope_theta` /
 * `partial_rotary_factor` and a `rope_scaling` dict (`type` or `rope_type`). The rotated width is
 * `int(head_dim * partial_rotary_factor)` and `inv_freq[i] = 1 / theta^(2i / dim)`
 * (`_compute_default_rope_parameters`); the scaling types follow `modeling_rope_utils`.
 */
function ropeFrequencies(c: Config, headDim: number): { rotaryDim: number; forCall: (seqLen: number) => RopeCall } {
  const rp = ((c.rope_parameters ?? c.rope_scaling ?? {}) as Config) || {}
  const type = str(rp, 'rope_type') ?? str(rp, 'type') ?? 'default'
  const theta = num(rp, 'rope_theta') ?? num(c, 'rope_theta') ?? 10000
  const partial = num(rp, 'partial_rotary_factor') ?? num(c, 'partial_rotary_factor') ?? 1
  const dim = Math.floor(headDim * partial)
  const base = (ext: (i: number) => number) => {
    const inv = new Float64Array(dim / 2)
    for (let i = 0; i < dim / 2; i++) inv[i] = 1 / (ext(i) * theta ** ((2 * i) / dim))
    return inv
  }
  const plain = base(() => 1)
  const maxPos = must(num(c, 'max_position_embeddings'), 'max_position_embeddings')
  switch (type) {
    case 'default':
      return { rotaryDim: dim, forCall: () => ({ inv: plain, scale: 1 }) }
    case 'linear': {
      const factor = must(num(rp, 'factor'), 'rope factor')
      const inv = plain.map((f) => f / factor)
      return { rotaryDim: dim, forCall: () => ({ inv, scale: 1 }) }
    }
    case 'llama3': {
      // `_compute_llama3_parameters`: wavelengths longer than old_context/low_freq_factor are
      // divided by factor, shorter than old_context/high_freq_factor kept, the band between blended.
      const factor = must(num(rp, 'factor'), 'rope factor')
      const low = must(num(rp, 'low_freq_factor'), 'low_freq_factor')
      const high = must(num(rp, 'high_freq_factor'), 'high_freq_factor')
      const old = must(num(rp, 'original_max_position_embeddings'), 'original_max_position_embeddings')
      const inv = plain.map((f) => {
        const wavelen = (2 * Math.PI) / f
        if (wavelen < old / high) return f
        if (wavelen > old / low) return f / factor
        const smooth = (old / wavelen - low) / (high - low)
        return (1 - smooth) * (f / factor) + smooth * f
      })
      return { rotaryDim: dim, forCall: () => ({ inv, scale: 1 }) }
    }
    case 'longrope':
    case 'su': {
      // `_compute_longrope_parameters`: Phi-3 keeps `original_max_position_embeddings` at the top
      // level (v5 moves it into rope_parameters); factor = rope factor, else max / original;
      // attention_factor (cos/sin scale) = given, else sqrt(1 + ln(factor) / ln(original)) when
      // factor > 1. `inv_freq = 1 / (ext * theta^(2i/dim))` with ext = long_factor when the call's
      // `max(position_ids) + 1 > original`, else short_factor (`dynamic_rope_update`, per call).
      const original = num(rp, 'original_max_position_embeddings') ?? num(c, 'original_max_position_embeddings') ?? maxPos
      const factor = num(rp, 'factor') ?? maxPos / original
      const attention = num(rp, 'attention_factor') ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original)))
      const short = base((i) => (rp.short_factor as number[])[i]!)
      const long = base((i) => (rp.long_factor as number[])[i]!)
      return { rotaryDim: dim, forCall: (seqLen) => ({ inv: seqLen > original ? long : short, scale: attention }) }
    }
    default:
      throw new Error(`reference: rope type ${type} not implemented`)
  }
}

/**
 * `apply_rotary_pos_emb` with `rotate_half`: on the first `rotaryDim` dims of each head (Phi-3's
 * partial rotary; the whole head elsewhere), `x·cos + rotate_half(x)·sin` where
 * `rotate_half(x) = cat(-x[half:], x[:half])` and cos/sin = `cat(freqs, freqs)`:
 * out[i] = x[i]·cos_i − x[i+half]·sin_i, out[i+half] = x[i+half]·cos_i + x[i]·sin_i.
 */
function rotate(x: Float64Array, T: number, heads: number, D: number, positions: number[], rotaryDim: number, rope: RopeCall): void {
  const half = rotaryDim / 2
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[t]! * rope.inv[i]!
      const cos = Math.cos(angle) * rope.scale
      const sin = Math.sin(angle) * rope.scale
      for (let h = 0; h < heads; h++) {
        const o = (t * heads + h) * D
        const a = x[o + i]!
        const b = x[o + i + half]!
        x[o + i] = a * cos - b * sin
        x[o + i + half] = b * cos + a * sin
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** One model call's result. */
export type CallResult = {
  /** `[T, vocab]` */
  logits: Float64Array
  /** `hidden[k]` `[T, hidden]`: the input of decoder layer k; `hidden[L]` is the last layer's output (before the final norm). */
  hidden: Float64Array[]
}

/** A model with its KV cache; `call` appends the given tokens, as `model(ids, past_key_values=cache)`. */
export type ReferenceModel = {
  architecture: string
  numLayers: number
  hiddenSize: number
  vocabSize: number
  call(ids: number[]): CallResult
  /** Empties the cache. */
  reset(): void
}

export type ReferenceOptions = {
  /** Ignore the config's sliding window (to prove a test depends on it). */
  ignoreSlidingWindow?: boolean
}

type Tensors = Map<string, RefTensor>

function getter(t: Tensors, dir: string) {
  return (name: string): RefTensor => {
    const v = t.get(name)
    if (!v) throw new Error(`reference: ${dir} has no tensor ${name}`)
    return v
  }
}

/**
 * LLaMA and relatives: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM,
 * GemmaForCausalLM. One decoder layer (`LlamaDecoderLayer` and its copies):
 *   residual = x; x = input_layernorm(x); x = self_attn(x); x = residual + x
 *   residual = x; x = post_attention_layernorm(x); x = mlp(x); x = residual + x
 * with `mlp(x) = down_proj(act(gate_proj(x)) * up_proj(x))`, then `norm` and `lm_head`.
 *
 * Per architecture (what each HF class hard-codes or reads from the config):
 * - Llama: biases on q/k/v/o when `attention_bias`, on gate/up/down when `mlp_bias`; `hidden_act`.
 * - Mistral: no biases; `sliding_window` (null = none) on every layer: a query at position q sees
 *   keys k with `q - k < sliding_window` (`sliding_window_overlay`: kv_idx > q_idx - window).
 * - Qwen2: q/k/v biases, o_proj without; sliding window only when `use_sliding_window`, and then
 *   only on the layers `layer_types` marks `sliding_attention`; without `layer_types`, the layers
 *   i >= `max_window_layers` (default 28).
 * - Phi-3: `qkv_proj` = rows [q; k; v], `gate_up_proj` = rows [gate; up] (`chunk(2)`), no biases,
 *   `partial_rotary_factor`, `sliding_window` on every layer, rms_norm_eps default 1e-5.
 * - Gemma: `inputs_embeds * normalizer` with `normalizer = tensor(hidden_size**0.5, dtype)`
 *   (rounded to the compute dtype, float32 here); RMSNorm `* (1 + weight)`; `head_dim` from the
 *   config (default 256); MLP activation `config.hidden_act` (transformers >= 4.48 and v5 read
 *   `hidden_act`, default `gelu_pytorch_tanh`; the legacy `hidden_activation` key is ignored);
 *   biases on q/k/v/o when `attention_bias`; `tie_word_embeddings` defaults to true.
 * Attention scaling is `head_dim ** -0.5` throughout.
 */
function llamaLike(arch: string, c: Config, t: Tensors, dir: string, opts: ReferenceOptions): ReferenceModel {
  const get = getter(t, dir)
  const isGemma = arch === 'GemmaForCausalLM'
  const isPhi3 = arch === 'Phi3ForCausalLM'
  const isQwen2 = arch === 'Qwen2ForCausalLM'
  const isMistral = arch === 'MistralForCausalLM'
  const H = must(num(c, 'hidden_size'), 'hidden_size')
  const L = must(num(c, 'num_hidden_layers'), 'num_hidden_layers')
  const heads = must(num(c, 'num_attention_heads'), 'num_attention_heads')
  const kvHeads = num(c, 'num_key_value_heads') ?? heads
  const D = num(c, 'head_dim') ?? (isGemma ? 256 : Math.floor(H / heads))
  const V = must(num(c, 'vocab_size'), 'vocab_size')
  const eps = num(c, 'rms_norm_eps') ?? (isPhi3 ? 1e-5 : 1e-6)
  const act = activationFn(isGemma ? (str(c, 'hidden_act') ?? 'gelu_pytorch_tanh') : (str(c, 'hidden_act') ?? 'silu'))
  const tied = bool(c, 'tie_word_embeddings') ?? isGemma
  const attnBias = isQwen2 ? 'qkv' : isMistral || isPhi3 ? 'none' : bool(c, 'attention_bias') ? 'all' : 'none'
  const mlpBias = arch === 'LlamaForCausalLM' && bool(c, 'mlp_bias') === true
  const { rotaryDim, forCall } = ropeFrequencies(c, D)

  // Sliding window per layer (null = full causal attention).
  const window = (layer: number): number | null => {
    if (opts.ignoreSlidingWindow) return null
    const w = num(c, 'sliding_window') ?? null
    if (isMistral || isPhi3) return w
    if (isQwen2) {
      if (!bool(c, 'use_sliding_window') || w === null) return null
      const types = c.layer_types as string[] | undefined
      if (types) return types[layer] === 'sliding_attention' ? w : null
      return layer >= (num(c, 'max_window_layers') ?? 28) ? w : null
    }
    return null
  }

  const lin = (prefix: string, bias: boolean): Linear => {
    const w = get(`${prefix}.weight`)
    return { w: w.data, out: w.shape[0]!, in: w.shape[1]!, b: bias ? get(`${prefix}.bias`).data : null }
  }
  /** Rows [from, from + count) of a fused `[out, in]` projection. */
  const slice = (l: Linear, from: number, count: number): Linear => ({
    w: l.w.subarray(from * l.in, (from + count) * l.in),
    out: count,
    in: l.in,
    b: l.b ? l.b.subarray(from, from + count) : null,
  })
  const layers = Array.from({ length: L }, (_, i) => {
    const p = `model.layers.${i}.`
    let q: Linear, k: Linear, v: Linear, gate: Linear, up: Linear
    if (isPhi3) {
      const qkv = lin(`${p}self_attn.qkv_proj`, false)
      q = slice(qkv, 0, heads * D)
      k = slice(qkv, heads * D, kvHeads * D)
      v = slice(qkv, heads * D + kvHeads * D, kvHeads * D)
      const gu = lin(`${p}mlp.gate_up_proj`, false)
      const I = gu.out / 2
      gate = slice(gu, 0, I)
      up = slice(gu, I, I)
    } else {
      const qkvBias = attnBias !== 'none'
      q = lin(`${p}self_attn.q_proj`, qkvBias)
      k = lin(`${p}self_attn.k_proj`, qkvBias)
      v = lin(`${p}self_attn.v_proj`, qkvBias)
      gate = lin(`${p}mlp.gate_proj`, mlpBias)
      up = lin(`${p}mlp.up_proj`, mlpBias)
    }
    return {
      inputNorm: get(`${p}input_layernorm.weight`).data,
      postNorm: get(`${p}post_attention_layernorm.weight`).data,
      q,
      k,
      v,
      o: lin(`${p}self_attn.o_proj`, attnBias === 'all'),
      gate,
      up,
      down: lin(`${p}mlp.down_proj`, mlpBias),
      window: window(i),
    }
  })
  const embed = get('model.embed_tokens.weight')
  const finalNorm = get('model.norm.weight').data
  const head: Linear = tied ? { w: embed.data, out: V, in: H, b: null } : lin('lm_head', false)
  const normalizer = isGemma ? Math.fround(Math.sqrt(H)) : 1

  let keys: Float64Array[][] = layers.map(() => [])
  let values: Float64Array[][] = layers.map(() => [])
  return {
    architecture: arch,
    numLayers: L,
    hiddenSize: H,
    vocabSize: V,
    reset() {
      keys = layers.map(() => [])
      values = layers.map(() => [])
    },
    call(ids) {
      const T = ids.length
      const past = keys[0]!.length
      const positions = ids.map((_, i) => past + i)
      const rope = forCall(past + T)
      let x = rows(embed, ids)
      if (normalizer !== 1) x = x.map((e) => e * normalizer)
      const hidden = [x]
      layers.forEach((l, li) => {
        const n1 = rmsNorm(x, T, H, l.inputNorm, eps, isGemma)
        const q = applyLinear(n1, T, l.q)
        const k = applyLinear(n1, T, l.k)
        const v = applyLinear(n1, T, l.v)
        rotate(q, T, heads, D, positions, rotaryDim, rope)
        rotate(k, T, kvHeads, D, positions, rotaryDim, rope)
        for (let s = 0; s < T; s++) {
          keys[li]!.push(k.slice(s * kvHeads * D, (s + 1) * kvHeads * D))
          values[li]!.push(v.slice(s * kvHeads * D, (s + 1) * kvHeads * D))
        }
        const w = l.window
        const a = attention({
          q,
          keys: keys[li]!,
          values: values[li]!,
          qPositions: positions,
          heads,
          kvHeads,
          D,
          scaling: 1 / Math.sqrt(D),
          visible: (qp, kp) => kp <= qp && (w === null || qp - kp < w),
        })
        x = add(x, applyLinear(a, T, l.o))
        const n2 = rmsNorm(x, T, H, l.postNorm, eps, isGemma)
        const g = applyLinear(n2, T, l.gate)
        const u = applyLinear(n2, T, l.up)
        for (let j = 0; j < g.length; j++) g[j] = act(g[j]!) * u[j]!
        x = add(x, applyLinear(g, T, l.down))
        hidden.push(x)
      })
      return { logits: applyLinear(rmsNorm(x, T, H, finalNorm, eps, isGemma), T, head), hidden }
    },
  }
}

/**
 * GPT2LMHeadModel. Tensor names with or without the `transformer.` prefix (HF loads both).
 *   x = wte[ids] + wpe[positions]
 *   residual = x; x = ln_1(x); x = attn(x); x = x + residual
 *   residual = x; x = ln_2(x); x = mlp(x); x = residual + x
 *   logits = ln_f(x) @ wte^T (tied; `lm_head.weight` when `tie_word_embeddings` is false)
 * Conv1D stores weights `[in, out]`: `y = x W + b`. `c_attn` gives [q; k; v] along out.
 * `mlp(x) = c_proj(act(c_fc(x)))`, act = `activation_function` (default `gelu_new`), inner
 * size `n_inner` (default 4·n_embd). Scores are divided by sqrt(head_dim) when
 * `scale_attn_weights` (default true) and by (layer_idx + 1) when
 * `scale_attn_by_inverse_layer_idx` (default false); causal mask; `layer_norm_epsilon` 1e-5.
 */
function gpt2(c: Config, t: Tensors, dir: string): ReferenceModel {
  const P = t.has('transformer.wte.weight') ? 'transformer.' : ''
  const get = getter(t, dir)
  const H = must(num(c, 'n_embd') ?? num(c, 'hidden_size'), 'n_embd')
  const L = must(num(c, 'n_layer') ?? num(c, 'num_hidden_layers'), 'n_layer')
  const heads = must(num(c, 'n_head') ?? num(c, 'num_attention_heads'), 'n_head')
  const D = H / heads
  const V = must(num(c, 'vocab_size'), 'vocab_size')
  const eps = num(c, 'layer_norm_epsilon') ?? 1e-5
  const act = activationFn(str(c, 'activation_function') ?? 'gelu_new')
  const scaleWeights = bool(c, 'scale_attn_weights') ?? true
  const byLayer = bool(c, 'scale_attn_by_inverse_layer_idx') ?? false
  /** Conv1D `[in, out]` → Linear `[out, in]`. */
  const conv = (prefix: string): Linear => {
    const w = get(`${prefix}.weight`)
    const [inDim, outDim] = w.shape as [number, number]
    const wt = new Float64Array(inDim * outDim)
    for (let i = 0; i < inDim; i++) for (let o = 0; o < outDim; o++) wt[o * inDim + i] = w.data[i * outDim + o]!
    return { w: wt, out: outDim, in: inDim, b: get(`${prefix}.bias`).data }
  }
  const ln = (prefix: string) => ({ w: get(`${prefix}.weight`).data, b: get(`${prefix}.bias`).data })
  const layers = Array.from({ length: L }, (_, i) => {
    const p = `${P}h.${i}.`
    return { ln1: ln(`${p}ln_1`), attn: conv(`${p}attn.c_attn`), proj: conv(`${p}attn.c_proj`), ln2: ln(`${p}ln_2`), fc: conv(`${p}mlp.c_fc`), out: conv(`${p}mlp.c_proj`) }
  })
  const wte = get(`${P}wte.weight`)
  const wpe = get(`${P}wpe.weight`)
  const lnf = ln(`${P}ln_f`)
  const tied = bool(c, 'tie_word_embeddings') ?? true
  const head: Linear = tied ? { w: wte.data, out: V, in: H, b: null } : { w: get('lm_head.weight').data, out: V, in: H, b: null }

  let keys: Float64Array[][] = layers.map(() => [])
  let values: Float64Array[][] = layers.map(() => [])
  return {
    architecture: 'GPT2LMHeadModel',
    numLayers: L,
    hiddenSize: H,
    vocabSize: V,
    reset() {
      keys = layers.map(() => [])
      values = layers.map(() => [])
    },
    call(ids) {
      const T = ids.length
      const past = keys[0]!.length
      const positions = ids.map((_, i) => past + i)
      let x = add(rows(wte, ids), rows(wpe, positions))
      const hidden = [x]
      layers.forEach((l, li) => {
        const qkv = applyLinear(layerNorm(x, T, H, l.ln1.w, l.ln1.b, eps), T, l.attn)
        const q = new Float64Array(T * H)
        for (let s = 0; s < T; s++) {
          q.set(qkv.subarray(s * 3 * H, s * 3 * H + H), s * H)
          keys[li]!.push(qkv.slice(s * 3 * H + H, s * 3 * H + 2 * H))
          values[li]!.push(qkv.slice(s * 3 * H + 2 * H, s * 3 * H + 3 * H))
        }
        const a = attention({
          q,
          keys: keys[li]!,
          values: values[li]!,
          qPositions: positions,
          heads,
          kvHeads: heads,
          D,
          scaling: (scaleWeights ? 1 / Math.sqrt(D) : 1) / (byLayer ? li + 1 : 1),
          visible: (qp, kp) => kp <= qp,
        })
        x = add(x, applyLinear(a, T, l.proj))
        const f = applyLinear(layerNorm(x, T, H, l.ln2.w, l.ln2.b, eps), T, l.fc)
        for (let j = 0; j < f.length; j++) f[j] = act(f[j]!)
        x = add(x, applyLinear(f, T, l.out))
        hidden.push(x)
      })
      return { logits: applyLinear(layerNorm(x, T, H, lnf.w, lnf.b, eps), T, head), hidden }
    },
  }
}

/**
 * BloomForCausalLM (only `apply_residual_connection_post_layernorm = false`):
 *   x = word_embeddings_layernorm(word_embeddings[ids])
 *   attn input = input_layernorm(x), residual = x; fused `query_key_value` rows are ordered
 *   (head, q|k|v, dim) (`view(B, T, heads, 3, D)`); scores = alibi + q·k / sqrt(D), with
 *   alibi[h, k] = slope_h · k (key position; `build_alibi_tensor`); x = residual + dense(ctx)
 *   mlp input = post_attention_layernorm(x), residual = x; x = residual + dense_4h_to_h(gelu(dense_h_to_4h))
 *   with BLOOM's tanh GELU; logits = ln_f(x) @ word_embeddings^T.
 */
function bloom(c: Config, t: Tensors, dir: string): ReferenceModel {
  const P = t.has('transformer.word_embeddings.weight') ? 'transformer.' : ''
  const get = getter(t, dir)
  const H = must(num(c, 'hidden_size') ?? num(c, 'n_embed'), 'hidden_size')
  const L = must(num(c, 'n_layer') ?? num(c, 'num_hidden_layers'), 'n_layer')
  const heads = must(num(c, 'n_head') ?? num(c, 'num_attention_heads'), 'n_head')
  const D = H / heads
  const V = must(num(c, 'vocab_size'), 'vocab_size')
  const eps = num(c, 'layer_norm_epsilon') ?? 1e-5
  if (bool(c, 'apply_residual_connection_post_layernorm')) throw new Error('reference: BLOOM with apply_residual_connection_post_layernorm')
  // Slopes: 2^(-8/n · (1..n)) for the closest power of two n, then odd powers of the next one.
  const closest = 2 ** Math.floor(Math.log2(heads))
  const slopes: number[] = []
  const b0 = 2 ** -(2 ** -(Math.log2(closest) - 3))
  for (let i = 1; i <= closest; i++) slopes.push(b0 ** i)
  if (closest !== heads) {
    const b1 = 2 ** -(2 ** -(Math.log2(2 * closest) - 3))
    for (let i = 1; i < 1 + 2 * Math.min(closest, heads - closest); i += 2) slopes.push(b1 ** i)
  }
  const lin = (prefix: string): Linear => {
    const w = get(`${prefix}.weight`)
    return { w: w.data, out: w.shape[0]!, in: w.shape[1]!, b: get(`${prefix}.bias`).data }
  }
  const ln = (prefix: string) => ({ w: get(`${prefix}.weight`).data, b: get(`${prefix}.bias`).data })
  const gelu = (x: number) => x * 0.5 * (1 + Math.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))
  const layers = Array.from({ length: L }, (_, i) => {
    const p = `${P}h.${i}.`
    return {
      ln1: ln(`${p}input_layernorm`),
      qkv: lin(`${p}self_attention.query_key_value`),
      dense: lin(`${p}self_attention.dense`),
      ln2: ln(`${p}post_attention_layernorm`),
      up: lin(`${p}mlp.dense_h_to_4h`),
      down: lin(`${p}mlp.dense_4h_to_h`),
    }
  })
  const emb = get(`${P}word_embeddings.weight`)
  const embLn = ln(`${P}word_embeddings_layernorm`)
  const lnf = ln(`${P}ln_f`)
  const head: Linear = { w: emb.data, out: V, in: H, b: null }
  let keys: Float64Array[][] = layers.map(() => [])
  let values: Float64Array[][] = layers.map(() => [])
  return {
    architecture: 'BloomForCausalLM',
    numLayers: L,
    hiddenSize: H,
    vocabSize: V,
    reset() {
      keys = layers.map(() => [])
      values = layers.map(() => [])
    },
    call(ids) {
      const T = ids.length
      const past = keys[0]!.length
      const positions = ids.map((_, i) => past + i)
      let x = layerNorm(rows(emb, ids), T, H, embLn.w, embLn.b, eps)
      const hidden = [x]
      layers.forEach((l, li) => {
        const fused = applyLinear(layerNorm(x, T, H, l.ln1.w, l.ln1.b, eps), T, l.qkv)
        const q = new Float64Array(T * H)
        for (let s = 0; s < T; s++) {
          const k = new Float64Array(H)
          const v = new Float64Array(H)
          for (let h = 0; h < heads; h++) {
            const o = s * 3 * H + h * 3 * D
            q.set(fused.subarray(o, o + D), s * H + h * D)
            k.set(fused.subarray(o + D, o + 2 * D), h * D)
            v.set(fused.subarray(o + 2 * D, o + 3 * D), h * D)
          }
          keys[li]!.push(k)
          values[li]!.push(v)
        }
        const a = attention({
          q,
          keys: keys[li]!,
          values: values[li]!,
          qPositions: positions,
          heads,
          kvHeads: heads,
          D,
          scaling: 1 / Math.sqrt(D),
          visible: (qp, kp) => kp <= qp,
          bias: (h, kp) => slopes[h]! * kp,
        })
        x = add(x, applyLinear(a, T, l.dense))
        const f = applyLinear(layerNorm(x, T, H, l.ln2.w, l.ln2.b, eps), T, l.up)
        for (let j = 0; j < f.length; j++) f[j] = gelu(f[j]!)
        x = add(x, applyLinear(f, T, l.down))
        hidden.push(x)
      })
      return { logits: applyLinear(layerNorm(x, T, H, lnf.w, lnf.b, eps), T, head), hidden }
    },
  }
}

/** Loads a Hugging Face checkpoint folder (`config.json` + safetensors) as a reference model. */
export function loadReferenceModel(dir: string, opts: ReferenceOptions = {}): ReferenceModel {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Config
  const arch = (config.architectures as string[] | undefined)?.[0] ?? ''
  const tensors = readCheckpoint(dir)
  switch (arch) {
    case 'LlamaForCausalLM':
    case 'MistralForCausalLM':
    case 'Qwen2ForCausalLM':
    case 'Phi3ForCausalLM':
    case 'GemmaForCausalLM':
      return llamaLike(arch, config, tensors, dir, opts)
    case 'GPT2LMHeadModel':
      return gpt2(config, tensors, dir)
    case 'BloomForCausalLM':
      return bloom(config, tensors, dir)
    default:
      throw new Error(`reference: architecture ${arch} not implemented`)
  }
}

export type ReferenceGeneration = {
  /** Greedy new tokens. */
  ids: number[]
  /** Prefill logits `[T, vocab]`. */
  prefillLogits: Float64Array
  /** The logits each greedy token was chosen from (row 0 = last prefill row). */
  stepLogits: Float64Array[]
  /** Prefill hidden states (`hidden[k]` = input of layer k). */
  prefillHidden: Float64Array[]
}

function argmax(row: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i
  return best
}

/** Greedy decoding as `generate(do_sample=False)` runs it: prefill, then one cached call per token. */
export function referenceGenerate(model: ReferenceModel, promptIds: number[], newTokens: number): ReferenceGeneration {
  model.reset()
  const V = model.vocabSize
  const first = model.call(promptIds)
  let row: Float64Array = first.logits.slice((promptIds.length - 1) * V)
  const ids: number[] = []
  const stepLogits: Float64Array[] = []
  for (let i = 0; i < newTokens; i++) {
    stepLogits.push(row)
    const id = argmax(row)
    ids.push(id)
    if (i + 1 === newTokens) break
    row = model.call([id]).logits
  }
  model.reset()
  return { ids, prefillLogits: first.logits, stepLogits, prefillHidden: first.hidden }
}
