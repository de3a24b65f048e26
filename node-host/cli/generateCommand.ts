import { WEIGHT_FORMATS } from '../../shared/model/shardGraph.ts'
import { open } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { UsageError, parseOptions } from './usageError.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generate, type GenerateParameters, type GenerateResult } from '../../shared/engine/generate.ts'
import { createMeshPeer } from '../../shared/mesh/createMeshPeer.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { loadShards, parseStages } from '../../shared/engine/loadShards.ts'
import { encodeSafetensors } from '../../shared/model/safetensorsWriter.ts'
import { loadTokenizer } from '../../shared/model/tokenizer.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { shardCacheFromEnv } from '../engine/fileShardCache.ts'
import { engineThreads } from '../engine/engineThreads.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { progressBar } from './progressBar.ts'

export const GENERATE_USAGE = `usage: shardmesh generate [--model <folder|url|owner/name>] --prompt <text> [--max-new-tokens <n>]
       [--stages 0-3,3-8] [--device auto|webgpu|cpu|wasm] [--weights auto|float32|float16|int4|int4-f16] [--temperature 0] [--top-k 0] [--top-p 1]
       [--repetition-penalty 1] [--seed <n>] [--threads <n>] [--json] [--logits-out <file.safetensors>] [--peer <multiaddr>…]
       with --peer, the shards run on those node hosts (this process is the origin)`

const optionsSchema = z.object({
  model: z.string().optional(),
  prompt: z.string({ error: '--prompt is required' }),
  maxNewTokens: z.coerce.number().int().min(1).max(4096).default(32),
  stages: z.string().optional(),
  device: z.enum(['auto', 'webgpu', 'cpu', 'wasm']).default('auto'),
  weights: z.enum([...WEIGHT_FORMATS, 'auto']).default('auto'),
  temperature: z.coerce.number().min(0).max(2).default(0),
  topK: z.coerce.number().int().min(0).default(0),
  topP: z.coerce.number().gt(0).max(1).default(1),
  repetitionPenalty: z.coerce.number().min(1).max(2).default(1),
  seed: z.coerce.number().int().min(0).default(0),
  json: z.boolean().default(false),
  logitsOut: z.string().optional(),
  peer: z.array(z.string()).default([]),
})

export type GenerateOptions = z.infer<typeof optionsSchema>

export function parseGenerateArgs(argv: string[]): GenerateOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      stages: { type: 'string' },
      device: { type: 'string' },
      weights: { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'repetition-penalty': { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
      'logits-out': { type: 'string' },
      peer: { type: 'string', multiple: true },
    },
    strict: true,
  })
  return parseOptions(optionsSchema, {
    model: values.model,
    prompt: values.prompt,
    maxNewTokens: values['max-new-tokens'],
    stages: values.stages,
    device: values.device,
    weights: values.weights,
    temperature: values.temperature,
    topK: values['top-k'],
    topP: values['top-p'],
    repetitionPenalty: values['repetition-penalty'],
    seed: values.seed,
    json: values.json,
    logitsOut: values['logits-out'],
    peer: values.peer,
  })
}

type Pipeline = {
  device: string
  /** The weight format the shards run in (auto resolved); null on the mesh. */
  weights: string | null
  run(params: Omit<GenerateParameters, 'stages'>): Promise<GenerateResult & { stages: number[][] }>
  close(): Promise<void>
}

/** The shards in this process. */
async function localPipeline(opts: GenerateOptions, source: ModelSource): Promise<Pipeline> {
  const ranges = opts.stages ? parseStages(opts.stages) : undefined
  const bar = progressBar(`loading ${source.name}`)
  const { shards, weights } = await loadShards({ source, runtime: nodeRuntime(), ranges, requireCoverage: true, device: opts.device, weights: opts.weights, cache: shardCacheFromEnv(), onProgress: bar.update })
  bar.done()
  return {
    device: shards[0]!.device,
    weights,
    run: async (params) => ({ ...(await generate({ ...params, stages: shards })), stages: shards.map((s) => [s.range.start, s.range.end]) }),
    close: async () => {
      await Promise.all(shards.map((s) => s.dispose()))
    },
  }
}

