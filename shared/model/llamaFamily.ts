import { ModelConfigError, type ModelSpec } from './modelSpec.ts'
import { ropeCaches } from './rope.ts'
import type { RawTensor } from './safetensors.ts'
import { float } from './onnxGraph.ts'
import type { FamilyBuilder, ShardGraphContext } from './shardGraph.ts'

/**
 * LLaMA and its relatives (Mistral, Qwen2, Phi-3, Gemma): RMSNorm, rotary positions,
 * grouped-query attention, gated MLP. Phi-3 stores q/k/v and gate/up fused; the others are
 * fused here so each layer runs two MatMuls fewer.
 */
export function llamaFamily(spec: ModelSpec, has: (name: string) => boolean): FamilyBuilder {
  // Phi-3 always stores them fused (so a missing one is reported by its own name).
  const isPhi3 = spec.architecture === 'Phi3ForCausalLM'
  const fusedQkv = isPhi3 || has('model.layers.0.self_attn.qkv_proj.weight')
  const fusedGateUp = isPhi3 || has('model.layers.0.mlp.gate_up_proj.weight')
  // GroupQueryAttention's kernels take head sizes in multiples of 8 only.
  if (spec.headDim % 8 !== 0) {
    throw new ModelConfigError(`${spec.architecture}: head_dim ${spec.headDim} is not a multiple of 8, which GroupQueryAttention needs`)
  }
  const L = (i: number) => `model.layers.${i}.`
  const lmHead = spec.tiedEmbeddings || !has('lm_head.weight') ? 'model.embed_tokens.weight' : 'lm_head.weight'
  const gammaOf = spec.norm.unitOffset ? (x: number) => 1 + x : undefined
  const qkvNames = (i: number, kind: 'weight' | 'bias') =>
    fusedQkv ? [`${L(i)}self_attn.qkv_proj.${kind}`] : ['q', 'k', 'v'].map((p) => `${L(i)}self_attn.${p}_proj.${kind}`)
  const gateUpNames = (i: number, kind: 'weight' | 'bias') =>
    fusedGateUp ? [`${L(i)}mlp.gate_up_proj.${kind}`] : [`${L(i)}mlp.gate_proj.${kind}`, `${L(i)}mlp.up_proj.${kind}`]
  const pick = (t: Map<string, RawTensor>, names: string[]) => names.map((n) => t.get(n)!)

  const rmsNorm = (ctx: ShardGraphContext, x: string, gamma: string) =>
    ctx.g.op1('SimplifiedLayerNormalization', [x, gamma], { axis: -1, epsilon: float(spec.norm.eps) })

  /** The cos and sin caches this call reads (LongRoPE: the short or the long block, as HF picks per call). */
  const ropeInputs = (ctx: ShardGraphContext): [string, string] => {
    const cos = ctx.once('ropeCos', () => {
      const { g } = ctx
      const c = ropeCaches(spec)
      let cosT = ctx.weight('rope_cos', c.cos, [c.rows, c.half])
      let sinT = ctx.weight('rope_sin', c.sin, [c.rows, c.half])
      if (c.longOffset !== null) {
        // A batch picks by its longest row, as Hugging Face does for a padded batch.
        const long = g.op1('Greater', [ctx.maxTotalLen, g.constant('int64', [1], [c.longOffset])])
        const start = g.op1('Mul', [g.op1('Cast', [long], { to: 7 }), g.constant('int64', [1], [c.longOffset])])
        const end = g.op1('Add', [start, ctx.maxTotalLen])
        const axes = g.constant('int64', [1], [0])
        cosT = g.op1('Slice', [cosT, start, end, axes])
        sinT = g.op1('Slice', [sinT, start, end, axes])
      }
      ctx.once('ropeSin', () => sinT)
      return cosT
    })
    return [cos, ctx.once('ropeSin', () => { throw new Error('rope caches not built') })]
  }

  return {
    embeddingTensors: () => ['model.embed_tokens.weight'],
    layerTensors: (i) => [
      `${L(i)}input_layernorm.weight`,
      `${L(i)}post_attention_layernorm.weight`,
      ...qkvNames(i, 'weight'),
      ...(spec.qkvBias ? qkvNames(i, 'bias') : []),
      `${L(i)}self_attn.o_proj.weight`,
      ...(spec.outputBias ? [`${L(i)}self_attn.o_proj.bias`] : []),
      ...gateUpNames(i, 'weight'),
      ...(spec.mlpBias ? gateUpNames(i, 'bias') : []),
      `${L(i)}mlp.down_proj.weight`,
      ...(spec.mlpBias ? [`${L(i)}mlp.down_proj.bias`] : []),
    ],
    finalTensors: () => ['model.norm.weight', lmHead],

    embed(ctx, inputIds, t) {
      const raw = t.get('model.embed_tokens.weight')!
      const table = ctx.tensor('embed_tokens', raw)
      const x = ctx.g.op1('Gather', [table, inputIds], { axis: 0 })
      if (spec.embeddingScale === null) return x
      return ctx.g.op1('Mul', [x, ctx.scalar(Math.fround(spec.embeddingScale))])
    },

    layer(ctx, i, x, t, cache) {
      const { g } = ctx
      const p = `layer${i}.`
      const n1 = rmsNorm(ctx, x, ctx.vector(`${p}input_norm`, pick(t, [`${L(i)}input_layernorm.weight`]), gammaOf))
      const qkvBias = spec.qkvBias ? ctx.vector(`${p}qkv_bias`, pick(t, qkvNames(i, 'bias'))) : undefined
      const qkv = ctx.matmul(n1, ctx.linear(`${p}qkv`, pick(t, qkvNames(i, 'weight'))), qkvBias)
      const [cosCache, sinCache] = ropeInputs(ctx)
      // GroupQueryAttention reads each row's positions and valid keys from seqlens_k (its total
      // length - 1, `[B]`), so rows of a batch keep their own lengths over a past padded to the longest.
      const seqlensK = ctx.once('seqlensK', () =>
        g.op1('Cast', [g.op1('Sub', [ctx.totalLen, g.constant('int64', [1], [1])])], { to: 6 }),
      )
      const totalLen = ctx.once('totalLenI32', () => g.op1('Cast', [g.op1('Squeeze', [ctx.maxTotalLen])], { to: 6 }))
      const attrs: Record<string, number | { float: number }> = {
        num_heads: spec.numHeads,
        kv_num_heads: spec.numKvHeads,
        scale: float(1 / Math.sqrt(spec.headDim)),
      }
      // HF attends to keys with q - k < window; GroupQueryAttention's local_window_size is the
      // number of keys a query sees, itself included (measured on ORT 1.30 cpu and webgpu).
      if (spec.slidingWindow !== null && spec.layerTypes[i] === 'sliding_attention') attrs.local_window_size = spec.slidingWindow
      let gqaInputs: string[]
      // GroupQueryAttention's fused rotary needs the whole head rotated and a head size that is a
      // multiple of 16; otherwise rotate q and k with RotaryEmbedding first.
      if (spec.rope!.rotaryDim === spec.headDim && spec.headDim % 16 === 0) {
        attrs.do_rotary = 1
        gqaInputs = [qkv, '', '', cache.pastKey, cache.pastValue, seqlensK, totalLen, cosCache, sinCache]
      } else {
        const Hq = spec.numHeads * spec.headDim
        const Hkv = spec.numKvHeads * spec.headDim
        const [q, k, v] = g.op('Split', [qkv, g.constant('int64', [3], [Hq, Hkv, Hkv])], { outputs: 3, attrs: { axis: -1 } })
        const rot = (x: string, heads: number) =>
          g.op1('RotaryEmbedding', [x, ctx.positions, cosCache, sinCache], { interleaved: 0, num_heads: heads, rotary_embedding_dim: spec.rope!.rotaryDim }, 'com.microsoft')
        gqaInputs = [rot(q!, spec.numHeads), rot(k!, spec.numKvHeads), v!, cache.pastKey, cache.pastValue, seqlensK, totalLen]
      }
      const [attn] = g.op('GroupQueryAttention', gqaInputs, {
        outputs: ['', cache.presentKey, cache.presentValue],
        attrs,
        domain: 'com.microsoft',
      })
      const oBias = spec.outputBias ? ctx.vector(`${p}o_bias`, pick(t, [`${L(i)}self_attn.o_proj.bias`])) : undefined
      const o = ctx.matmul(attn!, ctx.linear(`${p}o_proj`, pick(t, [`${L(i)}self_attn.o_proj.weight`])), oBias)
      const gamma2 = ctx.vector(`${p}post_norm`, pick(t, [`${L(i)}post_attention_layernorm.weight`]), gammaOf)
      const [n2, , , h] = g.op('SkipSimplifiedLayerNormalization', [o, x, gamma2], {
        outputs: 4,
        attrs: { epsilon: float(spec.norm.eps) },
        domain: 'com.microsoft',
      })
      const guBias = spec.mlpBias ? ctx.vector(`${p}gate_up_bias`, pick(t, gateUpNames(i, 'bias'))) : undefined
      const gu = ctx.matmul(n2!, ctx.linear(`${p}gate_up`, pick(t, gateUpNames(i, 'weight'))), guBias)
      const I = spec.intermediateSize
      const [gate, up] = g.op('Split', [gu, g.constant('int64', [2], [I, I])], { outputs: 2, attrs: { axis: -1 } })
      const m = g.op1('Mul', [ctx.activation(gate!), up!])
      const dBias = spec.mlpBias ? ctx.vector(`${p}down_bias`, pick(t, [`${L(i)}mlp.down_proj.bias`])) : undefined
      const down = ctx.matmul(m, ctx.linear(`${p}down`, pick(t, [`${L(i)}mlp.down_proj.weight`])), dBias)
      return g.op1('Add', [h!, down])
    },

    head(ctx, x, t) {
      const n = rmsNorm(ctx, x, ctx.vector('final_norm', pick(t, ['model.norm.weight']), gammaOf))
      return ctx.matmul(n, ctx.linear('lm_head', pick(t, [lmHead])))
    },
  }
}
