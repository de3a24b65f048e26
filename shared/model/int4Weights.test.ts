import assert from 'node:assert/strict'
import { copyFile, mkdtemp, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { generate } from '../engine/generate.ts'
import { loadShards } from '../engine/loadShards.ts'
import { quantizeInt4 } from './quantizeInt4.ts'
import { openSafetensors, readTensors, toFloat32 } from './safetensors.ts'
import { encodeSafetensors, type TensorToWrite } from './safetensorsWriter.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, maxAbsDiff } from '../../testing/fixtures.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'

/** Dequantizes what quantizeInt4 made, by the MatMulNBits definition: (code - zero point) * scale. */
function roundTrip(w: Float32Array, N: number, K: number): Float32Array {
  const q = quantizeInt4(w, N, K, 32)
  const out = new Float32Array(N * K)
  const zpRow = Math.ceil(q.blocks / 2)
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const b = k >> 5
      const i = k & 31
      const code = (q.codes[(n * q.blocks + b) * 16 + (i >> 1)]! >> ((i & 1) * 4)) & 15
      const zp = (q.zeroPoints[n * zpRow + (b >> 1)]! >> ((b & 1) * 4)) & 15
      out[n * K + k] = (code - zp) * q.scales[n * q.blocks + b]!
    }
  return out
}

test('int4 weights: the engine equals a float32 run of the same checkpoint with its projections dequantized', async () => {
  const fixture = await loadFixture('docs-llama-7m')
  const source = fileModelSource(fixture.dir)
  const index = await openSafetensors(source)
  // Projections (2-D weights other than the embedding table) are quantized; the embedding
  // stays float32 for the lookup, while the tied LM head is quantized from it.
  const names = [...index.tensors.keys()]
  const raw = await readTensors(index, names)
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-int4-'))
  const tensors: Record<string, TensorToWrite> = {}
  for (const name of names) {
    const t = raw.get(name)!
    const data = toFloat32(t)
    const isProjection = t.info.shape.length === 2 && name !== 'model.embed_tokens.weight'
    tensors[name] = { dtype: 'F32', shape: t.info.shape, data: isProjection ? roundTrip(data, t.info.shape[0]!, t.info.shape[1]!) : data }
  }
  // Tied head: give the dequantized copy its own name so only the head sees it.
  const embed = raw.get('model.embed_tokens.weight')!
  tensors['lm_head.weight'] = { dtype: 'F32', shape: embed.info.shape, data: roundTrip(toFloat32(embed), embed.info.shape[0]!, embed.info.shape[1]!) }
  const file = await open(join(dir, 'model.safetensors'), 'w')
  for (const piece of encodeSafetensors(tensors)) await file.write(piece)
  await file.close()
  const config = JSON.parse(await source.readText('config.json'))
  const cfg = await open(join(dir, 'config.json'), 'w')
  await cfg.write(JSON.stringify({ ...config, tie_word_embeddings: false }))
  await cfg.close()
  await copyFile(join(fixture.dir, 'tokenizer.json'), join(dir, 'tokenizer.json'))

  const ranges = [{ start: 0, end: 3 }, { start: 3, end: 8 }]
  const dequantized = await loadShards({ source: fileModelSource(dir), runtime: nodeRuntime(), device: 'cpu', ranges })
  const exact = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', weights: 'int4', int4AccuracyLevel: 0, ranges })
  const fast = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', weights: 'int4', int4AccuracyLevel: 4, ranges })
  for (const p of fixture.prompts) {
    const want = await generate({ stages: dequantized.shards, inputIds: p.input_ids, maxNewTokens: 16, keepLogits: true })
    const a = await generate({ stages: exact.shards, inputIds: p.input_ids, maxNewTokens: 16, keepLogits: true })
    // Level 0: MatMulNBits dequantizes exactly as (code - zero point) * scale.
    assert.ok(maxAbsDiff(a.prefillLogits!, want.prefillLogits!) < 1e-3)
    a.decodeLogits!.forEach((row, k) => assert.ok(maxAbsDiff(row, want.decodeLogits![k]!) < 1e-3, `decode step ${k}`))
    assert.deepEqual(a.outputIds, want.outputIds)
    // Level 4 adds the int8 quantization of activations inside the kernel: close, not equal.
    const b = await generate({ stages: fast.shards, inputIds: p.input_ids, maxNewTokens: 16, keepLogits: true })
    const err = maxAbsDiff(b.prefillLogits!, want.prefillLogits!)
    assert.ok(err < 0.6, `accuracy level 4: prefill logits differ by ${err}`)
    assert.deepEqual(b.outputIds.slice(0, 3), want.outputIds.slice(0, 3))
  }
  for (const s of [...exact.shards, ...fast.shards, ...dequantized.shards]) await s.dispose()
})
