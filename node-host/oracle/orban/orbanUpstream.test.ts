import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { DatabaseSync } from 'node:sqlite'
import { test } from 'node:test'
import * as ed from '@noble/ed25519'
import { WebSocket as WsClient } from 'ws'
import type { Logger } from '../../../shared/logger.ts'
import { base64ToBytes, bytesToBase64 } from '../../../shared/orban/base64.ts'
import { createOrbanAgent, type OrbanRegistration, type OrbanTaskController } from '../../../shared/orban/createOrbanAgent.ts'
import { agentIdOf } from '../../../shared/identity/orbanIdentity.ts'
import { ORBAN_PATH, ORBAN_SUBPROTOCOL, type OrbanPayloadInput } from '../../../shared/orban/orbanMessages.ts'
import { tapWebSocket } from '../../../testing/tapWebSocket.ts'
import { checkUpstreamFrame } from '../../../testing/upstreamOrbanTypes.ts'
import { createOracle } from '../createOracle.ts'
import { readModelInfo } from '../modelInfo.ts'
import { createOrbanChannel, type CreateOrbanChannelInit } from './orbanChannel.ts'
import { createSqliteOrbanStore } from './sqliteOrbanStore.ts'

// The upstream Orban agent reads frames into strict serde types and drops any that does not fit;
// it sends neither HEARTBEAT nor TASK_ACCEPT. Our frames are checked against a transcription of
// its types (testing/upstreamOrbanTypes.ts), and an agent like it keeps its place by its socket.

const registration: OrbanRegistration = {
  hardware: {
    gpus: [{ index: 0, vendor: 'NVIDIA', model: 'NVIDIA GeForce RTX 4090', vram_gb: 24, compute_capability: '8.9', cuda_cores: 16384, pcie_bandwidth_gbps: 32 }],
    cpu: { model: 'AMD Ryzen 9 7950X', cores: 16, threads: 32 },
    memory_gb: 64,
    storage_available_gb: 500,
  },
  capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 8, fp16_support: true, int8_support: false },
  location: { country: 'TW', region: 'asia-east1', latency_to_platform_ms: 1 },
  availability: { hours_per_day: 24, reliability_score: 0.99 },
}

function task(taskId: string, minVramGb = 12): OrbanPayloadInput<'TASK_ASSIGN'> {
  return {
    task_id: taskId,
    job_id: 'job-1',
    priority: 1,
    estimated_duration_sec: 60,
    requirements: { min_vram_gb: minVramGb, min_compute_capability: '7.5', framework: 'onnxruntime', fp16: true },
    payload: { model_url: 'hf://m', model_hash: 'sha256:00', input_data_url: '', output_url: '', config: { max_tokens: 8 } },
    pricing: { base_rate_usd_per_hour: 0.5, gpu_multiplier: 2.4, effective_rate: 1.2 },
  }
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = fn()
    if (v) return v
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function platform(init: Partial<CreateOrbanChannelInit> = {}) {
  const channel = createOrbanChannel({ store: createSqliteOrbanStore(new DatabaseSync(':memory:')), powTimeoutMs: 5000, acceptTimeoutMs: 5000, ...init })
  const server: Server = createServer((_req, res) => res.writeHead(404).end())
  server.on('upgrade', channel.handleUpgrade)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  return {
    channel,
    url,
    async close() {
      await channel.close()
      server.close()
    },
  }
}

/** A logger that keeps what it is told. */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  const keep = (_o: object, msg?: string) => void lines.push(msg ?? '')
  return { lines, debug: keep, info: keep, warn: keep, error: keep }
}

