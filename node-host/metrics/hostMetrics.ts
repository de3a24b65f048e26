import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { GpuReading } from '../agent/gpuTelemetry.ts'

/**
 * A node host's Prometheus metrics (`GET /metrics` on its HTTP API). Counters the host keeps
 * elsewhere (its shard's work, GPU readings, KV cache) are read when scraped; a reading that is
 * unknown (no nvidia-smi) is left out rather than exported as 0.
 */

/** What the host's shard served, cumulative (the forward service's stats). */
export type ShardWork = { processedTokens: number; sessions: number; steps: number; computeMs: number }

export type HostMetricsSources = {
  /** The shard's cumulative work; undefined while none is loaded. */
  shard?: () => ShardWork | undefined
  /** Bytes held by the shard's KV caches. */
  kvBytes?: () => number | undefined
  /** Layers served now. */
  layers?: () => { start: number; end: number } | undefined
  /** Live GPU readings; null: unknown. */
  gpus?: () => GpuReading[] | null
  /** Energy the GPUs drew since start, kWh; null: unknown. */
  energyKwh?: () => number | null
}

export type HostMetrics = {
  readonly registry: Registry
  /** A finished generation at this origin. */
  recordGeneration(api: 'plumise' | 'openai', result: { promptTokens: number; completionTokens: number; ok: boolean }): void
  /** One forward step as the origin saw it: positions computed (prompt length, then 1) and its latency. */
  recordStep(step: { prefill: boolean; positions: number; ms: number }): void
  /** Generations running now (set by the HTTP API). */
  setActiveGenerations(n: number): void
  /** The text exposition (version 0.0.4) and its content type. */
  render(): Promise<{ contentType: string; body: string }>
}

const MIB = 1024 * 1024

export function createHostMetrics(sources: HostMetricsSources = {}): HostMetrics {
  const registry = new Registry()
  const registers = [registry]
  const tokens = new Counter({ name: 'shardmesh_host_tokens_total', help: 'Tokens through generations this host originated, by kind (prompt or completion).', labelNames: ['kind'] as const, registers })
  const generations = new Counter({ name: 'shardmesh_host_generations_total', help: 'Generations this host originated, by API and outcome.', labelNames: ['api', 'outcome'] as const, registers })
  const active = new Gauge({ name: 'shardmesh_host_generations_active', help: 'Generations running now at this origin.', registers })
  const stepSeconds = new Histogram({
    name: 'shardmesh_host_step_latency_seconds',
    help: 'Latency of one forward step through the whole route, seen at the origin (prefill: the prompt; decode: one token).',
    labelNames: ['phase'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  })
  const batch = new Histogram({
    name: 'shardmesh_host_step_batch_size',
    help: 'Positions computed in one forward step (the prompt length for a prefill, 1 for a decode step).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048],
    registers,
  })
  // Cumulative values the forward service keeps: exported as counters set at scrape time.
  const fromShard = (name: string, help: string, pick: (w: ShardWork) => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        const w = sources.shard?.()
        this.reset()
        if (w) this.inc(pick(w))
      },
    })
  fromShard('shardmesh_host_shard_tokens_total', 'Positions run through this host\'s layers (all sessions, any origin).', (w) => w.processedTokens)
  fromShard('shardmesh_host_shard_sessions_total', 'Sessions opened on this host\'s shard.', (w) => w.sessions)
  fromShard('shardmesh_host_shard_steps_total', 'Forward frames this host\'s shard computed.', (w) => w.steps)
  fromShard('shardmesh_host_shard_compute_seconds_total', 'Time this host\'s shard spent computing.', (w) => w.computeMs / 1000)
  new Gauge({
    name: 'shardmesh_host_kv_cache_bytes',
    help: 'Bytes held by the KV caches of the sessions on this host\'s shard.',
    registers,
    collect() {
      const b = sources.kvBytes?.()
      this.reset()
      if (b !== undefined) this.set(b)
    },
  })
  new Gauge({
    name: 'shardmesh_host_layers_served',
    help: 'Decoder layers this host serves now.',
    registers,
    collect() {
      const l = sources.layers?.()
      this.set(l ? l.end - l.start : 0)
    },
  })
  const gpuGauge = (name: string, help: string, pick: (g: GpuReading) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['gpu'] as const,
      registers,
      collect() {
        this.reset()
        for (const g of sources.gpus?.() ?? []) {
          const v = pick(g)
          if (v !== null) this.set({ gpu: String(g.index) }, v)
        }
      },
    })
  gpuGauge('shardmesh_gpu_utilization_percent', 'GPU utilization (nvidia-smi utilization.gpu).', (g) => g.utilization)
  gpuGauge('shardmesh_gpu_memory_used_bytes', 'GPU memory used.', (g) => (g.memoryUsedMiB === null ? null : g.memoryUsedMiB * MIB))
  gpuGauge('shardmesh_gpu_memory_total_bytes', 'GPU memory in all.', (g) => (g.memoryTotalMiB === null ? null : g.memoryTotalMiB * MIB))
  gpuGauge('shardmesh_gpu_temperature_celsius', 'GPU temperature.', (g) => g.temperatureC)
  gpuGauge('shardmesh_gpu_power_watts', 'GPU power draw.', (g) => g.powerDrawW)
  gpuGauge('shardmesh_gpu_fan_speed_percent', 'GPU fan speed (absent on passively cooled cards).', (g) => g.fanSpeedPercent)
  new Gauge({
    name: 'shardmesh_gpu_energy_kwh',
    help: 'Energy the GPUs drew since the host started, integrated from power draw (absent when unknown).',
    registers,
    collect() {
      const e = sources.energyKwh?.()
      this.reset()
      if (e !== null && e !== undefined) this.set(e)
    },
  })

  return {
    registry,
    recordGeneration(api, r) {
      generations.inc({ api, outcome: r.ok ? 'ok' : 'error' })
      if (!r.ok) return
      tokens.inc({ kind: 'prompt' }, r.promptTokens)
      tokens.inc({ kind: 'completion' }, r.completionTokens)
    },
    recordStep({ prefill, positions, ms }) {
      stepSeconds.observe({ phase: prefill ? 'prefill' : 'decode' }, ms / 1000)
      batch.observe(positions)
    },
    setActiveGenerations: (n) => active.set(n),
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() }
    },
  }
}
