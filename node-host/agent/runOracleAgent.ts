import type { Libp2p } from 'libp2p'
import type { PrivateKey } from '@libp2p/interface'
import type { DeviceOption } from '../../shared/engine/runtime.ts'
import type { LayerRange, WeightFormat } from '../../shared/model/shardGraph.ts'
import { createOrbanAgent, type OrbanAgent, type OrbanTask, type OrbanTaskController } from '../../shared/orban/createOrbanAgent.ts'
import { createShardTaskAgent } from '../../shared/oracle/shardTaskAgent.ts'
import { createNodeHost, type HostGeneration, type NodeHost } from '../host/createNodeHost.ts'
import type { Logger } from '../logger.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { measureBenchmarkScore } from './benchmarkScore.ts'
import type { EarningsStore } from './earningsStore.ts'
import { createGpuTelemetry, type GpuTelemetry } from './gpuTelemetry.ts'
import { createCoalescedReport } from './coalescedReport.ts'
import { readHardwareProfile } from './hardwareProfile.ts'
import { orbanGpuStatus, orbanTaskMetrics } from './orbanTelemetry.ts'
import { topologySchema } from '../../shared/oracle/plumiseSchemas.ts'

export type OracleAgentInit = {
  /** The Oracle's base URL (`http://127.0.0.1:3100`). */
  oracle: string
  node: Libp2p
  privateKey: PrivateKey
  /** A local copy of the model to serve (folder, URL or Hub id); otherwise the task's source. */
  model?: string
  device: DeviceOption
  weights: WeightFormat
  /** Memory offered for weights, MiB. @default 80% of free RAM (cpu) or the GPU's VRAM */
  memoryMb?: number
  bootstrap: string[]
  apiPort?: number
  apiHost?: string
  heartbeatIntervalMs?: number
  /** Passed to the host (see NodeHostInit.onGenerated). */
  onGenerated?: (generation: HostGeneration) => void
  /** METRICS_BATCH aggregates. @default 300_000 */
  metricsIntervalMs?: number
  /** TASK_PROGRESS with live metrics while serving. @default 10_000 */
  liveMetricsIntervalMs?: number
  /** An extra TASK_PROGRESS soon after a served session ends, at most one per this many ms. @default 2000 */
  servedReportGapMs?: number
  /** GPU readings (polled nvidia-smi). @default createGpuTelemetry() */
  telemetry?: GpuTelemetry
  /** @default globalThis.WebSocket */
  WebSocket?: typeof WebSocket
  /** Keeps what the Oracle books (EARNINGS_RECORD, PAYOUT_NOTIFICATION) across restarts. */
  earnings?: EarningsStore
  logger: Logger
}

const MB = 1024 * 1024

/**
 * A node host run by the Oracle: measures its hardware and engine score, keeps the Orban agent
 * channel open (authenticated with the node's Ed25519 key, reconnecting with backoff), takes the
 * layer range each TASK_ASSIGN gives, loads it while reporting progress, reports `serving` when
 * it is ready, and follows reassignments without dropping the sessions it serves.
 */
