import type { ModelSpec } from './modelSpec.ts'
import { OnnxGraph, float } from './onnxGraph.ts'
import { quantizeInt4 } from './quantizeInt4.ts'
import { float32ToFloat16 } from './float16.ts'
import { halfBits, toFloat32, type RawTensor } from './safetensors.ts'
import { transposeStacked } from './transposeStacked.ts'

/**
 * How weights are stored and what the shard computes in: float32 (the reference); float16 weights,
 * activations and KV cache (half the bytes; for GPUs with `shader-f16`); 4-bit projection blocks
 * (MatMulNBits: ~7× fewer bytes read per token) with float32 activations, or with float16
 * activations, norms, embeddings and KV cache (`int4-f16`).
 */
export const WEIGHT_FORMATS = ['float32', 'float16', 'int4', 'int4-f16'] as const
export type WeightFormat = (typeof WEIGHT_FORMATS)[number]

/** The element type of activations and the KV cache inside a shard of a weight format. */
export type ActivationType = 'float32' | 'float16'

export function activationType(weights: WeightFormat): ActivationType {
  return weights === 'float16' || weights === 'int4-f16' ? 'float16' : 'float32'
}

/** ONNX Cast's `to` for an activation type. */
export const CAST_TO: Record<ActivationType, number> = { float32: 1, float16: 10 }

/** A projection's weights: a float32 `[in, out]` MatMul operand, or MatMulNBits inputs. */
export type Projection = string | { codes: string; scales: string; zeroPoints: string; K: number; N: number }

/**
 * MatMulNBits `accuracy_level`: 4 quantizes activations to int8 per block for the CPU's integer
 * dot products (fast; what llama.cpp's q4_0 × q8_0 does), 0 computes in float32 (exact dequantization).
 */
export type Int4AccuracyLevel = 0 | 1 | 2 | 3 | 4

const INT4_BLOCK = 32

/** A contiguous range of decoder layers `[start, end)`. */
export type LayerRange = { start: number; end: number }

/** Names of a shard model's inputs and outputs. */
export type ShardIO = {
  /** `input_ids` (int64 `[B, T]`) on the first shard, else `hidden_states` (float32 `[B, T, hidden]`). */
  input: 'input_ids' | 'hidden_states'
  /** `logits` (`[B, R, vocab]`: the rows from LOGITS_FROM) on the last shard, else `hidden_states_out` (`[B, T, hidden]`). */
  output: 'logits' | 'hidden_states_out'
  /**
   * Element type of the KV cache tensors (inputs `past_*`, outputs `present_*`). Hidden states and
   * logits at the shard's edges are float32 whatever the weight format.
   */
  kvType: ActivationType
  /** Layers in this shard, each with `past_key.<i>`/`past_value.<i>` in and `present_key.<i>`/`present_value.<i>` out. */
  layers: number[]
  /** KV heads and head size of every cache tensor `[B, kvHeads, length, headDim]`. */
  kvHeads: number
  headDim: number
  /**
   * Where a batch row's new positions land in `present_*` when the rows' pasts are padded to one
   * length P: `packed`, right after the row's own past (length `position_offset[b]`); `appended`,
   * after the padded past, at P.
   */
  presentLayout: 'packed' | 'appended'
}

/** int64 `[B]`: each row's cached length, i.e. the absolute position of its first input token. */
export const POSITION_OFFSET = 'position_offset'

/**
 * The last shard's int64 `[1]` input: the first position whose logits it computes, `-1` for the
 * last position only (what generation needs: the LM head, the largest matrix, then runs once per
 * prefill instead of once per prompt token), `0` for every position.
 */
export const LOGITS_FROM = 'logits_from'

/** Shared state while one shard graph is built: the graph, the spec and values computed once per graph. */
export class ShardGraphContext {
  private readonly memo = new Map<string, string>()

