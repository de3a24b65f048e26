import assert from 'node:assert/strict'
import { describe, test, before, after } from 'node:test'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { parseModelConfig, type ModelSpec } from '../model/modelSpec.ts'
import { openSafetensors, type SafetensorsIndex } from '../model/safetensors.ts'
import { buildShardGraph } from '../model/buildShardGraph.ts'
import { createShardSession, type ShardSession } from './shardSession.ts'
import { generate } from './generate.ts'
import { FIXTURE_NAMES, loadFixture, logitTolerance, maxAbsDiff, type Fixture, splits } from '../../testing/fixtures.ts'

// SwiftShader's Vulkan driver gives onnxruntime-node's WebGPU an adapter on machines without a GPU.
process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'

const HIDDEN_TOLERANCE = 1e-3
const devices = (process.env.SHARDMESH_TEST_DEVICES ?? 'cpu,webgpu').split(',') as Array<'cpu' | 'webgpu'>


for (const device of devices) {
  for (const name of FIXTURE_NAMES) {
    describe(`engine on node ${device}: ${name} against the Hugging Face reference`, () => {
      let fixture: Fixture
      let spec: ModelSpec
      let index: SafetensorsIndex
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
        fixture = await loadFixture(name)
        const src = fileModelSource(fixture.dir)
        spec = parseModelConfig(await src.readText('config.json'))
        index = await openSafetensors(src)
      })
      after(async () => {
        for (const s of sessions.values()) await s.dispose()
      })

      test('every shard maps the reference hidden state at its start to the one at its end', async () => {
        const L = spec.numLayers
        const ranges = new Set(splits(L).flatMap((cuts) => cuts.slice(1).map((end, k) => `${cuts[k]}-${end}`)))
        for (const [pi] of fixture.prompts.entries()) {
          const keys = Array.from({ length: L + 1 }, (_, k) => `p${pi}.hidden_states.${k}`)
          const ref = await fixture.reference(keys)
          for (const r of ranges) {
            const [start, end] = r.split('-').map(Number) as [number, number]
            if (end === L) continue // the last shard returns logits, checked below
            const s = await shard(start, end)
            const input = start === 0 ? { tokens: fixture.prompts[pi]!.input_ids } : { hidden: ref.get(`p${pi}.hidden_states.${start}`)! }
            const out = await s.forward(`h-${pi}-${r}`, input, { reset: true })
            s.drop(`h-${pi}-${r}`)
            const err = maxAbsDiff(out.hidden!, ref.get(`p${pi}.hidden_states.${end}`)!)
            assert.ok(err < HIDDEN_TOLERANCE, `[${start}, ${end}) p${pi}: hidden state max abs error ${err}`)
          }
        }
      })

      for (const cuts of [[0, 'L'], [0, 1, 'L'], [0, '⅓', '⅔', 'L']]) {
        test(`stages ${cuts.join('|')}: prefill logits, decode logits and greedy ids`, async () => {
          const actual = splits(spec.numLayers)[cuts.length - 2]!
          const stages = await Promise.all(actual.slice(1).map((end, k) => shard(actual[k]!, end)))
          for (const [pi, p] of fixture.prompts.entries()) {
            const ref = await fixture.reference([`p${pi}.logits`, `p${pi}.decode_logits`])
            const r = await generate({ stages, inputIds: p.input_ids, maxNewTokens: p.new_tokens, keepLogits: true })
            assert.deepEqual(r.outputIds, p.greedy_new_ids, `p${pi} greedy ids`)
            const tol = logitTolerance(name)
            const prefillErr = maxAbsDiff(r.prefillLogits!, ref.get(`p${pi}.logits`)!)
            assert.ok(prefillErr < tol, `p${pi} prefill logits max abs error ${prefillErr}`)
            const V = spec.vocabSize
            const decode = ref.get(`p${pi}.decode_logits`)!
            r.decodeLogits!.forEach((row, k) => {
              const err = maxAbsDiff(row, decode.subarray(k * V, (k + 1) * V))
              assert.ok(err < tol, `p${pi} decode step ${k} logits max abs error ${err}`)
            })
          }
        })
      }
    })
  }
}
