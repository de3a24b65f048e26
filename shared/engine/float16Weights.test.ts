import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { generate } from './generate.ts'
import { loadShards } from './loadShards.ts'
import { pickWeightFormat } from './pickWeightFormat.ts'
import { DeviceUnavailableError } from './runtime.ts'
import type { WeightFormat } from '../model/shardGraph.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, maxAbsDiff, type FixtureName } from '../../testing/fixtures.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'

// SwiftShader's Vulkan driver gives onnxruntime-node's WebGPU an adapter (without shader-f16) here.
process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'

/** The fixtures README's bar for float16 compute: the reference's greedy ids for the first 24 tokens. */
const FLOAT16_GREEDY_TOKENS = 24
/** float16 rounding of weights and activations moves the last prefill logits of these models by 3e-3 to 2e-2 (measured). */
const FLOAT16_LOGIT_TOLERANCE = 5e-2

async function run(name: FixtureName, weights: WeightFormat, cuts: number[] | null, prompt: number, int4AccuracyLevel: 0 | 4 = 4) {
  const fixture = await loadFixture(name)
  const source = fileModelSource(fixture.dir)
  const ranges = cuts?.slice(1).map((end, k) => ({ start: cuts[k]!, end }))
  const { spec, shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', weights, ranges, int4AccuracyLevel })
  try {
    const p = fixture.prompts[prompt]!
    const r = await generate({ stages: shards, inputIds: p.input_ids, maxNewTokens: FLOAT16_GREEDY_TOKENS, keepLogits: true })
    const ref = (await fixture.reference([`p${prompt}.logits`])).get(`p${prompt}.logits`)!
    const V = spec.vocabSize
    return { last: r.prefillLogits!.slice(-V), ids: r.outputIds, want: p.greedy_new_ids.slice(0, FLOAT16_GREEDY_TOKENS), err: maxAbsDiff(r.prefillLogits!.slice(-V), ref.slice(-V)), kvType: shards[0]!.io.kvType }
  } finally {
    await Promise.all(shards.map((s) => s.dispose()))
  }
}

describe('float16 weights, activations and KV cache (ORT cpu)', () => {
  for (const [name, cuts] of [['docs-llama-7m', null], ['docs-llama-7m', [0, 3, 8]], ['tiny-llama', [0, 2, 6]], ['tiny-bloom', [0, 4, 6]]] as const) {
    test(`${name}${cuts ? ` split ${cuts.join('-')}` : ''}: the reference greedy ids for ${FLOAT16_GREEDY_TOKENS} tokens, logits within ${FLOAT16_LOGIT_TOLERANCE}`, async () => {
      for (const prompt of [0, 1]) {
        const r = await run(name, 'float16', cuts ? [...cuts] : null, prompt)
        assert.equal(r.kvType, 'float16')
        assert.deepEqual(r.ids, r.want, `p${prompt}`)
        assert.ok(r.err < FLOAT16_LOGIT_TOLERANCE, `p${prompt}: last prefill logits off by ${r.err}`)
      }
    })
  }

  test('int4-f16 (int4 projections, float16 activations and scales) gives the greedy ids of int4 dequantized exactly in float32', async () => {
    for (const prompt of [0, 1]) {
      const f16 = await run('docs-llama-7m', 'int4-f16', null, prompt)
      const f32 = await run('docs-llama-7m', 'int4', null, prompt, 0)
      assert.equal(f16.kvType, 'float16')
      assert.equal(f32.kvType, 'float32')
      const err = maxAbsDiff(f16.last, f32.last)
      console.log(`p${prompt}: int4-f16 and exact int4 last prefill logits differ by ${err.toExponential(2)}`)
      // float16 scales move each dequantized weight by up to 2^-11 of its block's scale: 0.26 at most on these logits (measured).
      assert.ok(err < 0.5, `p${prompt}: ${err}`)
      assert.deepEqual(f16.ids, f32.ids, `p${prompt}`)
    }
  })
})

describe('picking float16 by the adapter', () => {
  test('auto is float32 on the cpu and on a WebGPU adapter without shader-f16 (SwiftShader)', async () => {
    assert.equal(await pickWeightFormat('auto', nodeRuntime(), 'cpu'), 'float32')
    assert.equal(await pickWeightFormat('auto', nodeRuntime(), 'webgpu'), 'float32')
    assert.equal(await pickWeightFormat('int4', nodeRuntime(), 'webgpu'), 'int4')
  })

  test('a float16 shard on an adapter without shader-f16 fails at load, naming the device and f16', async () => {
    const fixture = await loadFixture('tiny-llama')
    await assert.rejects(
      loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime(), device: 'webgpu', weights: 'float16' }),
      (e: unknown) => e instanceof DeviceUnavailableError && e.device === 'webgpu' && /f16/.test(e.message),
    )
  })
})