test('every frame type both sides send fits upstream\'s types: task reject, fail, complete, payout, errors, state sync', async () => {
  const p = await platform({ powDifficulty: 1 })
  const tap = tapWebSocket()
  const controllers: OrbanTaskController[] = []
  const agent = await createOrbanAgent({
    url: p.url,
    key: ed.utils.randomSecretKey(),
    registration,
    heartbeatIntervalMs: 100,
    maxPowDifficulty: 4,
    reconnect: { baseDelayMs: 50 },
    WebSocket: tap.WebSocket,
    onTask: (t, controller) => {
      if (t.task_id === 'reject-me') return { accept: false, reason: 'busy', details: 'try later' }
      controllers.push(controller)
      return { accept: true }
    },
  })
  try {
    await agent.ready()
    assert.deepEqual(await p.channel.assignTask(agent.agentId, task('reject-me')), { rejected: 'busy', details: 'try later' })
    assert.equal(await p.channel.assignTask(agent.agentId, task('fail-me')), 'accepted')
    controllers[0]!.fail({ code: 'OOM', message: 'out of memory' })
    assert.equal(await p.channel.assignTask(agent.agentId, task('complete-me')), 'accepted')
    controllers[1]!.progress({ progress: 0.5, stage: 'running', metrics: { gpu_utilization: 50, memory_used_gb: 3.5, throughput_tokens_per_sec: 12.5 } })
    controllers[1]!.complete({ result: { output_url: '', output_hash: '', execution_time_sec: 1.5, gpu_time_sec: 1.5 } })
    assert.equal(await p.channel.assignTask(agent.agentId, task('run-across-reconnect')), 'accepted')
    assert.equal(await p.channel.challengePow(agent.agentId), true)
    // Too hard for this agent: it answers with an ERROR frame.
    assert.equal(await p.channel.challengePow(agent.agentId, 30), false)
    await p.channel.sendEarnings(agent.agentId, { task_id: 'complete-me', earnings: { gpu_hours: 0.0004, rate_usd_per_hour: 1.2, amount_usd: 0.0005, bonus_multiplier: 1, final_amount_usd: 0.0005 }, status: 'Pending', estimated_payout_date: '2026-12-04' })
    assert.ok(p.channel.sendPayout(agent.agentId, { payout_id: randomUUID(), period: { start: '2026-11-01', end: '2026-11-30' }, summary: { total_tasks: 3, total_gpu_hours: 1.5, gross_amount_usd: 1.8, platform_fee_usd: 0.18, net_amount_usd: 1.62 }, payment_method: 'crypto', payment_address: '0x0000000000000000000000000000000000000001', status: 'Processing' }))
    assert.ok(agent.sendMetrics({ aggregated_metrics: { tasks_completed: 1, tasks_failed: 1, total_gpu_hours: 0.0004, avg_gpu_utilization: 50, total_energy_kwh: 0.0001, earnings_usd: 0.0005 } }))
    await until('earnings, payout and metrics through', () => tap.received.some((f) => f.includes('"PAYOUT_NOTIFICATION"')) && tap.received.some((f) => f.includes('"EARNINGS_RECORD"')))
    // A dropped socket brings STATE_SYNC after the reconnect.
    const before = tap.received.length
    p.channel.disconnect(agent.agentId)
    await until('a state sync', () => tap.sent.some((f) => f.includes('"STATE_SYNC"')))
    await until('the heartbeat after reconnecting', () => tap.received.length > before && tap.sent.filter((f) => f.includes('"HEARTBEAT"')).length > 1)
    const types = new Set([...tap.sent, ...tap.received].map(checkUpstreamFrame))
    const missing = ['AUTH_CHALLENGE', 'AUTH_RESPONSE', 'AUTH_SUCCESS', 'AGENT_REGISTER', 'REGISTER_ACK', 'TASK_ASSIGN', 'TASK_ACCEPT', 'TASK_REJECT', 'TASK_PROGRESS', 'TASK_COMPLETE', 'TASK_FAILED', 'HEARTBEAT', 'METRICS_BATCH', 'EARNINGS_RECORD', 'PAYOUT_NOTIFICATION', 'POW_CHALLENGE', 'POW_RESPONSE', 'ERROR', 'STATE_SYNC'].filter((t) => !types.has(t as never))
    assert.deepEqual(missing, [])
  } finally {
    await agent.stop()
    await p.close()
  }
})

test('the schema catches what upstream would drop: a fraction where it has an integer, a missing field, a non-RFC 3339 time', () => {
  const frame = (payload: Record<string, unknown>) => JSON.stringify({ message_id: randomUUID(), timestamp: new Date().toISOString(), ...payload })
  const ok = { type: 'TASK_ACCEPT', task_id: 't', agent_id: 'a', gpu_allocated: 0, estimated_completion: new Date().toISOString() }
  assert.equal(checkUpstreamFrame(frame(ok)), 'TASK_ACCEPT')
  assert.throws(() => checkUpstreamFrame(frame({ ...ok, gpu_allocated: 0.5 })), /gpu_allocated/)
  assert.throws(() => checkUpstreamFrame(frame({ ...ok, estimated_completion: 1_700_000_000 })), /estimated_completion/)
  const { agent_id: _a, ...noAgent } = ok
  assert.throws(() => checkUpstreamFrame(frame(noAgent)), /agent_id/)
  assert.throws(() => checkUpstreamFrame(frame({ type: 'TASK_ASSIGN', ...task('x', 0.03) })), /min_vram_gb/)
})

