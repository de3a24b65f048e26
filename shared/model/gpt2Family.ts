import type { ModelSpec } from './modelSpec.ts'
import { toFloat32 } from './safetensors.ts'
import { prefixed, type FamilyBuilder } from './shardGraph.ts'

/** GPT-2: learned positions, pre-LayerNorm, Conv1D weights stored `[in, out]`, GELU (tanh), tied head (or `lm_head.weight` when untied). */
export function gpt2Family(spec: ModelSpec, has: (name: string) => boolean): FamilyBuilder {
  const P = prefixed(has, ['transformer.', ''], 'wte.weight')
  const L = (i: number) => `${P}h.${i}.`
  const both = (base: string) => [`${base}.weight`, `${base}.bias`]
  const H = spec.hiddenSize
  const lmHead = spec.tiedEmbeddings ? `${P}wte.weight` : 'lm_head.weight'
  /**
   * MultiHeadAttention scales scores by 1/sqrt(headDim); HF GPT-2 divides by sqrt(headDim) only
   * with `scale_attn_weights`, and also by (layer + 1) with `scale_attn_by_inverse_layer_idx`.
   * The difference is folded into q.
   */
  const queryFactor = (i: number) => (spec.scaleAttentionWeights ? 1 : Math.sqrt(spec.headDim)) / (spec.scaleAttentionByLayer ? i + 1 : 1)

  return {
    embeddingTensors: () => [`${P}wte.weight`, `${P}wpe.weight`],
    layerTensors: (i) => [
      ...both(`${L(i)}ln_1`),
      ...both(`${L(i)}attn.c_attn`),
      ...both(`${L(i)}attn.c_proj`),
      ...both(`${L(i)}ln_2`),
      ...both(`${L(i)}mlp.c_fc`),
      ...both(`${L(i)}mlp.c_proj`),
    ],
    finalTensors: () => [...both(`${P}ln_f`), lmHead],

    embed(ctx, inputIds, t) {
      const table = (name: string) => {
        const raw = t.get(`${P}${name}.weight`)!
        return ctx.tensor(name, raw)
      }
      const tokens = ctx.g.op1('Gather', [table('wte'), inputIds], { axis: 0 })
      const positions = ctx.g.op1('Gather', [table('wpe'), ctx.positions], { axis: 0 })
      return ctx.g.op1('Add', [tokens, positions])
    },

    layer(ctx, i, x, t, cache) {
      const { g } = ctx
      const p = `layer${i}.`
      const v = (name: string, tensor: string) => ctx.vector(p + name, [t.get(tensor)!])
      const ln = (name: string, base: string, input: string) => ctx.layerNorm(input, v(`${name}.w`, `${base}.weight`), v(`${name}.b`, `${base}.bias`))
      // Conv1D: weight is already [in, out].
      const conv = (name: string, base: string, input: string) => {
        const raw = t.get(`${base}.weight`)!
        return ctx.matmul(input, ctx.weight(p + name, toFloat32(raw), raw.info.shape), v(`${name}.b`, `${base}.bias`))
      }
      const qkv = conv('c_attn', `${L(i)}attn.c_attn`, ln('ln1', `${L(i)}ln_1`, x))
      const [q, k, vv] = g.op('Split', [qkv, g.constant('int64', [3], [H, H, H])], { outputs: 3, attrs: { axis: -1 } })
      const f = queryFactor(i)
      const query = f === 1 ? q! : g.op1('Mul', [q!, ctx.scalar(f)])
      const attn = ctx.multiHeadAttention(query, k!, vv!, ctx.attentionBias(null, cache.pastKey), cache)
      const h = g.op1('Add', [x, conv('attn_proj', `${L(i)}attn.c_proj`, attn)])
      const up = ctx.activation(conv('c_fc', `${L(i)}mlp.c_fc`, ln('ln2', `${L(i)}ln_2`, h)))
      return g.op1('Add', [h, conv('mlp_proj', `${L(i)}mlp.c_proj`, up)])
    },

    head(ctx, x, t) {
      const n = ctx.layerNorm(x, ctx.vector('ln_f.weight', [t.get(`${P}ln_f.weight`)!]), ctx.vector('ln_f.bias', [t.get(`${P}ln_f.bias`)!]))
      return ctx.matmul(n, ctx.linear('lm_head', [t.get(lmHead)!]))
    },
  }
}
