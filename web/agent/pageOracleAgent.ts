import type { PrivateKey } from '@libp2p/interface'
import type { ForwardService } from '../../shared/mesh/forwardService.ts'
import type { LayerRange } from '../../shared/model/shardGraph.ts'
import { shardRangeProblem, shardTaskConfigSchema } from '../../shared/oracle/shardTask.ts'
import { createServedSampler } from '../../shared/oracle/servedSampler.ts'
import { createOrbanAgent, type OrbanAgent, type OrbanTask, type OrbanTaskController, type OrbanTaskDecision } from '../../shared/oracle/orban/createOrbanAgent.ts'
import type { EngineClient } from '../engine/engineClient.ts'
import type { DeviceOption } from '../../shared/engine/runtime.ts'
import { asShardSession, workerShard } from '../mesh/workerShard.ts'
import { readPageHardwareProfile } from './pageHardwareProfile.ts'

export type PageOracleAgentInit = {
  /** The Oracle's base URL. */
  oracle: string
  /** Folder URL this page loads the model from (the Oracle's own source is a path on its machine). */
  modelUrl: string
  /** The model's name on the wire. */
  model: string
  engine: EngineClient
  service: ForwardService
  privateKey: PrivateKey
  peerId: string
  /** The page's dialable addresses (relay circuits). */
  multiaddrs: () => string[]
  device: DeviceOption
  /** Reference model for the score: the shipped one. */
  benchmarkUrl: string
  heartbeatIntervalMs?: number
  onRange?: (range: LayerRange | undefined) => void
  /** Caps the memory offered to the Oracle (bytes); absent: what the browser's profile suggests. */
  memoryBytes?: number
  /** Told of each step of a range's load in the worker (tensor reads and graph pieces, then the session). */
  onLoadProgress?: (range: LayerRange, done: number, total: number) => void
  /** A score this browser measured before (same backend): no benchmark run this time. */
  score?: { tokensPerSecond: number; device: string }
  /** Told when the agent starts measuring its score and when it connects to the Oracle. */
  onStage?: (stage: 'measuring' | 'connecting') => void
  /** TASK_PROGRESS with what the page served (tokens/s, steps, sessions) while it serves. @default 10_000 */
  servedIntervalMs?: number
}

/** Decode tokens/s of the reference model whole in the engine worker: the page's score. */
async function measurePageScore(engine: EngineClient, url: string, device: DeviceOption): Promise<{ tokensPerSecond: number; device: string }> {
  const config = (await (await fetch(new URL('config.json', new URL(url, location.href)))).json()) as { num_hidden_layers: number }
  const whole = await engine.load({ baseUrl: url, ranges: [{ start: 0, end: config.num_hidden_layers }], device })
  const shard = whole.shards[0]!
  try {
    const session = 'benchmark'
    await engine.forward({ shard: shard.id, sessionId: session, input: { tokens: [1, 415, 538, 861, 272, 229, 778, 487] }, reset: true })
    for (let i = 0; i < 2; i++) await engine.forward({ shard: shard.id, sessionId: session, input: { tokens: [100 + i] } })
    const steps = 12
    const t = performance.now()
    for (let i = 0; i < steps; i++) await engine.forward({ shard: shard.id, sessionId: session, input: { tokens: [200 + i] } })
    return { tokensPerSecond: Math.round((steps / (performance.now() - t)) * 1000 * 10) / 10, device: shard.device }
  } finally {
    await engine.dispose({ shards: [shard.id] })
  }
}

/**
 * The page as an Oracle agent: the Orban channel from the page (its Ed25519 identity from
 * IndexedDB), hardware from `navigator.gpu` and `navigator.deviceMemory`, a score from a short
 * engine benchmark in the worker; each TASK_ASSIGN's range is loaded in the worker and served on
 * the mesh, replacing the previous one.
 */
