import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { parseStages } from '../../shared/engine/loadShards.ts'
import { createNodeHost } from '../host/createNodeHost.ts'
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
  const [range] = parseStages(opts.layers)
  if (!range) throw new UsageError('--layers: expected <start>-<end>')
  const privateKey = await loadOrCreateIdentity(opts.identity)
  const node = await createNodeLibp2p({ privateKey, listen: opts.listen.length ? opts.listen : undefined })
  const log = logger.child({ peerId: node.peerId.toString() })
  log.info({ multiaddrs: node.getMultiaddrs().map(String), model: source.name, layers: `${range.start}-${range.end}` }, 'libp2p started; loading the shard')
  const host = await createNodeHost({ node, source, device: opts.device, weights: opts.weights, bootstrap: opts.peer, apiPort: opts.apiPort, apiHost: opts.host, logger: log })
  stopOnSignals(log, () => host.stop())
  await host.serve(range)
}

/** Clean shutdown on SIGINT/SIGTERM: peers told, sessions closed, then exit. */
export function stopOnSignals(log: { info(o: object, m: string): void }, stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down: telling peers, closing sessions')
    await stop().catch(() => undefined)
    process.exit(0)
  }
  process.once('SIGINT', () => void onSignal('SIGINT'))
  process.once('SIGTERM', () => void onSignal('SIGTERM'))
}
