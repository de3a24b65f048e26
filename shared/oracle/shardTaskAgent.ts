import type { LayerRange } from '../model/shardGraph.ts'
import type { OrbanTask, OrbanTaskController, OrbanTaskDecision } from '../orban/createOrbanAgent.ts'
import { shardRangeProblem, shardTaskConfigSchema } from './shardTask.ts'

type ProgressMetrics = Parameters<OrbanTaskController['progress']>[0]['metrics']
type CompleteReport = Parameters<OrbanTaskController['complete']>[0]

/** The task whose range is served now. */
export type ServedTask = { readonly controller: OrbanTaskController; readonly model: string; readonly range: LayerRange; readonly since: number }

export type ShardTaskAgentInit = {
  /** The model served; absent, the first accepted task fixes it (one model per host process). */
  model?: string
  /** How a refusal names this agent: `this host`, `this page`. */
  self: string
  /**
   * Makes `range` of `model` ready to serve for `task`: loads it (reporting `loading` progress on
   * `controller`), or keeps it when it is already what is served. Throws to fail the task.
   */
  loadRange(task: OrbanTask, controller: OrbanTaskController, model: string, range: LayerRange): Promise<void>
  /** The TASK_COMPLETE of a task that a newer one replaced, after `seconds` served. @default no GPU time, no metrics */
  completion?(previous: ServedTask, seconds: number): Omit<CompleteReport, 'result'> & { gpuTimeSec?: number }
  /** Metrics for the `serving` TASK_PROGRESS. */
  servingMetrics?(controller: OrbanTaskController): ProgressMetrics
  /** Told when a task's range is served (after its load, before the replaced task is completed). */
  onServing?(served: ServedTask, previous: ServedTask | undefined): void
  /** Told when a task's load failed (the task is then failed with LOAD_FAILED). */
  onLoadFailed?(error: Error, model: string, range: LayerRange): void
}

export type ShardTaskAgent = {
  /** The Orban agent's `onTask`: validates the task, queues its load, answers at once. */
  onTask(task: OrbanTask, controller: OrbanTaskController): OrbanTaskDecision
  /** The task served now. */
  serving(): ServedTask | undefined
  /** The model fixed so far. */
  model(): string | undefined
  /** Lets the next task fix the model again (its setup failed before anything was served). */
  forgetModel(): void
  /** What METRICS_BATCH aggregates: tasks ended, seconds served. */
  readonly counts: { completed: number; failed: number; servedSeconds: number }
}

/**
 * The shard-task state machine shared by node hosts and pages: a TASK_ASSIGN's config is checked
 * (a shardmesh layer range of the agent's model), its load queued behind the earlier ones (loads
 * run one at a time, in the order the Oracle sent them), `serving` reported once it is ready, and
 * the task it replaces completed. Each agent keeps only how it loads a range.
 */
export function createShardTaskAgent(init: ShardTaskAgentInit): ShardTaskAgent {
  let model = init.model
  let current: ServedTask | undefined
  let chain: Promise<unknown> = Promise.resolve()
  const counts = { completed: 0, failed: 0, servedSeconds: 0 }

  async function load(task: OrbanTask, controller: OrbanTaskController, m: string, range: LayerRange): Promise<void> {
    try {
      await init.loadRange(task, controller, m, range)
    } catch (e) {
      const err = e as Error
      init.onLoadFailed?.(err, m, range)
      controller.fail({ code: 'LOAD_FAILED', message: err.message })
      counts.failed++
      return
    }
    const previous = current
    const replaced = previous && previous.controller !== controller ? previous : undefined
    const seconds = replaced ? (Date.now() - replaced.since) / 1000 : 0
    // Taken before onServing, which may reset what the replaced task's report is made of.
    const report = replaced && init.completion?.(replaced, seconds)
    current = { controller, model: m, range, since: Date.now() }
    init.onServing?.(current, previous)
    controller.progress({ progress: 1, stage: 'serving', metrics: init.servingMetrics?.(controller) })
    if (replaced) {
      const { gpuTimeSec = 0, ...rest } = report ?? {}
      replaced.controller.complete({ result: { output_url: '', output_hash: '', execution_time_sec: seconds, gpu_time_sec: gpuTimeSec }, ...rest })
      counts.completed++
      counts.servedSeconds += seconds
    }
  }

  return {
    onTask(task, controller) {
      const parsed = shardTaskConfigSchema.safeParse(task.payload.config)
      if (!parsed.success) return { accept: false, reason: 'unsupported_task', details: 'this agent serves shardmesh layer ranges only' }
      const cfg = parsed.data
      const problem = shardRangeProblem(cfg)
      if (problem) return { accept: false, reason: 'bad_range', details: problem }
      model ??= cfg.model
      if (cfg.model !== model) return { accept: false, reason: 'other_model', details: `${init.self} serves "${model}"` }
      chain = chain.then(() => load(task, controller, cfg.model, { start: cfg.layer_start, end: cfg.layer_end }))
      return { accept: true }
    },
    serving: () => current,
    model: () => model,
    forgetModel() {
      model = init.model
    },
    counts,
  }
}
