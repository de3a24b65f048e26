import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { LayerRange } from '../model/shardGraph.ts'
import type { OrbanTask, OrbanTaskController } from '../orban/createOrbanAgent.ts'
import { createShardTaskAgent } from './shardTaskAgent.ts'

type Report = { kind: 'progress' | 'complete' | 'fail'; task: string; value: unknown }

/** A TASK_ASSIGN for a layer range, and a controller that records what the agent reports on it. */
function assign(id: string, config: unknown, reports: Report[]): [OrbanTask, OrbanTaskController] {
  const task = { task_id: id, payload: { model_url: '/models/m/', config } } as unknown as OrbanTask
  const controller: OrbanTaskController = {
    task,
    gpu: 0,
    signal: new AbortController().signal,
    progress: (u) => void reports.push({ kind: 'progress', task: id, value: u.stage }),
    complete: (r) => void reports.push({ kind: 'complete', task: id, value: r }),
    fail: (e) => void reports.push({ kind: 'fail', task: id, value: e.code }),
  }
  return [task, controller]
}
const shard = (model: string, start: number, end: number, total = 8) => ({ kind: 'shardmesh.shard', model, layer_start: start, layer_end: end, total_layers: total })
const settle = () => new Promise((r) => setTimeout(r, 20))

test('shard tasks: bad configs and other models are refused; loads run one at a time in order; the replaced task is completed once the new one serves', async () => {
  const reports: Report[] = []
  const loads: Array<{ task: string; range: LayerRange; release: () => void }> = []
  let running = 0
  let most = 0
  const agent = createShardTaskAgent({
    self: 'this host',
    loadRange: (task, _c, _m, range) =>
      new Promise<void>((release) => {
        most = Math.max(most, ++running)
        loads.push({ task: task.task_id, range, release: () => (running--, release()) })
      }),
    completion: (_p, seconds) => ({ gpuTimeSec: seconds, metrics: { avg_gpu_utilization: 0.5, peak_memory_gb: 1, energy_kwh: 0 } }),
  })
  assert.deepEqual(agent.onTask(...assign('x', { kind: 'other' }, reports)), { accept: false, reason: 'unsupported_task', details: 'this agent serves shardmesh layer ranges only' })
  assert.equal(agent.onTask(...assign('y', shard('m', 4, 4), reports)).accept, false)
  assert.equal(agent.model(), undefined, 'a refused task fixes no model')
  assert.deepEqual(agent.onTask(...assign('a', shard('m', 0, 4), reports)), { accept: true })
  assert.equal(agent.model(), 'm')
  assert.deepEqual(agent.onTask(...assign('o', shard('other', 0, 4), reports)), { accept: false, reason: 'other_model', details: 'this host serves "m"' })
  assert.deepEqual(agent.onTask(...assign('b', shard('m', 4, 8), reports)), { accept: true })
  await settle()
  assert.deepEqual(loads.map((l) => l.task), ['a'], 'b waits for a')
  loads[0]!.release()
  await settle()
  assert.equal(agent.serving()?.controller.task.task_id, 'a')
  assert.deepEqual(loads.map((l) => l.task), ['a', 'b'])
  assert.deepEqual(reports.filter((r) => r.task === 'a').map((r) => r.kind), ['progress'])
  loads[1]!.release()
  await settle()
  assert.equal(most, 1)
  assert.deepEqual(agent.serving()?.range, { start: 4, end: 8 })
  const done = reports.find((r) => r.kind === 'complete')!
  assert.equal(done.task, 'a')
  const report = done.value as { result: { execution_time_sec: number; gpu_time_sec: number }; metrics: { avg_gpu_utilization: number } }
  assert.equal(report.result.gpu_time_sec, report.result.execution_time_sec)
  assert.equal(report.metrics.avg_gpu_utilization, 0.5)
  assert.deepEqual(agent.counts, { completed: 1, failed: 0, servedSeconds: report.result.execution_time_sec })
})

test('shard tasks: a failed load fails its task with LOAD_FAILED and keeps serving the previous one; forgetModel lets the next task fix the model', async () => {
  const reports: Report[] = []
  let fail = false
  const failed: string[] = []
  const agent = createShardTaskAgent({
    self: 'this page',
    loadRange: async () => {
      if (fail) throw new Error('no memory')
    },
    onLoadFailed: (e) => void failed.push(e.message),
  })
  agent.onTask(...assign('a', shard('m', 0, 8), reports))
  await settle()
  fail = true
  agent.onTask(...assign('b', shard('m', 0, 4), reports))
  await settle()
  assert.deepEqual(reports.filter((r) => r.task === 'b'), [{ kind: 'fail', task: 'b', value: 'LOAD_FAILED' }])
  assert.deepEqual(failed, ['no memory'])
  assert.equal(agent.serving()?.controller.task.task_id, 'a')
  assert.ok(!reports.some((r) => r.kind === 'complete'), 'a is not completed by a task that never served')
  assert.deepEqual({ ...agent.counts, servedSeconds: 0 }, { completed: 0, failed: 1, servedSeconds: 0 })
  agent.forgetModel()
  assert.equal(agent.onTask(...assign('c', shard('n', 0, 4), reports)).accept, true)
  assert.equal(agent.model(), 'n')
})

test('shard tasks: a fixed model refuses every other from the first task on', () => {
  const agent = createShardTaskAgent({ model: 'm', self: 'this page', loadRange: async () => undefined })
  assert.deepEqual(agent.onTask(...assign('a', shard('n', 0, 4), [])), { accept: false, reason: 'other_model', details: 'this page serves "m"' })
})