export async function runOracleAgent(init: OracleAgentInit): Promise<{ agent: OrbanAgent; host: () => NodeHost | undefined; telemetry: GpuTelemetry; stop(): Promise<void> }> {
  const { node, logger: log } = init
  const [profile, score] = await Promise.all([readHardwareProfile(), measureBenchmarkScore({ device: init.device })])
  const onGpu = score.device === 'webgpu' && profile.vramBytes > 0
  const memoryMb = init.memoryMb ?? Math.floor((onGpu ? profile.vramBytes : profile.ramFreeBytes * 0.8) / MB)
  const preferred = init.model ? resolveModelSource(init.model) : undefined
  const telemetry = init.telemetry ?? createGpuTelemetry()
  telemetry.start()
  await telemetry.poll()
  log.info({ score: score.tokensPerSecond, device: score.device, memoryMb, gpus: profile.gpus.length }, 'agent: hardware measured; connecting to the oracle')

  let host: NodeHost | undefined
  let creating: Promise<NodeHost> | undefined
  /** The served task's last live-metrics sample: tokens this host's shard had computed, and when. */
  let sample = { tokensAt: 0, sampledAt: 0 }
  /** Energy and utilization of the task being served (the telemetry's own window is METRICS_BATCH's). */
  let taskEnergyKwh = 0
  let taskUtil: { sum: number; seconds: number } = { sum: 0, seconds: 0 }
  let taskPeakGb = 0
  let earnings = 0
  /** Live metrics soon after a served session ends: a finished request reaches the Oracle's served counts in about a second, not up to a period later. */
  const reportSoon = createCoalescedReport({ report: () => reportLive(), minGapMs: init.servedReportGapMs })

  const topologyAddresses = (model: string) => async (): Promise<string[]> => {
    const res = await fetch(new URL(`/api/v1/pipeline/topology?model=${encodeURIComponent(model)}`, init.oracle), { signal: AbortSignal.timeout(5000) })
    if (!res.ok) return []
    // The Oracle's answer is untrusted: a document that is not a topology names no peers.
    const parsed = topologySchema.safeParse(await res.json().catch(() => undefined))
    if (!parsed.success) return []
    const self = node.peerId.toString()
    return parsed.data.nodes
      .filter((n) => n.peerId && n.peerId !== self && n.multiaddrs.length)
      .map((n) => [...n.multiaddrs].sort((a, b) => Number(a.includes('/ws')) - Number(b.includes('/ws')))[0]!)
  }

  const hostFor = (task: OrbanTask, model: string): Promise<NodeHost> => {
    creating ??= (async () => {
      // `/models/<name>/`: the Oracle serves the files itself.
      const url = task.payload.model_url.startsWith('/models/') ? new URL(task.payload.model_url, init.oracle).href : task.payload.model_url
      const source = preferred && preferred.name === model ? preferred : resolveModelSource(url)
      if (source.name !== model) throw new Error(`the task's source ${task.payload.model_url} is "${source.name}", not "${model}"`)
      const created = await createNodeHost({ node, source, device: init.device, weights: init.weights, bootstrap: init.bootstrap, discover: topologyAddresses(model), apiPort: init.apiPort, apiHost: init.apiHost, logger: log, onGenerated: init.onGenerated, gpus: () => telemetry.latest(), energyKwh: () => telemetry.totalEnergyKwh(), verification: { signer: { peerId: node.peerId.toString(), sign: (d) => init.privateKey.sign(d) }, oracle: init.oracle } })
      created.service.onSessionEnd(() => reportSoon.request())
      return (host = created)
    })()
    // A host that could not be set up (a model it cannot read, a port in use) is tried afresh by the next task.
    creating.catch(() => {
      creating = undefined
      if (!host) tasks.forgetModel()
    })
    return creating
  }

  const loadStarted = new WeakMap<OrbanTaskController, number>()

  /** This host's part of a task: the range loaded into its one host, unless it holds it already. */
  async function loadRange(task: OrbanTask, controller: OrbanTaskController, model: string, range: LayerRange): Promise<void> {
    loadStarted.set(controller, performance.now())
    const h = await hostFor(task, model)
    const held = h.range()
    if (!held || held.start !== range.start || held.end !== range.end) {
      const gpuNow = () => orbanTaskMetrics(telemetry.latest(), controller.gpu, null)
      controller.progress({ progress: 0, stage: 'loading', metrics: gpuNow() })
      let last = 0
      await h.serve(range, {
        signal: controller.signal,
        onProgress: (done, total) => {
          const p = Math.min(0.99, done / total)
          if (p - last >= 0.1) controller.progress({ progress: (last = p), stage: 'loading', metrics: gpuNow() })
        },
      })
    }
  }

  const tasks = createShardTaskAgent({
    self: 'this host',
    loadRange,
    completion: (_previous, seconds) => ({
      gpuTimeSec: onGpu ? seconds : 0,
      metrics: {
        avg_gpu_utilization: taskUtil.seconds > 0 ? taskUtil.sum / taskUtil.seconds : 0,
        peak_memory_gb: taskPeakGb,
        energy_kwh: taskEnergyKwh,
      },
    }),
    servingMetrics: (controller) => orbanTaskMetrics(telemetry.latest(), controller.gpu, null),
    onServing({ controller, model, range }) {
      taskEnergyKwh = 0
      taskUtil = { sum: 0, seconds: 0 }
      taskPeakGb = 0
      sample = { tokensAt: host?.counters().tokensProcessed ?? 0, sampledAt: Date.now() }
      log.info({ model, layers: `${range.start}-${range.end}`, ms: Math.round(performance.now() - (loadStarted.get(controller) ?? performance.now())) }, 'agent: serving the assigned range')
    },
    onLoadFailed: (err, model, range) => log.error({ err: err.message, model, layers: `${range.start}-${range.end}` }, 'agent: loading the assigned range failed'),
  })
  const counts = tasks.counts

  const agent = await createOrbanAgent({
    url: init.oracle,
    key: init.privateKey.raw,
    heartbeatIntervalMs: init.heartbeatIntervalMs,
    gpuStatus: () => orbanGpuStatus(telemetry.latest()),
    meshLoad: () => host?.service.load(),
    WebSocket: init.WebSocket,
    logger: log,
    onTask: tasks.onTask,
    registration: () => ({
      hardware: {
        // Upstream's GpuInfo has whole GB of VRAM (u32): rounded down, never claiming more than there is.
        gpus: profile.gpus.map((g) => ({ index: g.index, vendor: g.vendor, model: g.model, vram_gb: Math.floor(g.vram_gb), compute_capability: g.compute_capability, cuda_cores: g.cuda_cores, pcie_bandwidth_gbps: g.pcie_bandwidth_gbps })),
        cpu: profile.cpu,
        memory_gb: profile.memory_gb,
        storage_available_gb: profile.storage_available_gb,
      },
      capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 1, fp16_support: init.weights === 'float16' || init.weights === 'int4-f16', int8_support: init.weights.startsWith('int4') },
      location: { country: '', region: '', latency_to_platform_ms: 0 },
      availability: { hours_per_day: 24, reliability_score: 1 },
      mesh: {
        peer_id: node.peerId.toString(),
        multiaddrs: node.getMultiaddrs().map(String),
        model: tasks.model() ?? preferred?.name,
        device: score.device,
        memory_mb: memoryMb,
        benchmark_tok_per_sec: score.tokensPerSecond,
      },
    }),
  })
  // Live metrics every 10 s (the Orban cadence): the served range's TASK_PROGRESS carries the GPU's
  // readings and the tokens/s this host's shard computed since the last report.
  function reportLive(): void {
    const h = host
    const serving = tasks.serving()
    if (!serving || !h) return
    const now = Date.now()
    const tokens = h.counters().tokensProcessed
    const seconds = (now - sample.sampledAt) / 1000
    const rate = seconds > 0 ? (tokens - sample.tokensAt) / seconds : null
    sample = { tokensAt: tokens, sampledAt: now }
    const readings = telemetry.latest()
    const g = readings?.find((r) => r.index === serving.controller.gpu)
    if (g?.utilization != null) taskUtil = { sum: taskUtil.sum + g.utilization * seconds, seconds: taskUtil.seconds + seconds }
    if (g?.memoryUsedMiB != null) taskPeakGb = Math.max(taskPeakGb, g.memoryUsedMiB / 1024)
    if (g?.powerDrawW != null) taskEnergyKwh += (g.powerDrawW * seconds) / 3_600_000
    const s = h.service.stats()
    serving.controller.progress({ progress: 1, stage: 'serving', metrics: orbanTaskMetrics(readings, serving.controller.gpu, rate), served: { tokens: s.processedTokens, steps: s.steps, sessions: s.sessions } })
  }
  const liveTimer = setInterval(() => {
    reportSoon.reported()
    reportLive()
  }, init.liveMetricsIntervalMs ?? 10_000)
  liveTimer.unref?.()
  // Aggregates every 5 minutes, as the Orban protocol asks: tasks ended, hours spent serving, and
  // the GPUs' energy (integrated from power draw) and mean utilization over the batch's window.
  const metricsTimer = setInterval(() => {
    const serving = tasks.serving()
    const servingNow = serving ? (Date.now() - serving.since) / 1000 : 0
    const w = telemetry.takeWindow()
    agent.sendMetrics({
      aggregated_metrics: {
        tasks_completed: counts.completed,
        tasks_failed: counts.failed,
        total_gpu_hours: onGpu ? (counts.servedSeconds + servingNow) / 3600 : 0,
        // Required numbers upstream: 0 where no GPU could be read (a CPU host draws no GPU energy).
        avg_gpu_utilization: w.avgUtilization ?? 0,
        total_energy_kwh: w.energyKwh ?? 0,
        earnings_usd: earnings,
      },
    })
  }, init.metricsIntervalMs ?? 300_000)
  metricsTimer.unref?.()
  agent.on('earnings', (e) => {
    earnings += Number(e.earnings.final_amount_usd)
    log.info({ taskId: e.task_id, amountUsd: e.earnings.final_amount_usd, status: e.status }, 'agent: earnings recorded')
    init.earnings?.addRecord(e).catch((err: Error) => log.error({ err: err.message, taskId: e.task_id }, 'agent: saving an earnings record failed'))
  })
  agent.on('payout', (p) => {
    log.info({ payoutId: p.payout_id, netUsd: p.summary.net_amount_usd, status: p.status }, 'agent: payout notified')
    init.earnings?.addPayout(p).catch((err: Error) => log.error({ err: err.message, payoutId: p.payout_id }, 'agent: saving a payout failed'))
  })
  agent.on('stopped', (s) => log.error({ reason: s.reason, error: s.error?.message }, 'agent: the oracle channel stopped'))

  return {
    agent,
    host: () => host,
    telemetry,
    async stop() {
      clearInterval(metricsTimer)
      clearInterval(liveTimer)
      reportSoon.stop()
      telemetry.stop()
      await agent.stop()
      await host?.stop()
      if (!host) await node.stop()
    },
  }
}
