import type { PrivateKey } from '@libp2p/interface'
import type { ForwardService } from '../../shared/mesh/forwardService.ts'
import type { LayerRange } from '../../shared/model/shardGraph.ts'
import { createShardTaskAgent } from '../../shared/oracle/shardTaskAgent.ts'
import { createServedSampler } from '../../shared/oracle/servedSampler.ts'
import { createOrbanAgent, type OrbanAgent, type OrbanTask, type OrbanTaskController } from '../../shared/orban/createOrbanAgent.ts'
import type { EngineClient } from '../engine/engineClient.ts'
import type { DeviceOption } from '../../shared/engine/runtime.ts'
import { asShardSession, workerShard } from '../mesh/workerShard.ts'
import { readPageHardwareProfile } from './pageHardwareProfile.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'

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
  const spec = parseModelConfig(await (await fetch(new URL('config.json', new URL(url, location.href)))).json())
  const whole = await engine.load({ baseUrl: url, ranges: [{ start: 0, end: spec.numLayers }], device })
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
  let shardId: string | undefined

  /** The page's part of a task: the range loaded in the worker and put on the mesh, unless it is the one served. */
  async function loadRange(_task: OrbanTask, controller: OrbanTaskController, _model: string, next: LayerRange): Promise<void> {
    // The range it already serves (a reconnect, an Oracle restart): no reload, the new task takes over.
    if (shardId !== undefined && range && range.start === next.start && range.end === next.end) return
    controller.progress({ progress: 0, stage: 'loading' })
    const loaded = await init.engine.load({ baseUrl: init.modelUrl, ranges: [next], device: init.device }, { onProgress: init.onLoadProgress })
    const handle = loaded.shards[0]!
    const previousShard = shardId
    range = next
    shardId = handle.id
    // Sessions open on the previous shard finish there; it is released once they have.
    void init.service.setShard(asShardSession(workerShard(init.engine, loaded, handle)), previousShard !== undefined ? 30_000 : 0).then(() => {
      if (previousShard !== undefined) void init.engine.dispose({ shards: [previousShard] })
    })
  }

  const tasks = createShardTaskAgent({ model: init.model, self: 'this page', loadRange, onServing: (served) => init.onRange?.(served.range) })

  const agent = await createOrbanAgent({
    url: init.oracle,
    key: init.privateKey.raw,
    heartbeatIntervalMs: init.heartbeatIntervalMs,
    onTask: tasks.onTask,
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
    tasks.serving()?.controller.progress({ progress: 1, stage: 'serving', metrics: { throughput_tokens_per_sec: throughput }, served })
  }, init.servedIntervalMs ?? 10_000)
  agent.on('stopped', () => clearInterval(servedTimer))
  return { agent, range: () => range, score: score.tokensPerSecond, device: score.device }
}
