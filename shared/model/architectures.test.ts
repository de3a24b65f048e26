import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { ModelConfigError, parseModelConfig, UnsupportedArchitectureError, type ModelSpec } from './modelSpec.ts'
import { MissingTensorError, openSafetensors, type SafetensorsIndex } from './safetensors.ts'
import { buildShardGraph, LayerRangeError } from './buildShardGraph.ts'
import { createShardSession, type ShardSession } from '../engine/shardSession.ts'
import { generate } from '../engine/generate.ts'
import { loadReferenceModel, referenceGenerate, readSafetensorsFile, type ReferenceGeneration } from '../../testing/referenceForward.ts'
import { TINY_CHECKPOINTS, writeTinyCheckpoint, type TinyCheckpoint } from '../../testing/tinyCheckpoints.ts'
import { loadFixture, maxAbsDiff, splits } from '../../testing/fixtures.ts'

// The architectures without Hugging Face fixtures, checked against the float64 reference in
// testing/referenceForward.ts (itself checked against the fixtures first, below).
// cpu by default; SHARDMESH_TEST_DEVICES=cpu,webgpu adds WebGPU (minutes on SwiftShader).
process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'

const TOLERANCE = 1e-3
const devices = (process.env.SHARDMESH_TEST_DEVICES ?? 'cpu').split(',') as Array<'cpu' | 'webgpu'>


let root: string
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'shardmesh-arch-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

const byName = (name: string): TinyCheckpoint => TINY_CHECKPOINTS.find((c) => c.name === name)!

describe('the float64 reference reproduces the Hugging Face fixtures', () => {
  for (const name of ['tiny-llama', 'tiny-bloom'] as const) {
    test(`${name}: prefill and decode logits to 1e-4, hidden states, greedy ids`, async (t) => {
      const fixture = await loadFixture(name)
      const model = loadReferenceModel(fixture.dir)
      const ref = readSafetensorsFile(join(fixture.dir, 'reference.safetensors'))
      let worst = 0
      for (const [pi, p] of fixture.prompts.entries()) {
        const g = referenceGenerate(model, p.input_ids, p.new_tokens)
        assert.deepEqual(g.ids, p.greedy_new_ids, `p${pi} greedy ids`)
        const V = model.vocabSize
        const errs = [maxAbsDiff(g.prefillLogits, ref.get(`p${pi}.logits`)!.data)]
        const decode = ref.get(`p${pi}.decode_logits`)!.data
        g.stepLogits.forEach((row, k) => errs.push(maxAbsDiff(row, decode.subarray(k * V, (k + 1) * V))))
        g.prefillHidden.forEach((h, k) => errs.push(maxAbsDiff(h, ref.get(`p${pi}.hidden_states.${k}`)!.data)))
        worst = Math.max(worst, ...errs)
      }
      t.diagnostic(`max abs error against transformers: ${worst.toExponential(2)}`)
      assert.ok(worst < 1e-4, `max abs error ${worst}`)
    })
  }
})

for (const device of devices) {
  for (const c of TINY_CHECKPOINTS) {
    const arch = (c.config.architectures as string[])[0]
    describe(`engine on node ${device}: ${c.name} (${arch}, ${c.dtype}: ${c.covers}) against the reference`, () => {
      let spec: ModelSpec
      let index: SafetensorsIndex
      let dir: string
      let refs: ReferenceGeneration[]
      const sessions = new Map<string, ShardSession>()
      const shard = async (start: number, end: number) => {
        const key = `${start}-${end}`
        let s = sessions.get(key)
        if (!s) {
          const graph = await buildShardGraph({ spec, index, range: { start, end } })
          s = await createShardSession({ spec, graph, runtime: nodeRuntime(), device })
          assert.equal(s.device, device)
          sessions.set(key, s)
        }
        return s
      }
      before(async () => {
        dir = await writeTinyCheckpoint(c, join(root, `${device}-${c.name}`))
        const src = fileModelSource(dir)
        spec = parseModelConfig(await src.readText('config.json'))
        index = await openSafetensors(src)
        const model = loadReferenceModel(dir)
        refs = c.prompts.map((p) => referenceGenerate(model, p, c.newTokens))
      })
      after(async () => {
        for (const s of sessions.values()) await s.dispose()
      })

      test('every shard maps the reference hidden state at its start to the one at its end', async () => {
        const L = spec.numLayers
        const ranges = new Set(splits(L).flatMap((cuts) => cuts.slice(1).map((end, k) => `${cuts[k]}-${end}`)))
        for (const [pi, prompt] of c.prompts.entries()) {
          for (const r of ranges) {
            const [start, end] = r.split('-').map(Number) as [number, number]
            if (end === L) continue // the last shard returns logits, checked below
            const s = await shard(start, end)
            const input = start === 0 ? { tokens: prompt } : { hidden: Float32Array.from(refs[pi]!.prefillHidden[start]!) }
            const out = await s.forward(`h-${pi}-${r}`, input, { reset: true })
            s.drop(`h-${pi}-${r}`)
            const err = maxAbsDiff(out.hidden!, refs[pi]!.prefillHidden[end]!)
            assert.ok(err < TOLERANCE, `[${start}, ${end}) p${pi}: hidden state max abs error ${err}`)
          }
        }
      })

      for (const cuts of [[0, 'L'], [0, 1, 'L'], [0, '⅓', '⅔', 'L']]) {
        test(`stages ${cuts.join('|')}: prefill logits, ${c.newTokens - 1} cached decode steps, greedy ids`, async (t) => {
          const actual = splits(spec.numLayers)[cuts.length - 2]!
          const stages = await Promise.all(actual.slice(1).map((end, k) => shard(actual[k]!, end)))
          let prefillWorst = 0
          let decodeWorst = 0
          for (const [pi, prompt] of c.prompts.entries()) {
            const ref = refs[pi]!
            const r = await generate({ stages, inputIds: prompt, maxNewTokens: c.newTokens, keepLogits: true })
            assert.deepEqual(r.outputIds, ref.ids, `p${pi} greedy ids`)
            const prefillErr = maxAbsDiff(r.prefillLogits!, ref.prefillLogits)
            assert.ok(prefillErr < TOLERANCE, `p${pi} prefill logits max abs error ${prefillErr}`)
            prefillWorst = Math.max(prefillWorst, prefillErr)
            assert.equal(r.decodeLogits!.length, ref.stepLogits.length)
            r.decodeLogits!.forEach((row, k) => {
              const err = maxAbsDiff(row, ref.stepLogits[k]!)
              assert.ok(err < TOLERANCE, `p${pi} step ${k} logits max abs error ${err}`)
              decodeWorst = Math.max(decodeWorst, err)
            })
          }
          t.diagnostic(`max abs error: prefill ${prefillWorst.toExponential(2)}, decode ${decodeWorst.toExponential(2)}`)
        })
      }

      const window = c.config.sliding_window
      if (device === devices[0] && typeof window === 'number' && window < Math.max(...c.prompts.map((p) => p.length)) + c.newTokens) {
        test(`the sliding window of ${window} changes the reference's output, so the comparison covers it`, () => {
          const unwindowed = loadReferenceModel(dir, { ignoreSlidingWindow: true })
          const effect = Math.max(
            ...c.prompts.map((p, pi) => {
              const g = referenceGenerate(unwindowed, p, c.newTokens)
              return Math.max(maxAbsDiff(g.prefillLogits, refs[pi]!.prefillLogits), ...g.stepLogits.map((row, k) => maxAbsDiff(row, refs[pi]!.stepLogits[k]!)))
            }),
          )
          assert.ok(effect > 100 * TOLERANCE, `without the window the logits move by only ${effect}`)
        })
      }
    })
  }
}

