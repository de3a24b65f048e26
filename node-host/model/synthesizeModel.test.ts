import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Tokenizer } from '@huggingface/tokenizers'
import { fileModelSource } from './fileModelSource.ts'
import { LLAMA_PRESETS, SYNTHETIC_EOS_ID, synthesizeLlama } from './synthesizeModel.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { buildShardGraph, familyBuilder } from '../../shared/model/buildShardGraph.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { openSafetensors } from '../../shared/model/safetensors.ts'
import { createShardSession } from '../../shared/engine/shardSession.ts'
import { generate } from '../../shared/engine/generate.ts'

const config = LLAMA_PRESETS.tiny

describe('synthesizeLlama (tiny preset)', () => {
  let root: string
  const dirOf = (name: string) => join(root, name)
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'shardmesh-synth-'))
    await synthesizeLlama({ dir: dirOf('f16'), config, dtype: 'float16', seed: 7 })
  })
  after(async () => {
    await rm(root, { recursive: true, force: true })
  })

  test('config.json parses to the preset dimensions', async () => {
    const spec = parseModelConfig(await readFile(join(dirOf('f16'), 'config.json'), 'utf8'))
    assert.equal(spec.architecture, 'LlamaForCausalLM')
    assert.equal(spec.numLayers, config.num_hidden_layers)
    assert.equal(spec.hiddenSize, config.hidden_size)
    assert.equal(spec.numKvHeads, config.num_key_value_heads)
    assert.equal(spec.vocabSize, config.vocab_size)
    assert.equal(spec.tiedEmbeddings, false)
    assert.deepEqual(spec.eosTokenIds, [SYNTHETIC_EOS_ID])
  })

  test('the safetensors file holds every tensor the graph builder asks for, as float16', async () => {
    const source = fileModelSource(dirOf('f16'))
    const spec = parseModelConfig(await source.readText('config.json'))
    const index = await openSafetensors(source)
    const family = familyBuilder(spec, index)
    const wanted = [...family.embeddingTensors(), ...Array.from({ length: spec.numLayers }, (_, i) => family.layerTensors(i)).flat(), ...family.finalTensors()]
    for (const name of wanted) assert.equal(index.tensors.get(name)?.dtype, 'F16', name)
    assert.ok(wanted.includes('lm_head.weight'))
  })

  test('the same seed writes the same bytes; another seed, other bytes', async () => {
    await synthesizeLlama({ dir: dirOf('again'), config, dtype: 'float16', seed: 7 })
    await synthesizeLlama({ dir: dirOf('other'), config, dtype: 'float16', seed: 8 })
    const read = (d: string) => readFile(join(dirOf(d), 'model.safetensors'))
    const [a, b, c] = await Promise.all([read('f16'), read('again'), read('other')])
    assert.ok(a.equals(b))
    assert.equal(a.length, c.length)
    assert.ok(!a.equals(c))
  })

  test('the byte-level tokenizer encodes one token per UTF-8 byte and decodes back', async () => {
    const json = JSON.parse(await readFile(join(dirOf('f16'), 'tokenizer.json'), 'utf8')) as object
    const tokConfig = JSON.parse(await readFile(join(dirOf('f16'), 'tokenizer_config.json'), 'utf8')) as object
    const tok = new Tokenizer(json, tokConfig)
    const text = 'Hi, shard é'
    const ids = tok.encode(text).ids
    assert.deepEqual(ids.length, new TextEncoder().encode(text).length)
    assert.equal(tok.decode(ids, { skip_special_tokens: true }), text)
  })

  for (const dtype of ['float16', 'float32'] as const) {
    test(`the engine runs the ${dtype} model on cpu to finite logits`, async () => {
      const dir = dirOf(`run-${dtype}`)
      await synthesizeLlama({ dir, config, dtype, seed: 3 })
      const source = fileModelSource(dir)
      const spec = parseModelConfig(await source.readText('config.json'))
      const graph = await buildShardGraph({ spec, index: await openSafetensors(source), range: { start: 0, end: spec.numLayers } })
      const session = await createShardSession({ spec, graph, runtime: nodeRuntime({ threads: 1 }), device: 'cpu' })
      try {
        const r = await generate({ stages: [session], inputIds: [1, 72, 105, 300], maxNewTokens: 4, keepLogits: true })
        assert.equal(r.outputIds.length, 4)
        assert.equal(r.prefillLogits!.length, 4 * spec.vocabSize)
        for (const row of [r.prefillLogits!, ...r.decodeLogits!]) assert.ok(row.every(Number.isFinite))
        // Random weights still give logits that differ between tokens (not all zero or constant).
        const first = r.prefillLogits!.subarray(0, spec.vocabSize)
        assert.ok(Math.max(...first) - Math.min(...first) > 1e-3)
      } finally {
        await session.dispose()
      }
    })
  }
})
