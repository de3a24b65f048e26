import { createServer, type Server } from 'node:http'
import { createHostVerification, type HostVerificationOptions } from './hostVerification.ts'
import type { Libp2p } from 'libp2p'
import { loadShards } from '../../shared/engine/loadShards.ts'
import { maxBatchFromEnv } from '../engine/maxBatchFromEnv.ts'
import type { DeviceOption } from '../../shared/engine/runtime.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createTextGenerator, type TextGenerator } from '../../shared/engine/textGenerator.ts'
import { createMeshPeer } from '../../shared/mesh/createMeshPeer.ts'
import type { ModelSource } from '../../shared/model/modelSource.ts'
import { parseModelConfig, type ModelSpec } from '../../shared/model/modelSpec.ts'
import type { LayerRange, WeightFormat } from '../../shared/model/shardGraph.ts'
import { loadTokenizer, readTokenizerConfig } from '../../shared/model/tokenizer.ts'
import type { Logger } from '../logger.ts'
import { createHttpApi } from '../api/httpApi.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { shardCacheFromEnv } from '../engine/fileShardCache.ts'
import type { GpuReading } from '../agent/gpuTelemetry.ts'
import { createHostMetrics } from '../metrics/hostMetrics.ts'

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
  /** Makes the shard of a range instead of loading its weights here (`--grpc-via`: a Plumise node runs it). */
  loadShard?: (range: LayerRange) => Promise<ShardSession>
  /** Spot checks (hostVerification.ts): commit to served steps, check the routes this host originates. */
  verification?: HostVerificationOptions
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
  const verification = init.verification && createHostVerification({ ...init.verification, node, model: source.name, hiddenSize: spec.hiddenSize, shard: () => mesh.service.shard(), weights: init.weights, logger: log })
  const mesh = await createMeshPeer({
    stepLog: verification?.stepLog,
    spotChecker: verification?.spotChecker,
    node,
    model: source.name,
    numLayers: spec.numLayers,
    hiddenSize: spec.hiddenSize,
    bootstrap: init.bootstrap,
    discover: init.discover,
    shareKnown: true,
    weights: init.weights,
    refreshMs: 10_000,
    routeWaitMs: init.routeWaitMs ?? 20_000,
    logger: log,
  })
  const { table, service } = mesh
  await verification?.start()
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
        // Held spot checks start once the generation has delivered its tokens.
        run: (params) => mesh.generate(params).finally(() => verification?.spotChecker.flush()),
      })
      log.info({ url: `http://${init.apiHost ?? '127.0.0.1'}:${(server.address() as { port: number }).port}` }, 'HTTP API ready')
    }
  } catch (e) {
    server?.close()
    await verification?.stop().catch(() => undefined)
    await mesh.stop()
    throw e
  }

  return {
    spec,
    /** Spot-check counters (undefined without verification). */
    verification: () => verification?.stats(),
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
        const { shards } = init.loadShard ? { shards: [await init.loadShard(next)] } : await loadShards({
          source,
          runtime: nodeRuntime({ spinning: process.env.SHARDMESH_CPU_SPIN === '1' }),
          maxBatch: maxBatchFromEnv(),
          ranges: [next],
          device: init.device,
          weights: init.weights,
          cache: shardCacheFromEnv(),
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
