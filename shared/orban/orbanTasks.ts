import type { Logger } from '../logger.ts'
import type { OrbanAgentEmitter } from './orbanAgentEvents.ts'
import type { CreateOrbanAgentInit, OrbanActiveTask, OrbanRegistration, OrbanTask, OrbanTaskController, OrbanTaskDecision } from './orbanAgentTypes.ts'
import type { OrbanLink } from './orbanLink.ts'
import { encodeOrbanMessage } from './orbanMessages.ts'

type TaskEntry = {
  task: OrbanTask
  gpu: number
  progress: number
  startedAt: string
  state: 'deciding' | 'accepted' | 'rejected' | 'done'
  waiting: Array<() => void>
}

export type OrbanTasksInit = Pick<CreateOrbanAgentInit, 'onTask'> & {
  agentId: string
  /** Sent in TASK_COMPLETE's default proof of work. */
  gpuSignature: { device_uuid: string; cuda_version: string | null }
}

export type OrbanTasksComponents = {
  link: OrbanLink
  events: OrbanAgentEmitter
  log: Logger
  /** The registration sent at the last (re)connect: its GPUs decide which tasks fit. */
  registration: () => Promise<OrbanRegistration | undefined>
  /** Aborted when the agent stops; handed to every task's controller. */
  stopSignal: AbortSignal
}

export type OrbanTasks = {
  /** Answers a TASK_ASSIGN: re-confirms one already running, rejects one no GPU holds, else asks `onTask`. */
  handle(task: OrbanTask): Promise<void>
  /** The accepted tasks (for STATE_SYNC). */
  active(): OrbanActiveTask[]
  /** One accepted task, if any (for HEARTBEAT's status). */
  working(): OrbanTask | undefined
}

/** The tasks the platform assigned to this agent, from the decision to the last report. */
export function createOrbanTasks(init: OrbanTasksInit, components: OrbanTasksComponents): OrbanTasks {
  const { agentId, gpuSignature } = init
  const { link, events, log, stopSignal } = components
  const tasks = new Map<string, TaskEntry>()

  async function handle(task: OrbanTask) {
    events.emit('task', task)
    const existing = tasks.get(task.task_id)
    if (existing?.state === 'accepted') {
      // The platform re-sent an assignment we already run (e.g. after a reconnect): confirm it again.
      link.send('TASK_ACCEPT', { task_id: task.task_id, agent_id: agentId, gpu_allocated: existing.gpu, estimated_completion: new Date(Date.now() + task.estimated_duration_sec * 1000) })
      return
    }
    if (existing) return
    const registration = await components.registration()
    const fitting = (registration?.hardware.gpus ?? [])
      .map((g) => ({ index: g.index, vram: Number(g.vram_gb) }))
      .filter((g) => g.vram >= task.requirements.min_vram_gb)
      .sort((a, b) => a.vram - b.vram)
    // A task asking for no VRAM runs on the CPU (or the page's WebGPU, which reports none).
    if (task.requirements.min_vram_gb === 0 && fitting.length === 0) fitting.push({ index: 0, vram: 0 })
    if (fitting.length === 0) {
      const available = Math.max(0, ...(registration?.hardware.gpus ?? []).map((g) => Number(g.vram_gb)))
      link.send('TASK_REJECT', { task_id: task.task_id, reason: 'insufficient_vram', details: `Required ${task.requirements.min_vram_gb}GB, available ${available}GB` })
      log.info({ taskId: task.task_id, required: task.requirements.min_vram_gb, available }, 'orban agent: task rejected, not enough VRAM')
      return
    }
    const entry: TaskEntry = { task, gpu: fitting[0]!.index, progress: 0, startedAt: new Date().toISOString(), state: 'deciding', waiting: [] }
    tasks.set(task.task_id, entry)
    const controller = taskController(entry)
    let decision: OrbanTaskDecision
    try {
      decision = init.onTask ? await init.onTask(task, controller) : { accept: false, reason: 'not_accepting', details: 'this agent takes no tasks' }
    } catch (e) {
      log.error({ taskId: task.task_id, err: e }, 'orban agent: task callback threw')
      decision = { accept: false, reason: 'agent_error', details: (e as Error).message ?? String(e) }
    }
    if (decision.accept) {
      entry.gpu = decision.gpu ?? entry.gpu
      entry.state = 'accepted'
      link.sendOrKeep('TASK_ACCEPT', {
        task_id: task.task_id,
        agent_id: agentId,
        gpu_allocated: entry.gpu,
        estimated_completion: decision.estimatedCompletion ?? new Date(Date.now() + task.estimated_duration_sec * 1000),
      })
    } else {
      entry.state = 'rejected'
      tasks.delete(task.task_id)
      link.send('TASK_REJECT', { task_id: task.task_id, reason: decision.reason, details: decision.details ?? '' })
    }
    for (const run of entry.waiting.splice(0)) run()
  }

  function taskController(entry: TaskEntry): OrbanTaskController {
    const taskId = entry.task.task_id
    // Runs a report once the decision is out; drops it when the task is no longer running.
    const whenAccepted = (report: () => void) => {
      if (entry.state === 'deciding') entry.waiting.push(() => whenAccepted(report))
      else if (entry.state === 'accepted') report()
      else log.debug({ taskId }, 'orban agent: report on a task that is not running dropped')
    }
    const finish = () => {
      entry.state = 'done'
      tasks.delete(taskId)
    }
    // Reports are encoded (validated) at the call, so a bad one throws to the caller, and sent when accepted.
    return {
      task: entry.task,
      get gpu() {
        return entry.gpu
      },
      signal: stopSignal,
      progress(update) {
        const text = encodeOrbanMessage('TASK_PROGRESS', {
          task_id: taskId,
          progress: update.progress,
          stage: update.stage,
          metrics: { gpu_utilization: 0, memory_used_gb: 0, throughput_tokens_per_sec: null, ...update.metrics },
          ...(update.served ? { served: update.served } : {}),
        })
        whenAccepted(() => {
          entry.progress = update.progress
          link.sendTextIfReady(text)
        })
      },
      complete(report) {
        const text = encodeOrbanMessage('TASK_COMPLETE', {
          task_id: taskId,
          result: report.result,
          proof_of_work: report.proof_of_work ?? { method: 'none', challenge_id: '', response: '', gpu_signature: gpuSignature.device_uuid },
          metrics: report.metrics ?? { avg_gpu_utilization: 0, peak_memory_gb: 0, energy_kwh: 0 },
        })
        whenAccepted(() => {
          finish()
          link.sendTextOrKeep(text)
        })
      },
      fail(error, partialResults) {
        const text = encodeOrbanMessage('TASK_FAILED', {
          task_id: taskId,
          error: { code: error.code, message: error.message, details: error.details ?? '' },
          partial_results: partialResults ?? null,
        })
        whenAccepted(() => {
          finish()
          link.sendTextOrKeep(text)
        })
      },
    }
  }

  return {
    handle,
    active() {
      return [...tasks.values()].filter((t) => t.state === 'accepted').map((t) => ({ task_id: t.task.task_id, progress: t.progress, started_at: t.startedAt }))
    },
    working() {
      return [...tasks.values()].find((t) => t.state === 'accepted')?.task
    },
  }
}
