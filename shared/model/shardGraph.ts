import type { ModelSpec } from './modelSpec.ts'
import { OnnxGraph, float } from './onnxGraph.ts'
import { toFloat32, type RawTensor } from './safetensors.ts'

/** A contiguous range of decoder layers `[start, end)`. */
export type LayerRange = { start: number; end: number }

/** Names of a shard model's inputs and outputs. */
export type ShardIO = {
  /** `input_ids` (int64 `[1, T]`) on the first shard, else `hidden_states` (float32 `[1, T, hidden]`). */
  input: 'input_ids' | 'hidden_states'
  /** `logits` (`[1, T, vocab]`) on the last shard, else `hidden_states_out` (`[1, T, hidden]`). */
  output: 'logits' | 'hidden_states_out'
  /** Layers in this shard, each with `past_key.<i>`/`past_value.<i>` in and `present_key.<i>`/`present_value.<i>` out. */
  layers: number[]
  /** KV heads and head size of every cache tensor `[1, kvHeads, length, headDim]`. */
  kvHeads: number
  headDim: number
}

export const POSITION_OFFSET = 'position_offset'

/** Shared state while one shard graph is built: the graph, the spec and values computed once per graph. */
export class ShardGraphContext {
  private readonly memo = new Map<string, string>()

  readonly g: OnnxGraph
  readonly spec: ModelSpec
  /** The `[1, T, hidden]` or `[1, T]` input, whose dim 1 is the sequence length. */
  readonly sequenceSource: string

  constructor(g: OnnxGraph, spec: ModelSpec, sequenceSource: string) {
    this.g = g
    this.spec = spec
    this.sequenceSource = sequenceSource
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

  /** position_offset + T as int64 `[1]`. */
  get totalLen(): string {
    return this.once('totalLen', () => this.g.op1('Add', [POSITION_OFFSET, this.seqLen]))
  }

  /** Absolute positions of this call's tokens, int64 `[T]`. */
  get positions(): string {
    return this.once('positions', () => {
      const start = this.g.op1('Squeeze', [POSITION_OFFSET])
      const end = this.g.op1('Squeeze', [this.totalLen])
      return this.g.op1('Range', [start, end, this.g.constant('int64', [], [1])])
    })
  }

  /** A float32 weight from a checkpoint tensor, optionally transposed from `[out, in]` to `[in, out]`. */
  weight(name: string, data: Float32Array, dims: number[]): string {
    return this.g.weight(name, 'float32', dims, data)
  }

  /** HF `nn.Linear` weights `[out, in]` (several are stacked along out) → MatMul operand `[in, out]`. */
  linear(name: string, raws: RawTensor[]): string {
    return this.linearFloat32(name, raws.map((r) => ({ data: toFloat32(r), rows: r.info.shape[0]!, cols: r.info.shape[1]! })))
  }

  linearFloat32(name: string, mats: Array<{ data: Float32Array; rows: number; cols: number }>): string {
    const inDim = mats[0]!.cols
    const totalOut = mats.reduce((a, m) => a + m.rows, 0)
    const t = new Float32Array(inDim * totalOut)
    let col = 0
    for (const m of mats) {
      for (let o = 0; o < m.rows; o++) {
        const src = o * inDim
        for (let i = 0; i < inDim; i++) t[i * totalOut + col + o] = m.data[src + i]!
      }
      col += m.rows
    }
    return this.weight(name, t, [inDim, totalOut])
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
   * Additive attention bias `[1, heads, T, past + T]`: causal mask, plus ALiBi `slope[h] * key position`
   * when slopes are given (keys at positions `0 … past + T - 1`).
   */
  attentionBias(slopes: Float32Array | null): string {
    return this.once('attentionBias', () => {
      const g = this.g
      const keys = g.op1('Range', [g.constant('int64', [], [0]), g.op1('Squeeze', [this.totalLen]), g.constant('int64', [], [1])])
      const future = g.op1('Greater', [g.op1('Unsqueeze', [keys, g.constant('int64', [1], [0])]), g.op1('Unsqueeze', [this.positions, g.constant('int64', [1], [1])])])
      const mask = g.op1('Where', [future, g.constant('float32', [], [-3.4028234663852886e38]), g.constant('float32', [], [0])])
      let bias = g.op1('Unsqueeze', [mask, g.constant('int64', [1], [0])]) // [1, T, K]
      if (slopes) {
        const alibi = g.op1('Mul', [g.constant('float32', [slopes.length, 1, 1], slopes), g.op1('Cast', [keys], { to: 1 })]) // [N, 1, K]
        bias = g.op1('Add', [alibi, bias]) // [N, T, K]
      }
      return g.op1('Unsqueeze', [bias, g.constant('int64', [1], [0])])
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

  matmul(x: string, w: string, bias?: string): string {
    const y = this.g.op1('MatMul', [x, w])
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
