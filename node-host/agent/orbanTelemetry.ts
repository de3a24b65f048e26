import type { OrbanGpuStatus } from '../../shared/orban/orbanMessages.ts'
import type { GpuReading } from './gpuTelemetry.ts'

const GIB_PER_MIB = 1 / 1024
const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits

/**
 * HEARTBEAT `gpu_status` from live readings. Upstream's GpuStatus has every reading as a required
 * number, so an unknown cannot be sent as null:
 * - no readings at all (no nvidia-smi): an empty list, which says "unknown", never a GPU of zeros;
 * - a GPU whose utilization, memory, temperature or power the driver does not report is left out
 *   of the list (its zeros would read as an idle, cold card and skew energy sums);
 * - fan speed `[N/A]` is what passively cooled cards (A100, H100 SXM) report: they have no fan of
 *   their own, so 0 % is the truth there, and it is sent as 0.
 */
export function orbanGpuStatus(readings: GpuReading[] | null): OrbanGpuStatus[] {
  if (!readings) return []
  return readings.flatMap((g) => {
    if (g.utilization === null || g.memoryUsedMiB === null || g.memoryTotalMiB === null || g.temperatureC === null || g.powerDrawW === null) return []
    return [
      {
        index: g.index,
        utilization: g.utilization,
        memory_used_gb: round(g.memoryUsedMiB * GIB_PER_MIB, 3),
        memory_total_gb: round(g.memoryTotalMiB * GIB_PER_MIB, 3),
        temperature_c: g.temperatureC,
        power_draw_w: g.powerDrawW,
        fan_speed_percent: g.fanSpeedPercent ?? 0,
      },
    ]
  })
}

/**
 * TASK_PROGRESS `metrics` for the GPU a task runs on. Upstream requires `gpu_utilization` and
 * `memory_used_gb` as numbers: a host without readable GPUs (CPU device, no nvidia-smi) sends 0
 * there, the only value the type admits; `throughput_tokens_per_sec` is optional upstream and is
 * null until tokens were served.
 */
export function orbanTaskMetrics(readings: GpuReading[] | null, gpu: number, tokensPerSecond: number | null) {
  const g = readings?.find((r) => r.index === gpu)
  return {
    gpu_utilization: g?.utilization ?? 0,
    memory_used_gb: g?.memoryUsedMiB == null ? 0 : round(g.memoryUsedMiB * GIB_PER_MIB, 3),
    throughput_tokens_per_sec: tokensPerSecond === null ? null : round(tokensPerSecond, 3),
  }
}
