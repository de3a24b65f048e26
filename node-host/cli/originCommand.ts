import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { createNodeHost } from '../host/createNodeHost.ts'
import { createLogger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { loadOrCreateIdentity } from '../identity/fileIdentity.ts'
import { lockIdentity } from '../identity/identityLock.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { oracleTopologyAddresses } from '../mesh/oracleTopologyAddresses.ts'
import { stopOnSignals } from './startCommand.ts'
import { parseOptions } from './usageError.ts'

export const ORIGIN_USAGE = `usage: shardmesh origin --oracle <url> [--model <folder|url|owner/name>] [--api-port 31331] [--host 127.0.0.1]
       [--listen <multiaddr>]… [--identity ~/.shardmesh/origin.key]
       An origin that holds no layers: the Plumise and OpenAI HTTP APIs at --api-port, each request routed over
       the peers in the Oracle's topology (node hosts and pages), and a circuit relay that pages reserve a slot
       on (its /ws address is printed: give it to \`shardmesh app --relay\` or \`shardmesh farm --relay\`). For a
       network whose layers are all served by pages.`

const optionsSchema = z.object({
  oracle: z.url({ protocol: /^https?$/, error: '--oracle must be an http(s) URL' }),
  model: z.string().optional(),
  apiPort: z.coerce.number().int().min(0).max(65535).default(31331),
  host: z.string().default('127.0.0.1'),
  listen: z.array(z.string()).default([]),
  identity: z.string().default(join(process.env.SHARDMESH_HOME ?? join(homedir(), '.shardmesh'), 'origin.key')),
})

export type OriginOptions = z.infer<typeof optionsSchema>

export function parseOriginArgs(argv: string[]): OriginOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      oracle: { type: 'string' },
      model: { type: 'string' },
      'api-port': { type: 'string' },
      host: { type: 'string' },
      listen: { type: 'string', multiple: true },
      identity: { type: 'string' },
    },
    strict: true,
  })
  return parseOptions(optionsSchema, { ...values, oracle: values.oracle ?? process.env.ORACLE_URL, apiPort: values['api-port'] })
}

/**
 * An origin-only node host: libp2p (with its relay server), the mesh peer without a shard, and the
 * HTTP API, answering as soon as it is up: routes are planned from the peers the Oracle lists.
 */
export async function runOrigin(opts: OriginOptions): Promise<void> {
  const logger = createLogger('shardmesh:origin')
  await lockIdentity(opts.identity)
  const source = resolveModelSource(opts.model)
  const privateKey = await loadOrCreateIdentity(opts.identity)
  const node = await createNodeLibp2p({ privateKey, listen: opts.listen.length ? opts.listen : ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'] })
  const log = logger.child({ peerId: node.peerId.toString() })
  const host = await createNodeHost({
    node,
    source,
    // No shard is loaded here: the device and weights only name what the mesh peer reports.
    device: 'cpu',
    weights: 'float32',
    bootstrap: [],
    discover: oracleTopologyAddresses({ oracle: opts.oracle, model: source.name, self: node.peerId.toString() }),
    apiPort: opts.apiPort,
    apiHost: opts.host,
    logger: log,
    verification: { signer: { peerId: node.peerId.toString(), sign: (d) => privateKey.sign(d) }, oracle: opts.oracle },
  })
  host.markOriginReady()
  const relays = node.getMultiaddrs().map(String).filter((a) => a.includes('/ws'))
  log.info({ api: host.apiUrl(), relays, model: source.name, oracle: opts.oracle }, 'origin ready: no layers here; routes over the peers the Oracle lists')
  stopOnSignals(log, () => host.stop())
}
