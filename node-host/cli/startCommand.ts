import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { WEIGHT_FORMATS, type WeightFormat } from '../../shared/model/shardGraph.ts'
import { pickWeightFormat } from '../../shared/engine/pickWeightFormat.ts'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { parseStages } from '../../shared/engine/loadShards.ts'
import { chainAgentFromEnv, NO_COUNTERS } from '../agent/chainAgentFromEnv.ts'
import { openEarningsStore } from '../agent/earningsStore.ts'
import { createGpuTelemetry } from '../agent/gpuTelemetry.ts'
import { runOracleAgent } from '../agent/runOracleAgent.ts'
import { earningsFile } from './earningsCommand.ts'
import { createNodeHost, type NodeHost, type NodeHostInit } from '../host/createNodeHost.ts'
import { createLogger, type Logger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { loadOrCreateIdentity } from '../identity/fileIdentity.ts'
import { lockIdentity } from '../identity/identityLock.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import type { PlumiseServer } from '../plumise/plumiseServer.ts'
import { startPlumiseGrpc } from '../plumise/startPlumiseGrpc.ts'
import { runPlumiseStart } from '../plumise/runPlumiseStart.ts'
import { createPlumiseShardSession } from '../plumise/plumiseShardSession.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { UsageError, parseOptions } from './usageError.ts'

export const START_USAGE = `usage: shardmesh start [--model <folder|url|owner/name>] (--layers <a-b> | --oracle <url>) [--device auto|webgpu|cpu|wasm]
       [--weights auto|float32|float16|int4|int4-f16] [--memory-mb <n>] [--heartbeat-s 30] [--listen <multiaddr>]… [--peer <multiaddr>]… [--api-port <port>]
       [--host 127.0.0.1] [--identity <file>] [--grpc-port <port> [--grpc-next <url>]...] [--grpc-via <url> [--grpc-via-dtype bfloat16]]
       shardmesh start --plumise [--model …] [--oracle <url>] [--host 0.0.0.0]: a drop-in for the upstream Plumise
       agent, configured by its .env names (MODEL_NAME, DEVICE, GRPC_PORT, API_PORT, LAYER_START/LAYER_END,
       ORACLE_API_URL, PLUMISE_PRIVATE_KEY, PUBLIC_HOST, …): registers with the Plumise Oracle and serves over gRPC.
       --grpc-port also serves the Plumise gRPC InferencePipeline for the range; --grpc-next names the next
       node(s) of the Plumise chain (a middle node forwards to the first; the rest go into stream metadata).
       --grpc-via: serve the --layers range in the mesh through the Plumise node at <url> over gRPC (a middle
       range; no weights loaded here): a route may then mix libp2p hops and a gRPC hop. --grpc-via-dtype is the
       dtype that node computes in (upstream: bfloat16).
       --oracle: the Oracle assigns the layer range (and moves it as peers come and go); --memory-mb caps
       the memory offered for weights (default: 80% of free RAM on cpu, the GPU's VRAM on webgpu).
       With a wallet (PLUMISE_PRIVATE_KEY, or PLUMISE_KEYSTORE + PLUMISE_KEYSTORE_PASSWORD) the host registers on
       chain (PLUMISE_CHAIN_ID, PLUMISE_RPC_URL, SHARDMESH_DEVNET_FILE), proves its generations, reports metrics to
       the Oracle (--oracle or ORACLE_API_URL) every REPORT_INTERVAL s and claims above CLAIM_THRESHOLD_WEI.`

const optionsSchema = z.object({
  model: z.string().optional(),
  layers: z.string().optional(),
  oracle: z.url({ protocol: /^https?$/, error: '--oracle must be an http(s) URL' }).optional(),
  memoryMb: z.coerce.number().int().positive().optional(),
  heartbeatS: z.coerce.number().positive().default(30),
  device: z.enum(['auto', 'webgpu', 'cpu', 'wasm']).default('auto'),
  weights: z.enum([...WEIGHT_FORMATS, 'auto']).default('auto'),
  listen: z.array(z.string()).default([]),
  peer: z.array(z.string()).default([]),
  apiPort: z.coerce.number().int().min(0).max(65535).optional(),
  host: z.string().default('127.0.0.1'),
  plumise: z.boolean().default(false),
  grpcPort: z.coerce.number().int().min(0).max(65535).optional(),
  grpcNext: z.array(z.url({ protocol: /^https?$/, error: '--grpc-next must be an http(s) URL' })).default([]),
  grpcVia: z.url({ protocol: /^https?$/, error: '--grpc-via must be an http(s) URL' }).optional(),
  grpcViaDtype: z.enum(['float32', 'float16', 'bfloat16']).default('bfloat16'),
  identity: z.string().default(join(process.env.SHARDMESH_HOME ?? join(homedir(), '.shardmesh'), 'identity.key')),
})

export type StartOptions = z.infer<typeof optionsSchema>
/** Options with `--weights auto` resolved for this machine's adapter. */
export type ResolvedStartOptions = StartOptions & { weights: WeightFormat }

export function parseStartArgs(argv: string[]): StartOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      layers: { type: 'string' },
      oracle: { type: 'string' },
      'memory-mb': { type: 'string' },
      'heartbeat-s': { type: 'string' },
      device: { type: 'string' },
      weights: { type: 'string' },
      listen: { type: 'string', multiple: true },
      peer: { type: 'string', multiple: true },
      'api-port': { type: 'string' },
      host: { type: 'string' },
      identity: { type: 'string' },
      plumise: { type: 'boolean' },
      'grpc-port': { type: 'string' },
      'grpc-next': { type: 'string', multiple: true },
      'grpc-via': { type: 'string' },
      'grpc-via-dtype': { type: 'string' },
    },
    strict: true,
  })
  const opts = parseOptions(optionsSchema, { ...values, apiPort: values['api-port'], memoryMb: values['memory-mb'], heartbeatS: values['heartbeat-s'], grpcPort: values['grpc-port'], grpcNext: values['grpc-next'], grpcVia: values['grpc-via'], grpcViaDtype: values['grpc-via-dtype'] })
  if (opts.plumise) {
    if (opts.layers || opts.grpcPort !== undefined || opts.grpcVia !== undefined) throw new UsageError('--plumise takes its range and ports from the Oracle or LAYER_START/LAYER_END, GRPC_PORT, API_PORT')
    return opts
  }
  if (!opts.layers && !opts.oracle) throw new UsageError('--layers or --oracle is required (e.g. --layers 0-4)')
  if (opts.layers && opts.oracle) throw new UsageError('--layers and --oracle exclude each other: the Oracle assigns the range')
  if (opts.grpcPort !== undefined && opts.oracle) throw new UsageError('--grpc-port is served with --layers (not yet with --oracle)')
  if (opts.grpcNext.length && opts.grpcPort === undefined) throw new UsageError('--grpc-next needs --grpc-port')
  if (opts.grpcVia !== undefined && (opts.oracle || opts.grpcPort !== undefined)) throw new UsageError('--grpc-via relays a --layers range to a Plumise node (not with --oracle or --grpc-port)')
  return opts
}

