import { z } from 'zod'
import { caseless, decimal, gpuStatus, id, timestamp, uint32, uint64 } from './orbanFieldSchemas.ts'

/** What an agent reports about itself between tasks: liveness and its GPUs' readings, and metrics batches. */
export const orbanTelemetryPayloads = {
  HEARTBEAT: z.object({
    agent_id: id,
    status: caseless(['idle', 'working', 'error', 'offline']),
    current_task_id: id.nullable().default(null),
    gpu_status: z.array(gpuStatus).max(64),
    uptime_sec: uint64,
    /** shardmesh's extension (upstream agents omit it): the node host's load, for the Oracle's topology and load-aware routes. */
    mesh_load: z.object({ active_sessions: uint32, queue_depth: uint32 }).optional(),
  }),
  METRICS_BATCH: z.object({
    agent_id: id,
    time_range: z.object({ start: timestamp, end: timestamp }),
    aggregated_metrics: z.object({
      tasks_completed: uint32,
      tasks_failed: uint32,
      total_gpu_hours: decimal,
      avg_gpu_utilization: decimal,
      total_energy_kwh: decimal,
      earnings_usd: decimal,
    }),
  }),
} as const
