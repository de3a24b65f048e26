import type { WeightFormat } from '../../shared/model/shardGraph.ts'
import type { PrivateKey } from '@libp2p/interface'
import { networkInterfaces } from 'node:os'
import { chainAgentFromEnv } from '../agent/chainAgentFromEnv.ts'
import { readHardwareProfile } from '../agent/hardwareProfile.ts'
import { loadWallet } from '../chain/loadWallet.ts'
import { createNodeHost, type HostCounters } from '../host/createNodeHost.ts'
import type { Logger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { createPlumiseOracleClient } from '../../shared/oracle/plumiseOracleClient.ts'
import { loadPlumiseEnv, plumiseDevice } from './plumiseEnv.ts'
import { runPlumiseAgent, type PlumiseAgent } from './runPlumiseAgent.ts'

export type PlumiseStartOptions = {
  /** `--model`; else MODEL_NAME; else the bundled model. */
  model?: string
  /** `--oracle`; else ORACLE_API_URL. */
  oracle?: string
  /** Bind address of the gRPC server and HTTP API (`--host`). */
  host: string
  listen: string[]
  privateKey: PrivateKey
  weights: WeightFormat
  /** `--device` when given explicitly; else DEVICE. */
  device?: 'auto' | 'webgpu' | 'cpu' | 'wasm'
  logger: Logger
}

const MB = 1024 * 1024

/** The first external IPv4 address: what to register when bound to every interface. */
function externalIpv4(): string {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  return '127.0.0.1'
}

/**
 * `shardmesh start --plumise`: a drop-in for the upstream Python agent, configured by its `.env`
 * names. Registers with the Plumise Oracle, serves the assigned range over gRPC (GRPC_PORT) and
 * the agent HTTP API (API_PORT), and also joins the libp2p mesh; metrics, proofs and claims as
 * a chain agent does.
 */
export async function runPlumiseStart(opts: PlumiseStartOptions): Promise<{ agent: PlumiseAgent; stop(): Promise<void> }> {
  const env = loadPlumiseEnv()
  const oracleUrl = opts.oracle ?? env.ORACLE_API_URL
  const account = await loadWallet()
  const source = resolveModelSource(opts.model ?? env.MODEL_NAME)
  const device = opts.device ?? plumiseDevice(env.DEVICE)
  const node = await createNodeLibp2p({ privateKey: opts.privateKey, listen: opts.listen.length ? opts.listen : undefined })
  const log = opts.logger.child({ wallet: account.address, peerId: node.peerId.toString() })
  log.info({ oracle: oracleUrl, model: source.name, grpcPort: env.GRPC_PORT, apiPort: env.API_PORT }, 'plumise: starting')
  let agent: PlumiseAgent | undefined
  // /api/v1/pipeline/status reports the Plumise pipeline: real endpoints and readiness from the Oracle
  const pipelineTopology = () =>
    agent?.topology().map((n) => ({ address: n.nodeAddress, multiaddrs: [], layerStart: n.layerStart, layerEnd: n.layerEnd, grpcEndpoint: n.grpcEndpoint, httpEndpoint: n.httpEndpoint, ready: n.ready }))
  const host = await createNodeHost({ node, source, device, weights: opts.weights, bootstrap: [], apiPort: env.API_PORT, apiHost: opts.host, logger: log, pipelineTopology })
  const counters = (): HostCounters => {
    const h = host.counters()
    const g = agent?.grpc.counters() ?? { tokens: 0, requests: 0, computeMs: 0 }
    return { tokensProcessed: h.tokensProcessed + g.tokens, requestCount: h.requestCount + g.requests, totalLatencyMs: h.totalLatencyMs + g.computeMs }
  }
  const chain = await chainAgentFromEnv({ oracleUrl, peer: { peerId: node.peerId.toString(), privateKey: opts.privateKey }, model: source.name, stats: counters, logger: log })
  const profile = await readHardwareProfile()
  try {
    agent = await runPlumiseAgent({
      oracle: createPlumiseOracleClient({ baseUrl: oracleUrl, account }),
      oracleUrl,
      host,
      source,
      grpcPort: env.GRPC_PORT,
      bindHost: opts.host,
      advertiseHost: env.PUBLIC_HOST ?? (opts.host === '0.0.0.0' ? externalIpv4() : opts.host),
      apiPort: env.API_PORT,
      layers: env.LAYER_START !== undefined ? { start: env.LAYER_START, end: env.LAYER_END! } : undefined,
      ramMb: Math.floor(profile.ramFreeBytes / MB),
      vramMb: Math.floor(profile.vramBytes / MB),
      device: device === 'webgpu' ? 'cuda' : device === 'auto' ? (profile.vramBytes > 0 ? 'cuda' : 'cpu') : 'cpu',
      peer: { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String) },
      logger: log,
    })
  } catch (e) {
    await host.stop()
    throw e
  }
  void chain?.start()
  const started = agent
  return {
    agent: started,
    async stop() {
      // the chain agent sends the final metrics report (upstream reports at shutdown too)
      await chain?.stop()
      await started.stop()
      await host.stop()
    },
  }
}
