import { loadShards } from '../../shared/engine/loadShards.ts'
import type { DeviceOption } from '../../shared/engine/runtime.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { DEFAULT_MODEL_DIR } from '../model/resolveModelSource.ts'

export type BenchmarkScore = {
  /** Decode tokens per second of the reference model on this device: the score agents report. */
  tokensPerSecond: number
  device: string
  ms: number
}

/**
 * A short engine benchmark: the shipped reference model (docs-llama-7m) whole, on the device the
 * host will serve with; a prompt and 4 warm-up steps, then single-token decode steps timed. Comparable across
 * hosts because every host runs the same weights through the same engine.
 */
export async function measureBenchmarkScore(params: { device?: DeviceOption; steps?: number } = {}): Promise<BenchmarkScore> {
  const t0 = performance.now()
  const steps = params.steps ?? 24
  const { shards } = await loadShards({ source: fileModelSource(DEFAULT_MODEL_DIR), runtime: nodeRuntime(), device: params.device ?? 'auto' })
  const shard = shards[0]!
  try {
    const session = 'benchmark'
    await shard.forward(session, { tokens: [1, 415, 538, 861, 272, 229, 778, 487] }, { reset: true })
    for (let i = 0; i < 4; i++) await shard.forward(session, { tokens: [100 + i] })
    const t = performance.now()
    for (let i = 0; i < steps; i++) await shard.forward(session, { tokens: [200 + i] })
    const elapsed = performance.now() - t
    return { tokensPerSecond: Math.round((steps / elapsed) * 1000 * 10) / 10, device: shard.device, ms: Math.round(performance.now() - t0) }
  } finally {
    await shard.dispose()
  }
}
