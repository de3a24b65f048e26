import { open } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { generate } from '../../shared/engine/generate.ts'
import { loadShards, parseStages } from '../../shared/engine/loadShards.ts'
import { encodeSafetensors } from '../../shared/model/safetensorsWriter.ts'
import { loadTokenizer } from '../../shared/model/tokenizer.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { progressBar } from './progressBar.ts'

export const GENERATE_USAGE = `usage: shardmesh generate [--model <folder|url|owner/name>] --prompt <text> [--max-new-tokens <n>]
       [--stages 0-3,3-8] [--device auto|webgpu|cpu|wasm] [--weights float32|int4] [--temperature 0] [--top-k 0] [--top-p 1]
       [--repetition-penalty 1] [--seed <n>] [--json] [--logits-out <file.safetensors>]`

const optionsSchema = z.object({
  model: z.string().optional(),
  prompt: z.string({ error: '--prompt is required' }),
  maxNewTokens: z.coerce.number().int().min(1).max(4096).default(32),
  stages: z.string().optional(),
  device: z.enum(['auto', 'webgpu', 'cpu', 'wasm']).default('auto'),
  weights: z.enum(['float32', 'int4']).default('float32'),
  temperature: z.coerce.number().min(0).max(2).default(0),
  topK: z.coerce.number().int().min(0).default(0),
  topP: z.coerce.number().gt(0).max(1).default(1),
  repetitionPenalty: z.coerce.number().min(1).max(2).default(1),
  seed: z.coerce.number().int().min(0).default(0),
  json: z.boolean().default(false),
  logitsOut: z.string().optional(),
})

export type GenerateOptions = z.infer<typeof optionsSchema>

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

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
    },
    strict: true,
  })
  const parsed = optionsSchema.safeParse({
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
  })
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const flag = issue.path.map((p) => `--${String(p).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join('')
    throw new UsageError(`${flag}: ${issue.message}`)
  }
  return parsed.data
}

/** Loads the shards in one process, runs the prompt through them, prints text or JSON. */
export async function runGenerate(opts: GenerateOptions, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const source = resolveModelSource(opts.model)
  const t0 = performance.now()
  const tokenizer = await loadTokenizer(source)
  const ranges = opts.stages ? parseStages(opts.stages) : undefined
  const bar = progressBar(`loading ${source.name}`)
  const { spec, shards } = await loadShards({ source, runtime: nodeRuntime(), ranges, requireCoverage: true, device: opts.device, weights: opts.weights, onProgress: bar.update })
  bar.done()
  try {
    const loadMs = performance.now() - t0
    const inputIds = tokenizer.encode(opts.prompt)
    if (inputIds.length === 0) throw new UsageError('--prompt encodes to no tokens')
    let streamed = ''
    const soFar: number[] = []
    const result = await generate({
      stages: shards,
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
      device: shards[0]!.device,
      weights: opts.weights,
      stages: shards.map((s) => [s.range.start, s.range.end]),
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
    await Promise.all(shards.map((s) => s.dispose()))
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