/** Node hosts on the mesh: this process is an origin only. */
async function meshPipeline(opts: GenerateOptions, source: ModelSource, numLayers: number, hiddenSize: number): Promise<Pipeline> {
  if (opts.logitsOut) throw new UsageError('--logits-out needs the shards in this process; it cannot be used with --peer')
  const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
  const mesh = await createMeshPeer({ node, model: source.name, numLayers, hiddenSize, bootstrap: opts.peer })
  await mesh.refresh()
  const byId = () => new Map(mesh.table.peers().map((p) => [p.peerId, p]))
  return {
    device: 'mesh',
    weights: null,
    run: async (params) => {
      const r = await mesh.generate(params)
      const known = byId()
      return { ...r, stages: r.routes.at(-1)!.map((id) => [known.get(id)?.start ?? -1, known.get(id)?.end ?? -1]) }
    },
    close: async () => {
      await node.stop()
    },
  }
}

/** Runs the prompt through the shards (in this process, or on peers), prints text or JSON. */
export async function runGenerate(opts: GenerateOptions, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const source = resolveModelSource(opts.model)
  const t0 = performance.now()
  const spec = parseModelConfig(await source.readText('config.json'))
  const tokenizer = await loadTokenizer(source)
  const pipeline = opts.peer.length ? await meshPipeline(opts, source, spec.numLayers, spec.hiddenSize) : await localPipeline(opts, source)
  try {
    const loadMs = performance.now() - t0
    const inputIds = tokenizer.encode(opts.prompt)
    if (inputIds.length === 0) throw new UsageError('--prompt encodes to no tokens')
    let streamed = ''
    const soFar: number[] = []
    const result = await pipeline.run({
      inputIds,
      maxNewTokens: opts.maxNewTokens,
      sampling: { temperature: opts.temperature, topK: opts.topK, topP: opts.topP, repetitionPenalty: opts.repetitionPenalty, seed: opts.seed },
      eosTokenIds: spec.eosTokenIds,
      keepLogits: opts.logitsOut !== undefined,
      onToken: opts.json
        ? undefined
        : (id) => {
            // Decode the whole continuation each time so multi-byte characters come out whole.
            soFar.push(id)
            const text = tokenizer.decode(soFar)
            if (!text.endsWith('\uFFFD')) {
              out.write(text.slice(streamed.length))
              streamed = text
            }
          },
    })
    const ids = result.outputIds
    const text = tokenizer.decode(ids)
    if (opts.logitsOut) await writeLogits(opts.logitsOut, result.prefillLogits!, result.decodeLogits!, inputIds.length, spec.vocabSize)
    const summary = {
      model: source.name,
      device: pipeline.device,
      // ONNX Runtime threads of this process's shards (none with --peer).
      threads: opts.peer.length ? null : engineThreads(),
      weights: pipeline.weights,
      stages: result.stages,
      input_ids: inputIds,
      output_ids: ids,
      text,
      timings: { load_ms: round(loadMs), prefill_ms: round(result.prefillMs), decode_ms_per_token: round(result.decodeMsPerToken) },
    }
    if (opts.json) {
      out.write(`${JSON.stringify(summary)}\n`)
    } else {
      out.write(`${text.slice(streamed.length)}\n`)
      process.stderr.write(
        `[${summary.device}, stages ${summary.stages.map(([a, b]) => `${a}-${b}`).join(',')}] load ${summary.timings.load_ms} ms, ` +
          `prefill ${summary.timings.prefill_ms} ms (${inputIds.length} tokens), decode ${summary.timings.decode_ms_per_token} ms/token\n`,
      )
    }
  } finally {
    await pipeline.close()
  }
}
const round = (x: number) => Math.round(x * 100) / 100

async function writeLogits(path: string, prefill: Float32Array, decode: Float32Array[], T: number, V: number): Promise<void> {
  const decodeAll = new Float32Array(decode.length * V)
  decode.forEach((row, i) => decodeAll.set(row, i * V))
  const pieces = encodeSafetensors({
    logits: { dtype: 'F32', shape: [T, V], data: prefill },
    decode_logits: { dtype: 'F32', shape: [decode.length, V], data: decodeAll },
  })
  const file = await open(path, 'w')
  try {
    for (const p of pieces) await file.write(p)
  } finally {
    await file.close()
  }
}
