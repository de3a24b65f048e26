import assert from 'node:assert/strict'
import { readFile, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { silentLogger } from '../../shared/logger.ts'
import { createLogger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { createOracle, type Oracle } from '../oracle/createOracle.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { createFakeNvidiaSmi } from '../../testing/fakeNvidiaSmi.ts'
import { tapWebSocket } from '../../testing/tapWebSocket.ts'
import { waitFor } from '../../testing/waitFor.ts'
import { checkUpstreamFrame } from '../../testing/upstreamOrbanTypes.ts'
import { parsePromText, promValue, type PromFamily } from '../../testing/promText.ts'
import { formatEarnings } from '../cli/earningsCommand.ts'
import { openEarningsStore } from './earningsStore.ts'
import { createGpuTelemetry } from './gpuTelemetry.ts'
import { runOracleAgent } from './runOracleAgent.ts'

// A real node host under a real Oracle (HTTP API, SQLite, Orban channel), its GPUs read through an
// `nvidia-smi` on PATH that prints a fixture of the real CSV: heartbeats carry the readings, both
// /metrics endpoints parse as Prometheus text and move after a generation, earnings the Oracle
// books survive the agent's restart.

const MODEL = 'docs-llama-7m'
let oracle: Oracle
let key: PrivateKey
let dataDir: string
type Running = Awaited<ReturnType<typeof runOracleAgent>>
let running: Running | undefined
const tap = tapWebSocket()
const earningsPath = () => join(dataDir, 'earnings.json')

async function startAgent(): Promise<Running> {
  const node = await createNodeLibp2p({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], relay: false })
  return runOracleAgent({
    oracle: oracle.url,
    node,
    privateKey: key,
    device: 'cpu',
    weights: 'float32',
    bootstrap: [],
    apiPort: 0,
    heartbeatIntervalMs: 150,
    liveMetricsIntervalMs: 150,
    metricsIntervalMs: 300,
    telemetry: createGpuTelemetry({ intervalMs: 100 }),
    earnings: await openEarningsStore(earningsPath()),
    WebSocket: tap.WebSocket,
    logger: createLogger('test', 'silent'),
  })
}

async function scrape(url: string, auth?: string): Promise<Map<string, PromFamily>> {
  const res = await fetch(`${url}/metrics`, { headers: auth ? { Authorization: auth } : {} })
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return parsePromText(await res.text())
}

before(async () => {
  const smi = await createFakeNvidiaSmi()
  await smi.setOutput(await readFile(new URL('../../testing/fixtures/nvidia-smi-h100x2.csv', import.meta.url), 'utf8'))
  await smi.setHardwareOutput(await readFile(new URL('../../testing/fixtures/nvidia-smi-h100x2-hardware.csv', import.meta.url), 'utf8'))
  process.env.PATH = `${smi.dir}:${process.env.PATH}`
  dataDir = await mkdtemp(join(tmpdir(), 'agent-data-'))
  oracle = await createOracle({ db: ':memory:', models: [await readModelInfo(undefined)], port: 0, logger: silentLogger })
  key = await generateKeyPair('Ed25519')
  running = await startAgent()
})
/** Teardown must not hold the file open: a stop that hangs is reported, not waited on forever. */
const bounded = (what: string, p: Promise<unknown> | undefined) =>
  Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} did not finish in 20 s`)), 20_000).unref())])
after(async () => {
  await bounded('the agent stop', running?.stop())
  await bounded('the Oracle close', oracle?.close())
})

test('heartbeats carry the GPU readings nvidia-smi gives (fan [N/A] of passively cooled cards as 0)', async () => {
  const heartbeat = await waitFor('a heartbeat with GPU status', () => {
    const hb = oracle.orban.agents().find((a) => a.agentId === running!.agent.agentId)?.heartbeat
    return hb && hb.gpu_status.length ? hb : undefined
  })
  assert.deepEqual(heartbeat.gpu_status, [
    { index: 0, utilization: 87, memory_used_gb: 59.799, memory_total_gb: 79.647, temperature_c: 62, power_draw_w: 512.34, fan_speed_percent: 0 },
    { index: 1, utilization: 0, memory_used_gb: 0.004, memory_total_gb: 79.647, temperature_c: 31, power_draw_w: 69.87, fan_speed_percent: 0 },
  ])
})

test('/metrics of the host and of the Oracle parse as Prometheus text and move after a generation', async () => {
  const agentId = running!.agent.agentId
  await waitFor('the host serving its range', () => (oracle.core.node(agentId)?.ready ? true : undefined))
  const apiUrl = running!.host()!.apiUrl()!
  const before = await scrape(apiUrl)
  assert.equal(promValue(before, 'shardmesh_host_tokens_total', { kind: 'completion' }) ?? 0, 0)
  assert.equal(promValue(before, 'shardmesh_gpu_utilization_percent', { gpu: '0' }), 87)
  assert.equal(promValue(before, 'shardmesh_gpu_power_watts', { gpu: '1' }), 69.87)
  assert.equal(promValue(before, 'shardmesh_gpu_memory_total_bytes', { gpu: '0' }), 81559 * 1024 * 1024)
  assert.equal(promValue(before, 'shardmesh_gpu_fan_speed_percent', { gpu: '0' }), undefined, 'an unknown fan speed is absent, not 0')
  assert.equal(promValue(before, 'shardmesh_host_layers_served'), 8)

  const res = await fetch(`${apiUrl}/api/v1/generate`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ inputs: 'The layers of a model', parameters: { max_new_tokens: 6, do_sample: false } }),
  })
  assert.equal(res.status, 200)
  const generated = (await res.json()) as { num_tokens: number }
  const after = await scrape(apiUrl)
  assert.equal(promValue(after, 'shardmesh_host_tokens_total', { kind: 'completion' }), generated.num_tokens)
  assert.ok(promValue(after, 'shardmesh_host_tokens_total', { kind: 'prompt' })! > 0)
  assert.equal(promValue(after, 'shardmesh_host_generations_total', { api: 'plumise', outcome: 'ok' }), 1)
  assert.equal(promValue(after, 'shardmesh_host_step_latency_seconds_count', { phase: 'prefill' }), 1)
  assert.equal(promValue(after, 'shardmesh_host_step_latency_seconds_count', { phase: 'decode' }), generated.num_tokens - 1)
  assert.equal(promValue(after, 'shardmesh_host_step_batch_size_count'), generated.num_tokens)
  assert.equal(promValue(after, 'shardmesh_host_step_batch_size_bucket', { le: '1' }), generated.num_tokens - 1, 'decode steps are batches of one position')
  assert.ok(promValue(after, 'shardmesh_host_shard_tokens_total')! > (promValue(before, 'shardmesh_host_shard_tokens_total') ?? 0))
  assert.equal(typeof promValue(after, 'shardmesh_host_kv_cache_bytes'), 'number', 'KV cache bytes exported (0 once the session is released)')
  assert.ok(promValue(after, 'shardmesh_gpu_energy_kwh')! > 0, 'energy integrated from power draw')

  const o1 = await scrape(oracle.url)
  assert.equal(promValue(o1, 'shardmesh_oracle_nodes', { model: MODEL, kind: 'orban', state: 'ready' }), 1)
  assert.equal(promValue(o1, 'shardmesh_oracle_layers_covered', { model: MODEL }), 8)
  assert.equal(promValue(o1, 'shardmesh_oracle_model_layers', { model: MODEL }), 8)
  assert.equal(promValue(o1, 'shardmesh_oracle_layer_replicas_min', { model: MODEL }), 1)
  assert.ok(promValue(o1, 'shardmesh_oracle_assignments_total', { model: MODEL, change: 'assigned' })! >= 1)
  assert.equal(promValue(o1, 'shardmesh_oracle_orban_agents', { state: 'active' }), 1)
  assert.equal(promValue(o1, 'shardmesh_oracle_orban_connections_open'), 1)
  assert.ok(promValue(o1, 'shardmesh_oracle_orban_events_total', { event: 'messages_in' })! > 0)
  const refusedBefore = promValue(o1, 'shardmesh_oracle_http_refusals_total', { reason: 'not_found' }) ?? 0
  assert.equal((await fetch(`${oracle.url}/no/such/route`)).status, 404)
  const o2 = await scrape(oracle.url)
  assert.equal(promValue(o2, 'shardmesh_oracle_http_refusals_total', { reason: 'not_found' }), refusedBefore + 1)

  // Every metric the Grafana dashboard queries is one the host or the Oracle exports.
  const dashboard = await readFile(new URL('../../docs/grafana/shardmesh.json', import.meta.url), 'utf8')
  const queried = new Set([...dashboard.matchAll(/shardmesh_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')))
  const exported = new Set([...after.keys(), ...o2.keys()])
  assert.deepEqual([...queried].filter((n) => !exported.has(n)), [])
  assert.ok(queried.size >= 20)
})

test('METRICS_BATCH carries energy integrated from power draw and the mean utilization', async () => {
  const agentId = running!.agent.agentId
  const batch = await waitFor('a metrics batch with energy', async () => {
    const rows = await oracle.orbanStore.metrics(agentId, 20)
    return rows.find((r) => r.aggregated.total_energy_kwh > 0)
  })
  // Both fixture GPUs: 87 % and 0 %, a mean of 43.5 %.
  // (a time-weighted mean: equal to float rounding)
  assert.ok(Math.abs(batch.aggregated.avg_gpu_utilization - 43.5) < 1e-9, String(batch.aggregated.avg_gpu_utilization))
})

test('earnings the Oracle books survive an agent restart', async () => {
  const agentId = running!.agent.agentId
  const book = (taskId: string, usd: number) =>
    oracle.orban.sendEarnings(agentId, {
      task_id: taskId,
      earnings: { gpu_hours: 0.5, rate_usd_per_hour: usd * 2, amount_usd: usd, bonus_multiplier: 1, final_amount_usd: usd },
      status: 'Pending',
      estimated_payout_date: '2026-12-04',
    })
  assert.deepEqual(await book('task-a', 0.25), { delivered: true })
  await waitFor('the record saved', async () => ((await openEarningsStore(earningsPath())).summary().history.length === 1 ? true : undefined), 10_000)
  await running!.stop()
  running = await startAgent()
  await running.agent.ready()
  await book('task-b', 0.5)
  const summary = await waitFor('both records', async () => {
    const s = (await openEarningsStore(earningsPath())).summary()
    return s.history.length === 2 ? s : undefined
  }, 10_000)
  assert.equal(summary.totalUsd, 0.75)
  assert.equal(summary.todayUsd, 0.75)
  assert.equal(summary.pendingUsd, 0.75)
  assert.deepEqual(summary.history.map((r) => r.task_id), ['task-a', 'task-b'])
  assert.match(formatEarnings(summary), /total \$0\.750000 {2}today \$0\.750000 {2}pending \$0\.750000/)
})

test('every frame on the wire, both ways, fits upstream\'s types (integers, required fields, RFC 3339)', () => {
  const types = new Set([...tap.sent, ...tap.received].map(checkUpstreamFrame))
  for (const t of ['AUTH_RESPONSE', 'AGENT_REGISTER', 'TASK_ACCEPT', 'TASK_PROGRESS', 'HEARTBEAT', 'METRICS_BATCH', 'POW_RESPONSE'] as const) assert.ok(types.has(t), `the host sent ${t}`)
  for (const t of ['AUTH_CHALLENGE', 'AUTH_SUCCESS', 'REGISTER_ACK', 'TASK_ASSIGN', 'POW_CHALLENGE', 'EARNINGS_RECORD'] as const) assert.ok(types.has(t), `the Oracle sent ${t}`)
  const register = JSON.parse(tap.sent.find((f) => f.includes('"AGENT_REGISTER"'))!) as { hardware: { gpus: Array<{ model: string; vram_gb: number }> } }
  assert.deepEqual(register.hardware.gpus.map((g) => [g.model, g.vram_gb]), [['NVIDIA H100 80GB HBM3', 79], ['NVIDIA H100 80GB HBM3', 79]])
  const progress = tap.sent.map((f) => JSON.parse(f) as { type: string; metrics?: { throughput_tokens_per_sec: number | null; gpu_utilization: number }; served?: { tokens: number; steps: number; sessions: number } }).filter((f) => f.type === 'TASK_PROGRESS')
  assert.ok(progress.some((f) => (f.metrics?.throughput_tokens_per_sec ?? 0) > 0), 'a live TASK_PROGRESS carried the tokens/s served')
  const served = progress.filter((f) => f.served && f.served.tokens > 0)
  assert.ok(served.length > 0 && served.every((f) => Number.isInteger(f.served!.tokens) && f.served!.steps >= 1 && f.served!.sessions >= 1), 'and the served counters (shardmesh\'s extension: whole tokens, steps, sessions)')
  assert.ok(progress.every((f) => f.metrics?.gpu_utilization === 87), 'the task\'s GPU (0) utilization')
})