describe('errors on bad configs, checkpoints and ranges', () => {
  test('an unknown architecture in config.json is an UnsupportedArchitectureError naming it', async () => {
    const dir = await writeTinyCheckpoint(byName('llama'), join(root, 'unknown-arch'), { config: { architectures: ['FalconForCausalLM'], model_type: 'falcon' } })
    const text = await fileModelSource(dir).readText('config.json')
    assert.throws(
      () => parseModelConfig(text),
      (e: unknown) => e instanceof UnsupportedArchitectureError && e.architecture === 'FalconForCausalLM' && e.message.includes('"FalconForCausalLM"'),
    )
  })

  test('a checkpoint missing a tensor is a MissingTensorError naming it, from the shards that need it', async () => {
    const cases: Array<[TinyCheckpoint, string, number]> = [
      [byName('llama'), 'model.layers.1.mlp.down_proj.weight', 1],
      [byName('phi3'), 'model.layers.0.self_attn.qkv_proj.weight', 0],
      [byName('gpt2'), 'transformer.h.2.attn.c_attn.bias', 2],
      [byName('qwen2'), 'model.norm.weight', 2],
    ]
    for (const [c, missing, layer] of cases) {
      const dir = await writeTinyCheckpoint(c, join(root, `missing-${c.name}`), { omit: [missing] })
      const src = fileModelSource(dir)
      const spec = parseModelConfig(await src.readText('config.json'))
      const index = await openSafetensors(src)
      const L = spec.numLayers
      await assert.rejects(
        buildShardGraph({ spec, index, range: { start: 0, end: L } }),
        (e: unknown) => e instanceof MissingTensorError && e.tensor === missing && e.message.includes(missing),
      )
      await assert.rejects(buildShardGraph({ spec, index, range: { start: layer, end: layer + 1 } }), MissingTensorError)
      // A shard without that layer (and without the head, where the head is what is missing) builds.
      const other = layer === 0 ? { start: 1, end: 2 } : { start: 0, end: 1 }
      await buildShardGraph({ spec, index, range: other })
    }
  })

  test('a layer range outside [0, L) or empty is a LayerRangeError', async () => {
    const dir = await writeTinyCheckpoint(byName('mistral'), join(root, 'ranges'))
    const src = fileModelSource(dir)
    const spec = parseModelConfig(await src.readText('config.json'))
    const index = await openSafetensors(src)
    const L = spec.numLayers
    for (const range of [{ start: 0, end: L + 1 }, { start: -1, end: 1 }, { start: 2, end: 2 }, { start: 3, end: 1 }, { start: 0.5, end: 2 }, { start: L, end: L + 1 }]) {
      await assert.rejects(buildShardGraph({ spec, index, range }), (e: unknown) => e instanceof LayerRangeError && e.numLayers === L, JSON.stringify(range))
    }
  })

  test('a head size GroupQueryAttention cannot run is a ModelConfigError when the graph is built', async () => {
    const dir = await writeTinyCheckpoint(byName('qwen2'), join(root, 'head12'), { config: { hidden_size: 48, num_attention_heads: 4, num_key_value_heads: 2 } })
    const src = fileModelSource(dir)
    const spec = parseModelConfig(await src.readText('config.json'))
    await assert.rejects(buildShardGraph({ spec, index: await openSafetensors(src), range: { start: 0, end: 1 } }), ModelConfigError)
  })
})