/** An agent as upstream writes it: raw-challenge signature, no mesh, no HEARTBEAT, no TASK_ACCEPT; reports progress on what it is given. */
async function upstreamAgent(url: string, options: { autoPong?: boolean } = {}) {
  const seed = ed.utils.randomSecretKey()
  const publicKey = await ed.getPublicKeyAsync(seed)
  const agentId = agentIdOf(publicKey)
  const ws = new WsClient(`${url.replace('http', 'ws')}${ORBAN_PATH}`, ORBAN_SUBPROTOCOL, { autoPong: options.autoPong ?? true })
  const send = (type: string, payload: Record<string, unknown>) => ws.send(JSON.stringify({ message_id: randomUUID(), timestamp: new Date().toISOString(), type, ...payload }))
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
  ws.on('message', async (data) => {
    const m = JSON.parse(String(data)) as Record<string, unknown> & { type: string }
    if (m.type === 'AUTH_CHALLENGE') {
      const signature = await ed.signAsync(base64ToBytes(m.challenge as string), seed)
      send('AUTH_RESPONSE', { agent_id: agentId, signature: bytesToBase64(signature), public_key: bytesToBase64(publicKey) })
    } else if (m.type === 'AUTH_SUCCESS') send('AGENT_REGISTER', { agent_id: agentId, ...registration })
    else if (m.type === 'POW_CHALLENGE') send('POW_RESPONSE', { challenge_id: m.challenge_id, response: '00', computation_time_ms: 1, gpu_signature: { device_uuid: 'GPU-0', cuda_version: '12.4' } })
    else if (m.type === 'TASK_ASSIGN') send('TASK_PROGRESS', { task_id: m.task_id, progress: 1, stage: 'serving', metrics: { gpu_utilization: 10, memory_used_gb: 1, throughput_tokens_per_sec: null } })
  })
  return { agentId, ws, closed }
}

test('an upstream agent that sends no HEARTBEAT and no TASK_ACCEPT keeps its place by its socket, and the log says what it does not send', async () => {
  const logger = recordingLogger()
  const oracle = await createOracle({ db: ':memory:', models: [await readModelInfo(undefined)], port: 0, logger, heartbeatTimeoutMs: 400, silenceMs: 1500 })
  const agent = await upstreamAgent(oracle.url)
  try {
    // Its TASK_PROGRESS on the range is taken as acceptance: the node serves.
    await until('the upstream agent serving its range', () => oracle.core.node(agent.agentId)?.ready)
    // Well past the heartbeat timeout and the core's silence window, it is still connected and
    // still in the assignment (stale: it says nothing, but its socket answers pings).
    await new Promise((r) => setTimeout(r, 2500))
    const view = oracle.orban.agents().find((a) => a.agentId === agent.agentId)
    assert.ok(view, 'still connected')
    assert.equal(view.heartbeat, undefined)
    assert.ok(oracle.core.node(agent.agentId), 'still a node of the assignment')
    assert.ok(logger.lines.some((l) => l.includes('sends no HEARTBEAT')), 'a log line names the missing HEARTBEAT')
    assert.ok(logger.lines.some((l) => l.includes('sends no TASK_ACCEPT')), 'a log line names the missing TASK_ACCEPT')
  } finally {
    agent.ws.close()
    await oracle.close()
  }
})

test('a socket that answers no pings is closed as dead', async () => {
  const p = await platform({ heartbeatTimeoutMs: 300, pingIntervalMs: 100 })
  const agent = await upstreamAgent(p.url, { autoPong: false })
  try {
    await until('registered', () => p.channel.agents().some((a) => a.agentId === agent.agentId))
    const code = await Promise.race([agent.closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000))])
    assert.notEqual(code, -1, 'the platform closed the socket')
    await until('the channel to forget the dead socket', () => p.channel.agents().length === 0)
  } finally {
    agent.ws.terminate()
    await p.close()
  }
})