export async function startPageOracleAgent(init: PageOracleAgentInit): Promise<{ agent: OrbanAgent; range: () => LayerRange | undefined; score: number; device: string }> {
  init.onStage?.('measuring')
  const [profile, score] = await Promise.all([readPageHardwareProfile(), init.score ?? measurePageScore(init.engine, init.benchmarkUrl, init.device)])
  const memoryBytes = init.memoryBytes ?? profile.memoryBytes
  init.onStage?.('connecting')
  let range: LayerRange | undefined
  let current: { controller: OrbanTaskController; shardId: string; since: number } | undefined
  let chain: Promise<unknown> = Promise.resolve()

  async function load(controller: OrbanTaskController, next: LayerRange): Promise<void> {
    try {
      const previous = current
      if (previous && range && range.start === next.start && range.end === next.end) {
        // The range it already serves (a reconnect, an Oracle restart): no reload, the new task takes over.
        current = { ...previous, controller, since: Date.now() }
      } else {
        controller.progress({ progress: 0, stage: 'loading' })
        const loaded = await init.engine.load({ baseUrl: init.modelUrl, ranges: [next], device: init.device }, { onProgress: init.onLoadProgress })
        const handle = loaded.shards[0]!
        range = next
        current = { controller, shardId: handle.id, since: Date.now() }
        // Sessions open on the previous shard finish there; it is released once they have.
        void init.service.setShard(asShardSession(workerShard(init.engine, loaded, handle)), previous ? 30_000 : 0).then(() => {
          if (previous) void init.engine.dispose({ shards: [previous.shardId] })
        })
      }
      controller.progress({ progress: 1, stage: 'serving' })
      init.onRange?.(next)
      if (previous) previous.controller.complete({ result: { output_url: '', output_hash: '', execution_time_sec: (Date.now() - previous.since) / 1000, gpu_time_sec: 0 } })
    } catch (e) {
      controller.fail({ code: 'LOAD_FAILED', message: (e as Error).message })
    }
  }

  function onTask(task: OrbanTask, controller: OrbanTaskController): OrbanTaskDecision {
    const parsed = shardTaskConfigSchema.safeParse(task.payload.config)
    if (!parsed.success) return { accept: false, reason: 'unsupported_task', details: 'this agent serves shardmesh layer ranges only' }
    const cfg = parsed.data
    const problem = shardRangeProblem(cfg)
    if (problem) return { accept: false, reason: 'bad_range', details: problem }
    if (cfg.model !== init.model) return { accept: false, reason: 'other_model', details: `this page serves "${init.model}"` }
    chain = chain.then(() => load(controller, { start: cfg.layer_start, end: cfg.layer_end }))
    return { accept: true }
  }

  const agent = await createOrbanAgent({
    url: init.oracle,
    key: init.privateKey.raw,
    heartbeatIntervalMs: init.heartbeatIntervalMs,
    onTask,
    registration: () => ({
      hardware: { gpus: profile.gpus, cpu: profile.cpu, memory_gb: profile.memory_gb, storage_available_gb: profile.storage_available_gb },
      capabilities: { supported_frameworks: ['onnxruntime-web'], max_batch_size: 1, fp16_support: profile.adapter?.shaderF16 ?? false, int8_support: false },
      location: { country: '', region: '', latency_to_platform_ms: 0 },
      availability: { hours_per_day: 24, reliability_score: 0.5 },
      mesh: {
        peer_id: init.peerId,
        multiaddrs: init.multiaddrs(),
        model: init.model,
        device: score.device,
        memory_mb: Math.floor(memoryBytes / (1024 * 1024)),
        benchmark_tok_per_sec: score.tokensPerSecond,
      },
    }),
  })
  // What the page served, every interval (the Orban live-metrics cadence): the Oracle counts it and
  // credits it to the wallet bound to this peer; the page signs nothing for it.
  const sampler = createServedSampler(() => init.service.stats())
  const servedTimer = setInterval(() => {
    const { throughput, served } = sampler.sample()
    current?.controller.progress({ progress: 1, stage: 'serving', metrics: { throughput_tokens_per_sec: throughput }, served })
  }, init.servedIntervalMs ?? 10_000)
  agent.on('stopped', () => clearInterval(servedTimer))
  return { agent, range: () => range, score: score.tokensPerSecond, device: score.device }
}
