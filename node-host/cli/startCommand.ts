import { createServer, type Server } from 'node:http'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { loadShards, parseStages } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createTextGenerator, type TextGenerator } from '../../shared/engine/textGenerator.ts'
import { createForwardService, type ForwardService } from '../../shared/mesh/forwardService.ts'
import { serveInfo } from '../../shared/mesh/infoProtocol.ts'
import { createPeerTable } from '../../shared/mesh/peerTable.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { loadTokenizer, readTokenizerConfig } from '../../shared/model/tokenizer.ts'
import { createHttpApi } from '../api/httpApi.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { createLogger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { loadOrCreateIdentity } from '../mesh/fileIdentity.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { UsageError, parseOptions } from './usageError.ts'

export const START_USAGE = `usage: shardmesh start [--model <folder|url|owner/name>] --layers <a-b> [--device auto|webgpu|cpu|wasm] [--weights float32|int4]
       [--listen <multiaddr>]… [--peer <multiaddr>]… [--api-port <port>] [--host 127.0.0.1] [--identity <file>]`

const optionsSchema = z.object({
  model: z.string().optional(),
  layers: z.string({ error: '--layers is required (e.g. --layers 0-4)' }),
  device: z.enum(['auto', 'webgpu', 'cpu', 'wasm']).default('auto'),
  weights: z.enum(['float32', 'int4']).default('float32'),
  listen: z.array(z.string()).default([]),
  peer: z.array(z.string()).default([]),
  apiPort: z.coerce.number().int().min(0).max(65535).optional(),
  host: z.string().default('127.0.0.1'),
  identity: z.string().default(join(process.env.SHARDMESH_HOME ?? join(homedir(), '.shardmesh'), 'identity.key')),
})

export type StartOptions = z.infer<typeof optionsSchema>

export function parseStartArgs(argv: string[]): StartOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      layers: { type: 'string' },
      device: { type: 'string' },
      weights: { type: 'string' },
      listen: { type: 'string', multiple: true },
      peer: { type: 'string', multiple: true },
      'api-port': { type: 'string' },
      host: { type: 'string' },
      identity: { type: 'string' },
    },
    strict: true,
  })
  return parseOptions(optionsSchema, { ...values, apiPort: values['api-port'] })
}

/**
 * A node host: loads its layer range, joins the mesh over libp2p, serves sessions of the
 * forward protocol; with --api-port it is also an origin with the Plumise and OpenAI HTTP APIs.
 */
export async function runStart(opts: StartOptions): Promise<void> {
  const logger = createLogger('shardmesh:host')
  const source = resolveModelSource(opts.model)
  const spec = parseModelConfig(await source.readText('config.json'))
  const [range] = parseStages(opts.layers)
  if (!range) throw new UsageError('--layers: expected <start>-<end>')
  const privateKey = await loadOrCreateIdentity(opts.identity)
  const node = await createNodeLibp2p({ privateKey, listen: opts.listen.length ? opts.listen : undefined })
  const peerId = node.peerId.toString()
  const log = logger.child({ peerId })
  log.info({ multiaddrs: node.getMultiaddrs().map(String), model: source.name, layers: `${range.start}-${range.end}` }, 'libp2p started; loading the shard')

  let shard: ShardSession | undefined
  let server: Server | undefined
  let generator: TextGenerator | null = null
  let service: ForwardService | undefined
  const self = () => (shard ? { peerId, multiaddrs: node.getMultiaddrs().map(String), start: range.start, end: range.end, latencyMs: 0 } : undefined)
  const table = createPeerTable({ node, model: source.name, bootstrap: opts.peer, self, logger: log })
  await serveInfo(node, () => ({ model: source.name, numLayers: spec.numLayers, range: shard ? range : undefined, known: table.peers().filter((p) => p.peerId !== peerId) }))

  if (opts.apiPort !== undefined) {
    const tokenizerConfig = await readTokenizerConfig(source)
    server = createServer(
      createHttpApi(
        { model: source.name, address: peerId, layers: { ...range, total: spec.numLayers }, apiSecret: process.env.API_SECRET, tokenizerConfig },
        {
          logger: log,
          generator: () => generator,
          topology: () => table.peers().map((p) => ({ address: p.peerId, multiaddrs: p.multiaddrs, layerStart: p.start, layerEnd: p.end })),
        },
      ),
    )
    await new Promise<void>((resolve, reject) => server!.once('error', reject).listen(opts.apiPort, opts.host, resolve))
  }

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down: telling peers, closing sessions')
    table.stop()
    server?.closeIdleConnections()
    server?.close()
    await service?.stop()
    await node.stop()
    await shard?.dispose()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop('SIGINT'))
  process.once('SIGTERM', () => void stop('SIGTERM'))

  const { shards } = await loadShards({ source, runtime: nodeRuntime({ spinning: process.env.SHARDMESH_CPU_SPIN === '1' }), ranges: [range], device: opts.device, weights: opts.weights })
  shard = shards[0]!
  service = createForwardService({ node, model: source.name, hiddenSize: spec.hiddenSize, shard, logger: log })
  await service.start()
  await table.refresh()
  table.start(10_000)
  log.info({ device: shard.device, peers: table.peers().length }, 'serving')

  if (server) {
    const tokenizer = await loadTokenizer(source)
    generator = createTextGenerator({
      tokenizer,
      eosTokenIds: spec.eosTokenIds,
      run: async (params) => {
        // Learn about peers that joined since the last refresh before planning.
        if (table.peers().length < 2) await table.refresh()
        return service!.generate({ ...params, peers: () => table.peers(), numLayers: spec.numLayers, beforeReplan: () => table.refresh() })
      },
    })
    const url = `http://${opts.host}:${(server.address() as { port: number }).port}`
    log.info({ url }, 'HTTP API ready')
  }
}
