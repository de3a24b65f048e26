import { createServer, type Server } from 'node:http'
import type { Libp2p } from 'libp2p'
import { loadShards } from '../../shared/engine/loadShards.ts'
import type { DeviceOption } from '../../shared/engine/runtime.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createTextGenerator, type TextGenerator } from '../../shared/engine/textGenerator.ts'
import { createForwardService } from '../../shared/mesh/forwardService.ts'
import { INFO_PROTOCOL, serveInfo } from '../../shared/mesh/infoProtocol.ts'
import { createPeerTable } from '../../shared/mesh/peerTable.ts'
import { NoRouteError, planRoute, type PeerShard } from '../../shared/mesh/planRoute.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import { parseModelConfig, type ModelSpec } from '../../shared/model/modelSpec.ts'
import type { LayerRange, WeightFormat } from '../../shared/model/shardGraph.ts'
import { loadTokenizer, readTokenizerConfig } from '../../shared/model/tokenizer.ts'
import type { Logger } from '../logger.ts'
import { createHttpApi } from '../api/httpApi.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import type { GpuReading } from '../agent/gpuTelemetry.ts'
import { createHostMetrics } from '../metrics/hostMetrics.ts'

const hasRoute = (peers: PeerShard[], numLayers: number) => {
  try {
    planRoute(peers, numLayers)
    return true
  } catch {
    return false
  }
}

export type NodeHostInit = {
  node: Libp2p
  source: ModelSource
  device: DeviceOption
  weights: WeightFormat
  /** Addresses of peers to ask first (`--peer`). */
  bootstrap: string[]
  /** More peers to ask on each refresh (the oracle's topology). */
  discover?: () => Promise<string[]>
  /** Serve the Plumise and OpenAI HTTP APIs (this host is an origin) on this port. */
  apiPort?: number
  apiHost?: string
  logger: Logger
  /** The pipeline /api/v1/pipeline/status reports (Plumise mode: the Oracle's topology); the libp2p peers when absent. */
  pipelineTopology?: () => Array<{ address: string; multiaddrs: string[]; layerStart: number; layerEnd: number; grpcEndpoint?: string; httpEndpoint?: string; ready?: boolean }> | undefined
  /**
   * How long a generation at this origin waits for a route when none covers the layers (a lost
   * last copy being repaired: reassigned, loaded), before it fails with NoRouteError (HTTP 503). @default 20_000
   */
  routeWaitMs?: number
  /** Told of each generation this host originated (its HTTP API): what an inference proof is made of. */
  onGenerated?: (generation: HostGeneration) => void
  /** Live GPU readings for /metrics (null: unknown). */
  gpus?: () => GpuReading[] | null
  /** Energy the GPUs drew since start, kWh, for /metrics (null: unknown). */
  energyKwh?: () => number | null
}

/** One finished generation at this origin: the real prompt and generated text. */
export type HostGeneration = { model: string; prompt: string; text: string; tokenCount: number }

/** Served-work counters, cumulative since start: what metrics reports and proofs are made of. */
export type HostCounters = { tokensProcessed: number; requestCount: number; totalLatencyMs: number }

/** Generation requests that wait (fairly, per client) for one of the API's slots before 429 says the network is saturated. */
const API_QUEUE = 32

/**
 * A node host for one model: the libp2p forward protocol and the info protocol, a layer range
 * that can be (re)assigned while it runs, and optionally the HTTP APIs as an origin.
 */
