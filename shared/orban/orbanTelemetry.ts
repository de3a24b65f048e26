import type { Logger } from '../logger.ts'
import type { CreateOrbanAgentInit, OrbanAgent } from './orbanAgentTypes.ts'
import type { OrbanLink } from './orbanLink.ts'
import type { OrbanGpuStatus } from './orbanMessages.ts'
import type { OrbanTasks } from './orbanTasks.ts'

export type OrbanTelemetryInit = Pick<CreateOrbanAgentInit, 'gpuStatus' | 'meshLoad'> & {
  agentId: string
  /** When the agent started (ms): uptime, and the start of the first metrics batch. */
  startedAt: number
}

export type OrbanTelemetryComponents = {
  link: OrbanLink
  tasks: Pick<OrbanTasks, 'working'>
  log: Logger
}

export type OrbanTelemetry = Pick<OrbanAgent, 'heartbeat' | 'sendMetrics'> & {
  /** When the last HEARTBEAT went out (for STATE_SYNC). */
  readonly lastHeartbeat: Date | undefined
}

/** What the agent reports about itself between tasks: HEARTBEAT and METRICS_BATCH. */
export function createOrbanTelemetry(init: OrbanTelemetryInit, components: OrbanTelemetryComponents): OrbanTelemetry {
  const { agentId, startedAt } = init
  const { link, tasks, log } = components
  let lastHeartbeat: Date | undefined
  let lastMetricsEnd: Date | undefined

  const meshLoad = () => {
    const load = init.meshLoad?.()
    return load ? { mesh_load: { active_sessions: load.activeSessions, queue_depth: load.queueDepth } } : {}
  }

  return {
    get lastHeartbeat() {
      return lastHeartbeat
    },
    async heartbeat(): Promise<boolean> {
      if (!link.ready) return false
      let gpus: OrbanGpuStatus[] = []
      try {
        gpus = (await init.gpuStatus?.()) ?? []
      } catch (e) {
        log.warn({ err: e }, 'orban agent: reading GPU status failed')
      }
      const working = tasks.working()
      const sent = link.send('HEARTBEAT', {
        agent_id: agentId,
        status: working ? 'working' : 'idle',
        current_task_id: working?.task_id ?? null,
        gpu_status: gpus,
        uptime_sec: Math.floor((Date.now() - startedAt) / 1000),
        ...meshLoad(),
      })
      if (sent) lastHeartbeat = new Date()
      return sent
    },
    sendMetrics(batch) {
      const end = new Date()
      const sent = link.send('METRICS_BATCH', {
        agent_id: agentId,
        time_range: batch.time_range ?? { start: lastMetricsEnd ?? new Date(startedAt), end },
        aggregated_metrics: batch.aggregated_metrics,
      })
      if (sent) lastMetricsEnd = end
      return sent
    },
  }
}
