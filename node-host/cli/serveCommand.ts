import { WEIGHT_FORMATS } from '../../shared/model/shardGraph.ts'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { loadShards, parseStages } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createTextGenerator, stagesRunner, type TextGenerator } from '../../shared/engine/textGenerator.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { loadTokenizer, readTokenizerConfig } from '../../shared/model/tokenizer.ts'
import { createHttpApi } from '../api/httpApi.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { shardCacheFromEnv } from '../engine/fileShardCache.ts'
import { createLogger } from '../logger.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { parseOptions } from './usageError.ts'

export const SERVE_USAGE = `usage: shardmesh serve [--model <folder|url|owner/name>] [--stages 0-3,3-8] [--device auto|webgpu|cpu|wasm] [--weights auto|float32|float16|int4|int4-f16]
       [--api-port 31331] [--host 127.0.0.1]      (API_SECRET in the environment requires a bearer token)`

const optionsSchema = z.object({
  model: z.string().optional(),
  stages: z.string().optional(),
  device: z.enum(['auto', 'webgpu', 'cpu', 'wasm']).default('auto'),
  weights: z.enum([...WEIGHT_FORMATS, 'auto']).default('auto'),
  apiPort: z.coerce.number().int().min(0).max(65535).default(Number(process.env.API_PORT ?? 31331)),
  host: z.string().default('127.0.0.1'),
})

export type ServeOptions = z.infer<typeof optionsSchema>

export function parseServeArgs(argv: string[]): ServeOptions {
  const { values } = parseArgs({
    args: argv,
    options: { model: { type: 'string' }, stages: { type: 'string' }, device: { type: 'string' }, weights: { type: 'string' }, 'api-port': { type: 'string' }, host: { type: 'string' } },
    strict: true,
  })
  return parseOptions(optionsSchema, { ...values, apiPort: values['api-port'] })
}

/**
 * Serves a model over the Plumise agent API and the OpenAI API, its shards run in this process.
 * Listens at once (health says "loading"), loads, then answers; stops cleanly on SIGINT/SIGTERM.
 */
export async function runServe(opts: ServeOptions): Promise<void> {
  const logger = createLogger('shardmesh:serve')
  const source = resolveModelSource(opts.model)
  const spec = parseModelConfig(await source.readText('config.json'))
  const ranges = opts.stages ? parseStages(opts.stages) : [{ start: 0, end: spec.numLayers }]
  const tokenizerConfig = await readTokenizerConfig(source)
  let generator: TextGenerator | null = null
  let shards: ShardSession[] = []
  const api = createHttpApi(
    { model: source.name, address: 'local', layers: { start: 0, end: spec.numLayers, total: spec.numLayers }, apiSecret: process.env.API_SECRET, tokenizerConfig },
    { logger, generator: () => generator },
  )
  const server = createServer(api)
  answerClientErrors(server, logger)
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(opts.apiPort, opts.host, resolve))
  const { port } = server.address() as AddressInfo
  logger.info({ port, model: source.name }, 'HTTP API listening; loading the model')

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down')
    server.closeIdleConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await Promise.all(shards.map((s) => s.dispose()))
    process.exit(0)
  }
  process.once('SIGINT', () => void stop('SIGINT'))
  process.once('SIGTERM', () => void stop('SIGTERM'))

  const tokenizer = await loadTokenizer(source)
  const loaded = await loadShards({ source, runtime: nodeRuntime(), ranges, requireCoverage: true, device: opts.device, weights: opts.weights, cache: shardCacheFromEnv() })
  shards = loaded.shards
  generator = createTextGenerator({ tokenizer, run: stagesRunner(() => shards), eosTokenIds: spec.eosTokenIds })
  const url = `http://${opts.host}:${port}`
  logger.info({ url, device: shards[0]!.device, stages: ranges.map((r) => `${r.start}-${r.end}`).join(',') }, 'ready')
  process.stdout.write(
    `\nshardmesh is serving ${source.name} (${shards.length} shard${shards.length > 1 ? 's' : ''} on ${shards[0]!.device}) at ${url}\n` +
      `try:\n  curl -s ${url}/v1/completions -H 'Content-Type: application/json' -d '{"prompt": "The pipeline splits the model into layer ranges and", "max_tokens": 32, "temperature": 0}'\n` +
      `  curl -sN ${url}/api/v1/generate -H 'Content-Type: application/json' -d '{"inputs": "def forward(self, x):", "parameters": {"max_new_tokens": 40}, "stream": true}'\n` +
      `Ctrl-C stops it.\n\n`,
  )
}