/**
 * A node host: loads its layer range, joins the mesh over libp2p, serves sessions of the
 * forward protocol; with --api-port it is also an origin with the Plumise and OpenAI HTTP APIs.
 */
export async function runStart(input: StartOptions): Promise<void> {
  const opts: ResolvedStartOptions = { ...input, weights: await pickWeightFormat(input.weights, nodeRuntime(), input.device) }
  const logger = createLogger('shardmesh:host')
  // One process per identity: a second host on this machine without its own --identity is refused here.
  await lockIdentity(opts.identity)
  if (opts.plumise) {
    // DEVICE from the environment applies unless --device names one
    const device = opts.device === 'auto' ? undefined : opts.device
    const p = await runPlumiseStart({ model: opts.model, oracle: opts.oracle, host: opts.host, listen: opts.listen, privateKey: await loadOrCreateIdentity(opts.identity), weights: opts.weights, device, logger })
    return stopOnSignals(logger, p.stop)
  }
  if (opts.oracle) return runStartWithOracle(opts, opts.oracle, logger)
  const source = resolveModelSource(opts.model)
  const [range] = parseStages(opts.layers!)
  if (!range) throw new UsageError('--layers: expected <start>-<end>')
  const privateKey = await loadOrCreateIdentity(opts.identity)
  const node = await createNodeLibp2p({ privateKey, listen: opts.listen.length ? opts.listen : undefined })
  const log = logger.child({ peerId: node.peerId.toString() })
  log.info({ multiaddrs: node.getMultiaddrs().map(String), model: source.name, layers: `${range.start}-${range.end}` }, 'libp2p started; loading the shard')
  let host: NodeHost | undefined
  const chain = await chainAgentFromEnv({ peer: { peerId: node.peerId.toString(), privateKey }, model: source.name, stats: () => host?.counters() ?? NO_COUNTERS, logger: log })
  // GPU readings for /metrics (the Oracle-run host sends them in heartbeats too).
  const telemetry = createGpuTelemetry()
  telemetry.start()
  host = await createNodeHost({ node, source, device: opts.device, weights: opts.weights, bootstrap: opts.peer, apiPort: opts.apiPort, apiHost: opts.host, logger: log, onGenerated: chain && ((g) => chain.recordGeneration(g)), gpus: () => telemetry.latest(), energyKwh: () => telemetry.totalEnergyKwh(), loadShard: grpcViaShard(opts, source), verification: { signer: { peerId: node.peerId.toString(), sign: (d) => privateKey.sign(d) } } })
  void chain?.start()
  const grpc = await startGrpcIfAsked(opts, source, host, chain?.address ?? node.peerId.toString(), log)
  stopOnSignals(log, async () => {
    telemetry.stop()
    await chain?.stop()
    await grpc?.close()
    await host.stop()
  })
  await host.serve(range)
}