  readonly g: OnnxGraph
  readonly spec: ModelSpec
  /** The `[1, T, hidden]` or `[1, T]` input, whose dim 1 is the sequence length. */
  readonly sequenceSource: string
  readonly weightFormat: WeightFormat
  readonly int4AccuracyLevel: Int4AccuracyLevel
  /** What the shard computes in between its float32 edges. */
  readonly act: ActivationType

  constructor(g: OnnxGraph, spec: ModelSpec, sequenceSource: string, weightFormat: WeightFormat = 'float32', int4AccuracyLevel: Int4AccuracyLevel = 4) {
    this.g = g
    this.spec = spec
    this.sequenceSource = sequenceSource
    this.weightFormat = weightFormat
    this.int4AccuracyLevel = int4AccuracyLevel
    this.act = activationType(weightFormat)
  }

  /** A scalar constant in the activation type, to combine with activations. */
  scalar(value: number): string {
    return this.g.constant(this.act, [], [value])
  }

  /** Computes a value once per graph. */
  once(key: string, make: () => string): string {
    let v = this.memo.get(key)
    if (v === undefined) {
      v = make()
      this.memo.set(key, v)
    }
    return v
  }

  /** T as int64 `[1]`. */
  get seqLen(): string {
    return this.once('seqLen', () => {
      const shape = this.g.op1('Shape', [this.sequenceSource])
      return this.g.op1('Gather', [shape, this.g.constant('int64', [1], [1])], { axis: 0 })
    })
  }

  /** position_offset + T as int64 `[B]`: each row's length after this call. */
  get totalLen(): string {
    return this.once('totalLen', () => this.g.op1('Add', [POSITION_OFFSET, this.seqLen]))
  }

  /** The longest row's length after this call, int64 `[1]`. */
  get maxTotalLen(): string {
    return this.once('maxTotalLen', () => this.g.op1('ReduceMax', [this.totalLen], { keepdims: 1 }))
  }

  /** Absolute positions of this call's tokens, int64 `[B, T]`. */
  get positions(): string {
    return this.once('positions', () => {
      const g = this.g
      const steps = g.op1('Range', [g.constant('int64', [], [0]), g.op1('Squeeze', [this.seqLen]), g.constant('int64', [], [1])])
      return g.op1('Add', [g.op1('Unsqueeze', [POSITION_OFFSET, g.constant('int64', [1], [1])]), g.op1('Unsqueeze', [steps, g.constant('int64', [1], [0])])])
    })
  }

  /** A weight stored in the activation type (float16 rounds to nearest even). */
  weight(name: string, data: Float32Array, dims: number[]): string {
    return this.act === 'float16' ? this.g.weight(name, 'float16', dims, float32ToFloat16(data)) : this.g.weight(name, 'float32', dims, data)
  }

  /** HF `nn.Linear` weights `[out, in]` (several are stacked along out) → a projection `[in] → [out]`. */
  linear(name: string, raws: RawTensor[]): Projection {
    // A float16 checkpoint built into float16 weights: its bits are moved, never converted.
    if (this.weightFormat === 'float16' && raws.every((r) => r.info.dtype === 'F16')) {
      const mats = raws.map((r) => ({ data: halfBits(r), rows: r.info.shape[0]!, cols: r.info.shape[1]! }))
      const K = mats[0]!.cols
      const N = mats.reduce((a, m) => a + m.rows, 0)
      return this.g.weight(name, 'float16', [K, N], transposeStacked(mats, new Uint16Array(K * N)))
    }
    return this.linearFloat32(name, raws.map((r) => ({ data: toFloat32(r), rows: r.info.shape[0]!, cols: r.info.shape[1]! })))
  }

  /** A checkpoint tensor as a weight of its own shape (an embedding table), in the activation type. */
  tensor(name: string, raw: RawTensor): string {
    if (this.act === 'float16' && raw.info.dtype === 'F16') return this.g.weight(name, 'float16', raw.info.shape, halfBits(raw))
    return this.weight(name, toFloat32(raw), raw.info.shape)
  }

