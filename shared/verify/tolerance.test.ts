import assert from 'node:assert/strict'
import { create } from '@bufbuild/protobuf'
import { before, describe, test } from 'node:test'
import { StepInputSchema, type StepInput } from '../../proto/gen/mesh_pb.js'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { loadShards } from '../engine/loadShards.ts'
import type { ShardSession } from '../engine/shardSession.ts'
import { decodeHidden, encodeHidden } from '../mesh/frames.ts'
import type { WeightFormat } from '../model/shardGraph.ts'
import { recomputeLastRow } from './recompute.ts'
import { committedRow } from './stepLog.ts'
import { DEFAULT_TOLERANCE, rowDistance } from './tolerance.ts'

type Backend = {
  label: string
  threads?: number
  weights?: WeightFormat
  device?: 'cpu' | 'webgpu'
  /** Steps of the first prompt only (SwiftShader takes seconds a step: the whole fixture would take minutes). */
  steps?: number
}

// Node WebGPU without a GPU: Chromium's SwiftShader Vulkan driver (slow, correct).
process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'
const webgpu = (process.env.SHARDMESH_TEST_DEVICES ?? 'cpu,webgpu').split(',').includes('webgpu')

/**
 * The spread the tolerance is set from: a route's hop runs a session incrementally (prefill, then
 * one position a step) on its backend; a checker recomputes each step as one fresh prefill on
 * another backend, from the same wire inputs (float16). Distances per pair of backends, over every
 * step of the fixture's prompts (greedy continuations), on a middle range and on the last one.
 */
describe('tolerance: honest backends vs a checker, docs-llama-7m', () => {
  let fixture: Fixture
  const H = 256
  const spread = new Map<string, number[]>()

  async function shardOf(range: { start: number; end: number }, b: Backend): Promise<ShardSession> {
    const { shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ threads: b.threads, spinning: false }), device: b.device ?? 'cpu', ranges: [range], weights: b.weights })
    // A backend that fell back to another device would not be the pair the test names.
    assert.equal(shards[0]!.device, b.device ?? 'cpu')
    return shards[0]!
  }

  /** Per step of each prompt: the hop's committed row (incremental) and the checker's (fresh prefill). */
  async function distances(range: { start: number; end: number }, hop: Backend, checker: Backend): Promise<number[]> {
    const first = range.start === 0 ? undefined : await shardOf({ start: 0, end: range.start }, { label: 'reference' })
    const [a, b] = [await shardOf(range, hop), await shardOf(range, checker)]
    const out: number[] = []
    const limit = hop.steps ?? checker.steps
    for (const [pi, p] of (limit ? fixture.prompts.slice(0, 1) : fixture.prompts).entries()) {
      const sid = `p${pi}`
      const steps = [p.input_ids, ...p.greedy_new_ids.slice(0, -1).map((t) => [t])].slice(0, limit)
      const inputs: StepInput[] = []
      for (const [si, tokens] of steps.entries()) {
        let input: StepInput
        if (first) {
          const h = (await first.forward(sid, { tokens }, { reset: si === 0 })).hidden!
          input = create(StepInputSchema, { step: BigInt(si), input: { case: 'hidden', value: encodeHidden(h, H, 'float16') } })
        } else input = create(StepInputSchema, { step: BigInt(si), input: { case: 'tokens', value: { ids: tokens } } })
        inputs.push(input)
        const feed = input.input.case === 'hidden' ? { hidden: decodeHidden(input.input.value, H) } : { tokens }
        // What the hop commits to (top logits on the last shard) against the checker's full row.
        const { row, kind } = committedRow(await a.forward(sid, feed, { reset: si === 0 }), H)
        out.push(rowDistance(kind, row, await recomputeLastRow(b, inputs)))
      }
    }
    for (const s of [first, a, b]) await s?.dispose()
    return out
  }

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
  })

  const cpu: Backend = { label: 'cpu float32' }
  const pairs: Array<[Backend, Backend, 'honest' | 'different model']> = [
    [cpu, cpu, 'honest'],
    [cpu, { label: 'cpu float32, 1 thread', threads: 1 }, 'honest'],
    [{ label: 'cpu int4', weights: 'int4' }, { label: 'cpu int4, 1 thread', weights: 'int4', threads: 1 }, 'honest'],
    [{ label: 'cpu int4', weights: 'int4' }, cpu, 'different model'],
    // A hop on WebGPU (its own kernels and accumulation order) checked on cpu: the backends of node hosts with and without a GPU.
    ...(webgpu ? [[{ label: 'webgpu float32 (SwiftShader)', device: 'webgpu', steps: 12 }, cpu, 'honest'] as [Backend, Backend, 'honest']] : []),
  ]
  for (const range of [{ start: 3, end: 6 }, { start: 6, end: 8 }]) {
    for (const [hop, checker, kind] of pairs) {
      test(`[${range.start}, ${range.end}) ${hop.label} checked on ${checker.label}: ${kind}`, async () => {
        const d = await distances(range, hop, checker)
        const max = Math.max(...d)
        const min = Math.min(...d)
        spread.set(`[${range.start},${range.end}) ${hop.label} vs ${checker.label}`, d)
        const over = d.filter((x) => x > DEFAULT_TOLERANCE).length / d.length
        console.log(`# [${range.start}, ${range.end}) ${hop.label} vs ${checker.label}: ${d.length} steps, distance min ${min.toExponential(2)} max ${max.toExponential(2)}, ${(over * 100).toFixed(0)} % over the tolerance`)
        if (kind === 'honest') assert.ok(max < DEFAULT_TOLERANCE / 3, `honest spread ${max} leaves less than 3x room under the tolerance ${DEFAULT_TOLERANCE}`)
        // int4 weights passed off as float32 fail most checks (all on hidden states; the top logits are closer).
        else assert.ok(over >= 0.75, `int4 weights claimed as float32 fail only ${over} of the checks`)
      })
    }
  }
})