export async function createNodeHost(init: NodeHostInit) {
  const { node, source, logger: log } = init
  const spec: ModelSpec = parseModelConfig(await source.readText('config.json'))
  const peerId = node.peerId.toString()
  let range: LayerRange | undefined
  let loading: LayerRange | undefined
  const self = () => (range && service.shard() ? { peerId, multiaddrs: node.getMultiaddrs().map(String), start: range.start, end: range.end, latencyMs: 0 } : undefined)
  const table = createPeerTable({ node, model: source.name, bootstrap: init.bootstrap, discover: init.discover, self, logger: log })
  const service = createForwardService({ node, model: source.name, hiddenSize: spec.hiddenSize, logger: log })
  await service.start()
  await serveInfo(node, () => ({ model: source.name, numLayers: spec.numLayers, range: service.shard() ? range : undefined, known: table.peers().filter((p) => p.peerId !== peerId), load: service.load() }), log)
  table.start(10_000)

  const routeWaitMs = init.routeWaitMs ?? 20_000
  // Every waiting generation shares one refresh in flight, so a burst of requests asks each peer once.
  let refreshing: Promise<void> | undefined
  const refreshOnce = () => (refreshing ??= table.refresh().finally(() => (refreshing = undefined)))
  /** Polls what is known of the peers until `routable()` or the deadline (then NoRouteError). */
  const waitForRoute = async (routable: () => boolean, deadline: number, signal?: AbortSignal) => {
    log.info({ waitS: Math.max(0, Math.round((deadline - Date.now()) / 1000)) }, 'no route covers the layers: waiting for a repair')
    for (;;) {
      await refreshOnce().catch(() => undefined)
      if (routable()) return
      signal?.throwIfAborted()
      if (Date.now() >= deadline) {
        throw new NoRouteError(`no route covers layers [0, ${spec.numLayers}) after waiting ${Math.round(routeWaitMs / 1000)} s for a repair (peers: ${table.peers().map((p) => `${p.start}-${p.end}`).join(', ') || 'none'})`)
      }
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))))
    }
  }
  const metrics = createHostMetrics({
    shard: () => (service.shard() ? service.stats() : undefined),
    kvBytes: () => service.shard()?.kvBytes(),
    layers: () => (service.shard() ? range : undefined),
    gpus: init.gpus,
    energyKwh: init.energyKwh,
  })
  let server: Server | undefined
  let generator: TextGenerator | null = null
  /** The HTTP API reports "loading" until this host serves its first range (or is told to go on without one). */
  let originReady = false
  // A setup that fails half way (a port in use, an unreadable tokenizer) undoes itself, so it can be tried again.
  try {
    if (init.apiPort !== undefined) {
      const tokenizerConfig = await readTokenizerConfig(source)
      server = createServer(
        createHttpApi(
          { model: source.name, address: peerId, layers: () => ({ start: range?.start ?? 0, end: range?.end ?? 0, total: spec.numLayers }), apiSecret: process.env.API_SECRET, tokenizerConfig, maxQueuedGenerations: API_QUEUE },
          {
            logger: log,
            generator: () => (originReady ? generator : null),
            topology: () => init.pipelineTopology?.() ?? table.peers().map((p) => ({ address: p.peerId, multiaddrs: p.multiaddrs, layerStart: p.start, layerEnd: p.end })),
            metrics,
          },
        ),
      )
      answerClientErrors(server, log)
      await new Promise<void>((resolve, reject) => server!.once('error', reject).listen(init.apiPort, init.apiHost ?? '127.0.0.1', resolve))
      const tokenizer = await loadTokenizer(source)
      generator = createTextGenerator({
        tokenizer,
        eosTokenIds: spec.eosTokenIds,
        onGenerated: init.onGenerated && ((req, r) => init.onGenerated!({ model: source.name, prompt: req.prompt, text: r.text, tokenCount: r.outputIds.length })),
        run: async (params) => {
          // Learn about peers that joined (or were moved) since the last refresh when what is known has no route.
          if (!hasRoute(table.peers(), spec.numLayers)) await refreshOnce()
          // Waiting for a repair is bounded per generation, however many failovers it takes.
          const deadline = Date.now() + routeWaitMs
          return service.generate({
            ...params,
            peers: () => table.peers(),
            numLayers: spec.numLayers,
            beforeReplan: () => refreshOnce(),
            waitForRoute: (routable) => waitForRoute(routable, deadline, params.signal),
          })
        },
      })
      log.info({ url: `http://${init.apiHost ?? '127.0.0.1'}:${(server.address() as { port: number }).port}` }, 'HTTP API ready')
    }
  } catch (e) {
    table.stop()
    server?.close()
    await service.stop()
    await node.unhandle(INFO_PROTOCOL).catch(() => undefined)
    throw e
  }

  return {
    spec,
    table,
    service,
    /** The range served now (undefined while none is loaded). */
    range: () => (service.shard() ? range : undefined),
    /** The range being loaded, if any. */
    loading: () => loading,
    generator: () => generator,
    /** Prometheus metrics (also served at the HTTP API's /metrics). */
    metrics,
    /** Work this host's shard served, cumulative since start (for metrics reports). */
    counters: (): HostCounters => {
      const s = service.stats()
      return { tokensProcessed: s.processedTokens, requestCount: s.sessions, totalLatencyMs: s.computeMs }
    },
    /** Lets the HTTP API answer before this host serves layers (an origin-only host). */
    markOriginReady: () => void (originReady = true),
    apiUrl: () => (server ? `http://${init.apiHost ?? '127.0.0.1'}:${(server.address() as { port: number }).port}` : undefined),
    /**
     * Loads `next` and serves it; the previous range keeps serving its open sessions until the
     * new one is ready, then is released.
     */
    async serve(next: LayerRange, opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {}): Promise<ShardSession> {
      loading = next
      try {
        const { shards } = await loadShards({
          source,
          runtime: nodeRuntime({ spinning: process.env.SHARDMESH_CPU_SPIN === '1' }),
          ranges: [next],
          device: init.device,
          weights: init.weights,
          onProgress: opts.onProgress,
          signal: opts.signal,
        })
        const shard = shards[0]!
        const old = service.shard()
        range = next
        const released = service.setShard(shard)
        await table.refresh()
        originReady = true
        log.info({ device: shard.device, layers: `${next.start}-${next.end}`, peers: table.peers().length }, 'serving')
        if (old) void released.then(() => old.dispose())
        return shard
      } finally {
        loading = undefined
      }
    },
    /** Stops serving layers (sessions on them are told, their origins re-plan). */
    async release(): Promise<void> {
      const old = service.shard()
      await service.setShard(undefined, 0)
      range = undefined
      await old?.dispose()
    },
    async stop(): Promise<void> {
      table.stop()
      server?.closeIdleConnections()
      server?.close()
      await service.stop()
      await node.stop()
      await service.shard()?.dispose()
    },
  }
}

export type NodeHost = Awaited<ReturnType<typeof createNodeHost>>
