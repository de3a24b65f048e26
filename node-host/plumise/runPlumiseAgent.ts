import type { LayerRange } from '../../shared/model/shardGraph.ts'
import type { PlumiseOracleClient } from '../../shared/oracle/plumiseOracleClient.ts'
import type { NodeHost } from '../host/createNodeHost.ts'
import type { Logger } from '../../shared/logger.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import type { PlumiseServer } from './plumiseServer.ts'
import { chainAfter, fetchPlumiseTopology, type PlumiseTopologyNode } from './plumiseTopology.ts'
import { startPlumiseGrpc } from './startPlumiseGrpc.ts'

export type RunPlumiseAgentInit = {
  oracle: PlumiseOracleClient
  oracleUrl: string
  host: NodeHost
  source: ModelSource
  grpcPort: number
  /** Address the gRPC server binds. @default '0.0.0.0' */
  bindHost?: string
  /** Host name other nodes reach this one at (goes into the registered endpoints). */
  advertiseHost: string
  /** The agent HTTP API's port (registered as `httpEndpoint`). */
  apiPort: number
  /** LAYER_START/LAYER_END: serve this range whatever the Oracle says. */
  layers?: LayerRange
  ramMb: number
  vramMb: number
  device: string
  /** This host's libp2p identity (shardmesh extension of register: our peers can also reach it over libp2p). */
  peer?: { peerId: string; multiaddrs: string[] }
  /** Topology polling. @default 30 s, as upstream */
  pollMs?: number
  logger: Logger
}

/**
 * A host in a Plumise network, in upstream's order: register with the Oracle (signed), load the
 * assigned layers, serve them over gRPC (and the HTTP API), report ready, then poll the topology
 * every 30 s to find the next node (and to follow a range the Oracle moves).
 */
export async function runPlumiseAgent(init: RunPlumiseAgentInit) {
  const { oracle, host, logger: log } = init
  const model = init.source.name
  const numLayers = host.spec.numLayers
  let topology: PlumiseTopologyNode[] = []
  let chain: string[] = []
  let serving: LayerRange | undefined
  let stopped = false

  const grpc: PlumiseServer = await startPlumiseGrpc({
    source: init.source,
    shard: () => host.service.shard(),
    eosTokenIds: host.spec.eosTokenIds,
    address: oracle.address,
    port: init.grpcPort,
    host: init.bindHost ?? '0.0.0.0',
    next: () => chain[0],
    after: () => chain.slice(1),
    logger: log,
  })
  const grpcEndpoint = `http://${init.advertiseHost}:${grpc.port}`
  // A host the Oracle refuses closes what it opened: nothing keeps the process alive.
  const reg = await oracle
    .register({
    grpcEndpoint,
    httpEndpoint: `http://${init.advertiseHost}:${init.apiPort}`,
    model,
    ramMb: init.ramMb,
    vramMb: init.vramMb,
    device: init.device,
    peerId: init.peer?.peerId,
    multiaddrs: init.peer?.multiaddrs,
  })
    .catch(async (e: unknown) => {
      await grpc.close()
      throw e
    })
  log.info({ layers: `${reg.layerStart}-${reg.layerEnd}`, total: reg.totalLayers, grpcEndpoint }, 'plumise: registered with the Oracle')

  async function serve(range: LayerRange): Promise<void> {
    if (serving && serving.start === range.start && serving.end === range.end) return
    log.info({ layers: `${range.start}-${range.end}` }, 'plumise: loading the assigned layers')
    await host.serve(range)
    serving = range
    await oracle.ready({ model })
    log.info({ layers: `${range.start}-${range.end}` }, 'plumise: ready')
  }

  async function refresh(): Promise<void> {
    topology = await fetchPlumiseTopology(init.oracleUrl, model)
    const self = topology.find((n) => n.nodeAddress.toLowerCase() === oracle.address.toLowerCase())
    if (!init.layers && self && self.layerEnd > self.layerStart) await serve({ start: self.layerStart, end: self.layerEnd })
    chain = serving ? chainAfter(topology, serving.end, numLayers, oracle.address) : []
  }

  const initial = init.layers ?? (reg.layerEnd > reg.layerStart ? { start: reg.layerStart, end: reg.layerEnd } : undefined)
  if (initial) await serve(initial)
  await refresh().catch((e: Error) => log.warn({ err: e.message }, 'plumise: topology refresh failed'))
  let timer: NodeJS.Timeout | undefined
  const loop = () => {
    timer = setTimeout(() => {
      void refresh()
        .catch((e: Error) => log.warn({ err: e.message }, 'plumise: topology refresh failed'))
        .finally(() => !stopped && loop())
    }, init.pollMs ?? 30_000)
  }
  loop()

  return {
    grpc,
    grpcEndpoint,
    /** The range served now. */
    range: () => serving,
    /** The Oracle's topology as last read. */
    topology: () => [...topology],
    /** The gRPC endpoints after this node, as last read from the topology. */
    chain: () => [...chain],
    refresh,
    async stop(): Promise<void> {
      stopped = true
      clearTimeout(timer)
      await grpc.close()
    },
  }
}

export type PlumiseAgent = Awaited<ReturnType<typeof runPlumiseAgent>>
