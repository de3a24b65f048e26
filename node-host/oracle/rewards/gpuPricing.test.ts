import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { silentLogger } from '../../../shared/logger.ts'
import { createOrbanAgent, type OrbanAgent, type OrbanTask } from '../../../shared/orban/createOrbanAgent.ts'
import type { OrbanMessageOf } from '../../../shared/orban/orbanMessages.ts'
import { createOracle, type Oracle } from '../createOracle.ts'
import { GpuPricingConfigError, parseGpuPricing } from './gpuPricing.ts'
import { readModelInfo } from '../modelInfo.ts'

// The Oracle's pricing per GPU class reaches the agent in REGISTER_ACK, TASK_ASSIGN and the
// EARNINGS_RECORD booked when its task completes.

let oracle: Oracle
const agents: OrbanAgent[] = []
before(async () => {
  oracle = await createOracle({
    db: ':memory:',
    models: [await readModelInfo(undefined)],
    port: 0,
    logger: silentLogger,
    pricing: { base_rate_usd_per_hour: 0.5, classes: { H100: 4, 'RTX 4090': 1.6 }, default_multiplier: 1, cpu_multiplier: 0.1 },
  })
})
after(async () => {
  for (const a of agents) await a.stop()
  await oracle.close()
})

async function agentWith(gpus: Array<{ model: string; vram_gb: number }>) {
  const tasks: OrbanTask[] = []
  const earnings: Array<OrbanMessageOf<'EARNINGS_RECORD'>> = []
  const agent = await createOrbanAgent({
    url: oracle.url,
    key: (await generateKeyPair('Ed25519')).raw,
    heartbeatIntervalMs: 60_000,
    registration: {
      hardware: { gpus: gpus.map((g, index) => ({ index, vendor: 'NVIDIA', model: g.model, vram_gb: g.vram_gb, compute_capability: '9.0', cuda_cores: null, pcie_bandwidth_gbps: 64 })), cpu: { model: 'test', cores: 2, threads: 2 }, memory_gb: 16, storage_available_gb: 10 },
      capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 1, fp16_support: true, int8_support: false },
      location: { country: '', region: '', latency_to_platform_ms: 0 },
      availability: { hours_per_day: 24, reliability_score: 1 },
    },
    onTask: (task, controller) => {
      tasks.push(task)
      setTimeout(() => {
        controller.progress({ progress: 1, stage: 'serving' })
        controller.complete({ result: { output_url: '', output_hash: '', execution_time_sec: 0.01, gpu_time_sec: 0.01 } })
      }, 10)
      return { accept: true }
    },
  })
  agent.on('earnings', (e) => earnings.push(e))
  agents.push(agent)
  await agent.ready()
  return { agent, tasks, earnings }
}

async function waitFor<T>(what: string, fn: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const v = fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

test('an H100 agent is offered, assigned and paid at the configured H100 rate; a CPU agent at the CPU rate', async () => {
  const h100 = await agentWith([{ model: 'NVIDIA H100 80GB HBM3', vram_gb: 80 }])
  assert.deepEqual(h100.agent.pricing, { base_rate_usd_per_hour: 0.5, gpu_multiplier: 4, effective_rate: 2 })
  const task = await waitFor('a task', () => h100.tasks[0])
  assert.deepEqual(task.pricing, { base_rate_usd_per_hour: 0.5, gpu_multiplier: 4, effective_rate: 2 })
  const record = await waitFor('an earnings record', () => h100.earnings[0])
  assert.equal(record.earnings.rate_usd_per_hour, 2)
  assert.equal(record.task_id, task.task_id)

  const cpu = await agentWith([])
  assert.deepEqual(cpu.agent.pricing, { base_rate_usd_per_hour: 0.5, gpu_multiplier: 0.1, effective_rate: 0.05 })
  const other = await agentWith([{ model: 'Tesla T4', vram_gb: 16 }])
  assert.equal(other.agent.pricing!.gpu_multiplier, 1)
})

test('a pricing configuration that is not the schema is refused with its field named', () => {
  assert.throws(() => parseGpuPricing({ base_rate_usd_per_hour: -1 }), GpuPricingConfigError)
  assert.throws(() => parseGpuPricing({ base_rate_usd_per_hour: 1, classes: { H100: 'four' } }), /classes\.H100/)
  assert.throws(() => parseGpuPricing({ base_rate_usd_per_hour: 1, surprise: true }), GpuPricingConfigError)
})
