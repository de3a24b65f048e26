import { alibiSlopes } from './alibi.ts'
import type { ModelSpec } from './modelSpec.ts'
import { toFloat32, type RawTensor } from './safetensors.ts'
import { prefixed, type FamilyBuilder } from './shardGraph.ts'

/** BLOOM: embedding LayerNorm, ALiBi positions, fused per-head q/k/v, GELU (tanh) MLP, tied head. */
export function bloomFamily(spec: ModelSpec, has: (name: string) => boolean): FamilyBuilder {
  const P = prefixed(has, ['transformer.', ''], 'word_embeddings.weight')
  const L = (i: number) => `${P}h.${i}.`
  const both = (base: string) => [`${base}.weight`, `${base}.bias`]
  const H = spec.hiddenSize
  const N = spec.numHeads
  const D = spec.headDim

  /** BLOOM's query_key_value rows are ordered (head, q|k|v, dim); regroup to q, k, v blocks. */
  const regroup = (src: Float32Array, cols: number): Float32Array => {
    const out = new Float32Array(src.length)
    for (let h = 0; h < N; h++)
      for (let c = 0; c < 3; c++)
        for (let d = 0; d < D; d++) {
          const from = (h * 3 * D + c * D + d) * cols
          out.set(src.subarray(from, from + cols), (c * H + h * D + d) * cols)
        }
    return out
  }

  return {
    embeddingTensors: () => [`${P}word_embeddings.weight`, ...both(`${P}word_embeddings_layernorm`)],
    layerTensors: (i) => [
      ...both(`${L(i)}input_layernorm`),
      ...both(`${L(i)}self_attention.query_key_value`),
      ...both(`${L(i)}self_attention.dense`),
      ...both(`${L(i)}post_attention_layernorm`),
      ...both(`${L(i)}mlp.dense_h_to_4h`),
      ...both(`${L(i)}mlp.dense_4h_to_h`),
    ],
    finalTensors: () => [...both(`${P}ln_f`), `${P}word_embeddings.weight`],

    embed(ctx, inputIds, t) {
      const raw = t.get(`${P}word_embeddings.weight`)!
      const x = ctx.g.op1('Gather', [ctx.tensor('word_embeddings', raw), inputIds], { axis: 0 })
      const [w, b] = both(`${P}word_embeddings_layernorm`).map((n) => [t.get(n)!])
      return ctx.layerNorm(x, ctx.vector('embed_ln.weight', w!), ctx.vector('embed_ln.bias', b!))
    },

    layer(ctx, i, x, t, cache) {
      const { g } = ctx
      const p = `layer${i}.`
      const v = (name: string, tensor: string) => ctx.vector(p + name, [t.get(tensor)!])
      const ln = (name: string, base: string, input: string) => ctx.layerNorm(input, v(`${name}.w`, `${base}.weight`), v(`${name}.b`, `${base}.bias`))
      const lin = (name: string, base: string, input: string) => ctx.matmul(input, ctx.linear(p + name, [t.get(`${base}.weight`)!]), v(`${name}.b`, `${base}.bias`))

      const n1 = ln('ln1', `${L(i)}input_layernorm`, x)
      const qkvRaw = t.get(`${L(i)}self_attention.query_key_value.weight`)!
      const qkvW = ctx.linearFloat32(`${p}qkv`, [{ data: regroup(toFloat32(qkvRaw), H), rows: 3 * H, cols: H }])
      const qkvB = ctx.weight(`${p}qkv.b`, regroup(toFloat32(t.get(`${L(i)}self_attention.query_key_value.bias`)!), 1), [3 * H])
      const qkv = ctx.matmul(n1, qkvW, qkvB)
      const [q, k, vv] = g.op('Split', [qkv, g.constant('int64', [3], [H, H, H])], { outputs: 3, attrs: { axis: -1 } })
      const attn = ctx.multiHeadAttention(q!, k!, vv!, ctx.attentionBias(alibiSlopes(N), cache.pastKey), cache)
      const h = g.op1('Add', [x, lin('dense', `${L(i)}self_attention.dense`, attn)])
      const n2 = ln('ln2', `${L(i)}post_attention_layernorm`, h)
      const up = ctx.activation(lin('fc1', `${L(i)}mlp.dense_h_to_4h`, n2))
      return g.op1('Add', [h, lin('fc2', `${L(i)}mlp.dense_4h_to_h`, up)])
    },

    head(ctx, x, t) {
      const pick = (n: string): RawTensor[] => [t.get(n)!]
      const n = ctx.layerNorm(x, ctx.vector('ln_f.weight', pick(`${P}ln_f.weight`)), ctx.vector('ln_f.bias', pick(`${P}ln_f.bias`)))
      return ctx.matmul(n, ctx.linear('lm_head', pick(`${P}word_embeddings.weight`)))
    },
  }
}