/** `--grpc-via`: the range's shard is the Plumise node at that URL, reached over gRPC. */
function grpcViaShard(opts: StartOptions, source: ModelSource): NodeHostInit['loadShard'] {
  const endpoint = opts.grpcVia
  if (endpoint === undefined) return undefined
  return async (range) => createPlumiseShardSession({ endpoint, spec: parseModelConfig(await source.readText('config.json')), range, model: source.name, dtype: opts.grpcViaDtype })
}

/** `--grpc-port`: the Plumise gRPC pipeline beside the libp2p host, serving whatever range the host serves. */
async function startGrpcIfAsked(opts: StartOptions, source: ModelSource, host: NodeHost, address: string, log: Logger): Promise<PlumiseServer | undefined> {
  if (opts.grpcPort === undefined) return undefined
  return startPlumiseGrpc({
    source,
    shard: () => host.service.shard(),
    eosTokenIds: host.spec.eosTokenIds,
    address,
    port: opts.grpcPort,
    host: opts.host,
    next: () => opts.grpcNext[0],
    after: () => opts.grpcNext.slice(1),
    logger: log,
  })
}

async function runStartWithOracle(opts: ResolvedStartOptions, oracle: string, logger: Logger): Promise<void> {
  const privateKey = await loadOrCreateIdentity(opts.identity)
  const node = await createNodeLibp2p({ privateKey, listen: opts.listen.length ? opts.listen : undefined })
  const log = logger.child({ peerId: node.peerId.toString() })
  log.info({ multiaddrs: node.getMultiaddrs().map(String), oracle }, 'libp2p started; asking the oracle for a layer range')
  let hostOf: () => NodeHost | undefined = () => undefined
  const model = opts.model ? resolveModelSource(opts.model).name : undefined
  const chain = await chainAgentFromEnv({ oracleUrl: oracle, peer: { peerId: node.peerId.toString(), privateKey }, model, stats: () => hostOf()?.counters() ?? NO_COUNTERS, logger: log })
  // Earnings live beside the identity (the host's data folder), where `shardmesh earnings` reads them.
  const earnings = await openEarningsStore(earningsFile(dirname(opts.identity)))
  const agent = await runOracleAgent({ earnings, oracle, node, privateKey, model: opts.model, device: opts.device, weights: opts.weights, memoryMb: opts.memoryMb, heartbeatIntervalMs: opts.heartbeatS * 1000, bootstrap: opts.peer, apiPort: opts.apiPort, apiHost: opts.host, logger: log, onGenerated: chain && ((g) => chain.recordGeneration(g)) })
  hostOf = agent.host
  void chain?.start()
  stopOnSignals(log, async () => {
    await chain?.stop()
    await agent.stop()
  })
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