  /** Row-major `[out, in]` matrices stacked along out → a projection, in the context's weight format. */
  linearFloat32(name: string, mats: Array<{ data: Float32Array; rows: number; cols: number }>): Projection {
    const K = mats[0]!.cols
    const N = mats.reduce((a, m) => a + m.rows, 0)
    if (this.weightFormat === 'int4' || this.weightFormat === 'int4-f16') {
      const stacked = mats.length === 1 ? mats[0]!.data : new Float32Array(N * K)
      if (mats.length > 1) {
        let at = 0
        for (const m of mats) {
          stacked.set(m.data, at)
          at += m.data.length
        }
      }
      const q = quantizeInt4(stacked, N, K, INT4_BLOCK)
      return {
        codes: this.g.weight(`${name}.q4`, 'uint8', [N, q.blocks, INT4_BLOCK / 2], q.codes),
        // MatMulNBits takes its scales in the activations' type.
        scales: this.weight(`${name}.scales`, q.scales, [N * q.blocks]),
        zeroPoints: this.g.weight(`${name}.zp`, 'uint8', [q.zeroPoints.length], q.zeroPoints),
        K,
        N,
      }
    }
    return this.weight(name, transposeStacked(mats, new Float32Array(K * N)), [K, N])
  }

  /** A weight stored `[in, out]` (GPT-2's Conv1D) → a projection. */
  linearInOut(name: string, raw: RawTensor): Projection {
    const [K, N] = raw.info.shape as [number, number]
    const data = toFloat32(raw)
    if (this.weightFormat === 'float32' || this.weightFormat === 'float16') return this.weight(name, data, [K, N])
    const rows = new Float32Array(N * K)
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) rows[n * K + k] = data[k * N + n]!
    return this.linearFloat32(name, [{ data: rows, rows: N, cols: K }])
  }

  /** A vector (norm gamma, bias), concatenated when several are given. */
  vector(name: string, raws: RawTensor[], transform?: (x: number) => number): string {
    const parts = raws.map(toFloat32)
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0))
    let o = 0
    for (const p of parts) {
      out.set(transform ? p.map(transform) : p, o)
      o += p.length
    }
    return this.weight(name, out, [out.length])
  }

  /**
   * Additive attention bias `[B, 1 or heads, T, P + T]` over MultiHeadAttention's keys (the past,
   * padded to P slots, then this call's T): causal mask, the padding past each row's own length
   * masked, plus ALiBi `slope[h] * key position` when slopes are given. A row's past keys sit at
   * positions `0 … offset - 1`, its new keys at `offset …`. With one row and no padding this is
   * the plain causal mask over keys `0 … past + T - 1`.
   */
  attentionBias(slopes: Float32Array | null, pastKey: string): string {
    return this.once('attentionBias', () => {
      const g = this.g
      const i64 = (v: number[]) => g.constant('int64', [v.length], v)
      const past = g.op1('Gather', [g.op1('Shape', [pastKey]), i64([2])], { axis: 0 }) // [1]: P
      const keys = g.op1('Range', [g.constant('int64', [], [0]), g.op1('Squeeze', [g.op1('Add', [past, this.seqLen])]), g.constant('int64', [], [1])]) // [K]
      const offset = g.op1('Unsqueeze', [POSITION_OFFSET, i64([1])]) // [B, 1]
      const inPast = g.op1('Less', [keys, past]) // [K]
      const keyPos = g.op1('Where', [inPast, g.op1('Unsqueeze', [keys, i64([0])]), g.op1('Add', [g.op1('Sub', [keys, past]), offset])]) // [B, K]
      const padding = g.op1('And', [inPast, g.op1('GreaterOrEqual', [keys, offset])]) // [B, K]
      const future = g.op1('Greater', [g.op1('Unsqueeze', [keyPos, i64([1])]), g.op1('Unsqueeze', [this.positions, i64([2])])]) // [B, T, K]
      const hidden = g.op1('Or', [future, g.op1('Unsqueeze', [padding, i64([1])])])
      const mask = g.op1('Where', [hidden, g.constant('float32', [], [-3.4028234663852886e38]), g.constant('float32', [], [0])])
      let bias = g.op1('Unsqueeze', [mask, i64([1])]) // [B, 1, T, K]
      if (slopes) {
        const pos = g.op1('Cast', [g.op1('Unsqueeze', [keyPos, i64([1, 2])])], { to: 1 }) // [B, 1, 1, K]
        const alibi = g.op1('Mul', [g.constant('float32', [1, slopes.length, 1, 1], slopes), pos]) // [B, N, 1, K]
        bias = g.op1('Add', [alibi, bias]) // [B, N, T, K]
      }
      // In float16 the mask's -3.4e38 becomes -inf: still exp(-inf) = 0, and every query sees its own key.
      return this.act === 'float32' ? bias : g.op1('Cast', [bias], { to: CAST_TO[this.act] })
    })
  }

  /** Multi-head attention over separate q, k, v `[1, T, heads * headDim]` with the cache and a bias. */
  multiHeadAttention(q: string, k: string, v: string, bias: string, cache: LayerCacheNames): string {
    const [out] = this.g.op('MultiHeadAttention', [q, k, v, '', '', bias, cache.pastKey, cache.pastValue], {
      outputs: ['', cache.presentKey, cache.presentValue],
      attrs: { num_heads: this.spec.numHeads, scale: float(1 / Math.sqrt(this.spec.headDim)) },
      domain: 'com.microsoft',
    })
    return out!
  }

  matmul(x: string, w: Projection, bias?: string): string {
    const y = typeof w === 'string'
      ? this.g.op1('MatMul', [x, w])
      : this.g.op1('MatMulNBits', [x, w.codes, w.scales, w.zeroPoints], { K: w.K, N: w.N, bits: 4, block_size: INT4_BLOCK, accuracy_level: this.int4AccuracyLevel }, 'com.microsoft')
    return bias ? this.g.op1('Add', [y, bias]) : y
  }

  layerNorm(x: string, gamma: string, beta: string): string {
    return this.g.op1('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: float(this.spec.norm.eps) })
  }

  activation(x: string): string {
    switch (this.spec.activation) {
      case 'silu':
        return this.g.op1('Mul', [x, this.g.op1('Sigmoid', [x])])
      case 'gelu_tanh':
        return this.g.op1('FastGelu', [x], undefined, 'com.microsoft')
      case 'gelu':
        return this.g.op1('Gelu', [x], undefined, 'com.microsoft')
    }
  }
}

/** Tensors to read per piece of the model, and how to turn them into graph nodes. */
export type FamilyBuilder = {
  embeddingTensors(): string[]
  layerTensors(layer: number): string[]
  finalTensors(): string[]
  /** input_ids → hidden state `[1, T, hidden]`. */
  embed(ctx: ShardGraphContext, inputIds: string, t: Map<string, RawTensor>): string
  /** One decoder layer; returns the new hidden state. Cache names are given. */
  layer(ctx: ShardGraphContext, layer: number, hidden: string, t: Map<string, RawTensor>, cache: LayerCacheNames): string
  /** Final norm and LM head → logits `[1, T, vocab]`. */
  head(ctx: ShardGraphContext, hidden: string, t: Map<string, RawTensor>): string
}

export type LayerCacheNames = { pastKey: string; pastValue: string; presentKey: string; presentValue: string }

/** Finds a checkpoint's prefix for a family's tensor names (`transformer.h.0` or `h.0`). */
export function prefixed(has: (name: string) => boolean, candidates: string[], probe: string): string {
  for (const p of candidates) if (has(p + probe)) return p
  return candidates[0]!
}
