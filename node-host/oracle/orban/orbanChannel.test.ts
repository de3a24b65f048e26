import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as ed from '@noble/ed25519'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { test, type TestContext } from 'node:test'
import { WebSocketServer, WebSocket as WsClient } from 'ws'
import { bytesToBase64 } from '../../../shared/orban/base64.ts'
import { createOrbanAgent, type OrbanAgent, type OrbanRegistration, type OrbanTaskController } from '../../../shared/orban/createOrbanAgent.ts'
import { agentIdOf, createOrbanIdentity, signOrbanChallenge } from '../../../shared/identity/orbanIdentity.ts'
import { peerIdOfEd25519 } from '../../../shared/orban/orbanMeshClaims.ts'
import {
  createOrbanMessage,
  encodeOrbanMessage,
  ORBAN_PATH,
  ORBAN_SUBPROTOCOL,
  parseOrbanMessage,
  type OrbanMessage,
  type OrbanMessageOf,
  type OrbanMessageType,
  type OrbanPayloadInput,
} from '../../../shared/orban/orbanMessages.ts'
import { toProtobuf } from '../../../shared/orban/orbanProtobuf.ts'
import { proofOfWorkHash, verifyProofOfWork } from '../../../shared/orban/proofOfWork.ts'
import { freePort } from '../../net/freePort.ts'
import { createOrbanChannel, ipBucket, OrbanAgentUnavailableError, orbanPricing, type CreateOrbanChannelInit, type OrbanConnectedAgent } from './orbanChannel.ts'
import { verifyOrbanJwt } from './orbanJwt.ts'
import { createSqliteOrbanStore } from './sqliteOrbanStore.ts'

const registration: OrbanRegistration = {
  hardware: {
    gpus: [{ index: 0, vendor: 'NVIDIA', model: 'GeForce RTX 4090', vram_gb: 24, compute_capability: '8.9', cuda_cores: 16384, pcie_bandwidth_gbps: 64 }],
    cpu: { model: 'AMD Ryzen 9 7950X', cores: 16, threads: 32 },
    memory_gb: 64,
    storage_available_gb: 500,
  },
  capabilities: { supported_frameworks: ['onnx'], max_batch_size: 8, fp16_support: true, int8_support: false },
  location: { country: 'TW', region: 'asia-east1', latency_to_platform_ms: 1 },
  availability: { hours_per_day: 24, reliability_score: 0.99 },
}

/** The registration with the mesh claim a key can back: its own peer id, an address ending in it. */
function registrationFor(publicKey: Uint8Array): OrbanRegistration {
  const peerId = peerIdOfEd25519(publicKey)
  return { ...registration, mesh: { peer_id: peerId, multiaddrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${peerId}`] } }
}

function task(taskId: string, minVramGb = 12): OrbanPayloadInput<'TASK_ASSIGN'> {
  return {
    task_id: taskId,
    job_id: 'job-1',
    priority: 1,
    estimated_duration_sec: 60,
    requirements: { min_vram_gb: minVramGb, min_compute_capability: '7.5', framework: 'onnx', fp16: true },
    payload: { model_url: 'hf://m', model_hash: 'sha256:00', input_data_url: 'mem://in', output_url: 'mem://out', config: { max_tokens: 8 } },
    pricing: { base_rate_usd_per_hour: 0.5, gpu_multiplier: 2.4, effective_rate: 1.2 },
  }
}

/** Polls until `predicate` holds (a wait, not a timing assertion: it fails only if it never holds). */
async function until<T>(predicate: () => T | undefined | false, what: string, timeoutMs = 5000): Promise<T> {
  const started = Date.now()
  for (;;) {
    const value = predicate()
    if (value) return value
    if (Date.now() - started > timeoutMs) assert.fail(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

type HookLog = { name: string; agentId: string; value: unknown; args: unknown[] }[]

/** A channel with a SQLite store on a loopback HTTP server; every hook call is logged. */
async function startPlatform(t: TestContext, options: { dbPath?: string; port?: number } & Partial<CreateOrbanChannelInit> = {}) {
  const db = new DatabaseSync(options.dbPath ?? ':memory:')
  const store = createSqliteOrbanStore(db)
  const hookLog: HookLog = []
  const record =
    (name: string) =>
    (...args: unknown[]) =>
      void hookLog.push({ name, agentId: typeof args[0] === 'string' ? args[0] : (args[0] as { agentId: string }).agentId, value: args.at(-1), args })
  const channel = createOrbanChannel({
    store,
    jwtSecret: 'test-secret',
    hooks: {
      onRegister: record('register'),
      onHeartbeat: record('heartbeat'),
      onSilent: record('silent'),
      onDisconnect: record('disconnect'),
      onTaskProgress: record('progress'),
      onTaskComplete: record('complete'),
      onTaskFailed: record('failed'),
      onStateSync: record('sync'),
      onMetrics: record('metrics'),
      onAgentError: record('agentError'),
    },
    powTimeoutMs: 5000,
    acceptTimeoutMs: 5000,
    ...options,
  })
  const server = createServer((_req, res) => res.writeHead(404).end())
  server.on('upgrade', channel.handleUpgrade)
  const port = options.port ?? (await freePort())
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    await channel.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    db.close()
  }
  t.after(stop)
  const hooks = (name: string) => hookLog.filter((h) => h.name === name)
  return { url: `ws://127.0.0.1:${port}`, port, channel, store, hooks, stop }
}

async function startAgent(t: TestContext, url: string, init: Partial<Parameters<typeof createOrbanAgent>[0]> = {}): Promise<OrbanAgent> {
  const key = init.key ?? (await generateKeyPair('Ed25519')).raw
  const { publicKey } = await createOrbanIdentity(key)
  const agent = await createOrbanAgent({ url, key, registration: registrationFor(publicKey), heartbeatIntervalMs: 10_000, reconnect: { baseDelayMs: 20 }, ...init })
  t.after(() => agent.stop())
  return agent
}

/** A hand-driven client on the `ws` package, to misbehave on purpose. */
async function rawClient(url: string, protocols: string | string[] = ORBAN_SUBPROTOCOL) {
  const ws = new WsClient(url + ORBAN_PATH, protocols)
  const inbox: OrbanMessage[] = []
  const waiters: Array<() => void> = []
  ws.on('message', (data) => {
    inbox.push(parseOrbanMessage(data.toString()))
    for (const w of waiters.splice(0)) w()
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  async function next<K extends OrbanMessageType>(type: K): Promise<OrbanMessageOf<K>> {
    for (;;) {
      const index = inbox.findIndex((m) => m.type === type)
      if (index >= 0) return inbox.splice(index, 1)[0] as unknown as OrbanMessageOf<K>
      await Promise.race([new Promise<void>((r) => waiters.push(r)), closed.then(() => assert.fail(`closed while waiting for ${type}`))])
    }
  }
  const send = <K extends OrbanMessageType>(type: K, payload: OrbanPayloadInput<K>) => ws.send(encodeOrbanMessage(type, payload))
  /** Authenticates (and registers) with a fresh key unless one is given. */
  async function login(options: { seed?: Uint8Array; agentId?: string; register?: boolean } = {}) {
    const identity = await createOrbanIdentity(options.seed ?? randomBytes(32), options.agentId)
    const challenge = await next('AUTH_CHALLENGE')
    send('AUTH_RESPONSE', { agent_id: identity.agentId, signature: await signOrbanChallenge(identity.seed, challenge.challenge), public_key: bytesToBase64(identity.publicKey) })
    await next('AUTH_SUCCESS')
    if (options.register !== false) {
      send('AGENT_REGISTER', { agent_id: identity.agentId, ...registrationFor(identity.publicKey) })
      await next('REGISTER_ACK')
    }
    return identity
  }
  return { ws, inbox, next, send, login, closed }
}

/** The HTTP status a refused upgrade answered. */
function refusedStatus(url: string, protocols?: string | string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = protocols === undefined ? new WsClient(url) : new WsClient(url, protocols)
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0)
      res.resume()
      ws.terminate()
    })
    ws.on('open', () => reject(new Error('the upgrade was accepted')))
    ws.on('error', () => {})
  })
}

test('handshake, registration, heartbeats, a task from assignment to completion, metrics, a verified proof of work', async (t) => {
  const platform = await startPlatform(t)
  const key = await generateKeyPair('Ed25519')
  let controller: OrbanTaskController | undefined
  const asked: string[] = []
  const agent = await startAgent(t, platform.url, {
    key: key.raw,
    heartbeatIntervalMs: 40,
    onTask: (assigned, ctl) => {
      asked.push(assigned.task_id)
      controller = ctl
      // Reported before the decision went out: must still arrive after TASK_ACCEPT.
      ctl.progress({ progress: 0.25, stage: 'loading' })
      return { accept: true }
    },
  })
  await agent.ready()

  // Identity: the libp2p key, the derived id, the key bound in the store, a JWT for it.
  assert.equal(agent.agentId, agentIdOf(key.publicKey.raw))
  assert.equal((await platform.store.agent(agent.agentId))?.publicKey, bytesToBase64(key.publicKey.raw))
  const claims = verifyOrbanJwt(agent.jwt!.token, 'test-secret')
  assert.equal(claims?.sub, agent.agentId)
  assert.equal(verifyOrbanJwt(agent.jwt!.token, 'another-secret'), undefined)

  // Registration: the channel keeps what was sent (the mesh extension too) and prices it.
  const [connected] = platform.channel.agents()
  assert.equal(connected?.agentId, agent.agentId)
  assert.deepEqual(connected?.registration.mesh, registrationFor(key.publicKey.raw).mesh)
  assert.equal(connected?.registration.mesh?.peer_id, peerIdFromPrivateKey(key).toString())
  assert.equal(connected?.authMode, 'domain-separated')
  assert.deepEqual(agent.pricing, { base_rate_usd_per_hour: 0.5, gpu_multiplier: 2.4, effective_rate: 1.2 })
  assert.deepEqual(connected?.pricing, orbanPricing(connected!.registration))
  assert.equal(platform.hooks('register').length, 1)

  // Heartbeats keep coming and are tracked.
  await until(() => platform.hooks('heartbeat').length >= 3, 'three heartbeats')
  assert.equal(platform.channel.agents()[0]?.heartbeat?.status, 'idle')

  // A task: accepted, progress in order, the agent reports working, then completes.
  assert.equal(await platform.channel.assignTask(agent.agentId, task('task-1')), 'accepted')
  assert.deepEqual(asked, ['task-1'])
  await until(() => platform.hooks('progress').length === 1, 'progress')
  assert.equal((platform.hooks('progress')[0]!.value as OrbanMessageOf<'TASK_PROGRESS'>).progress, 0.25)
  controller!.progress({ progress: 0.5, stage: 'inference', metrics: { gpu_utilization: 0.9, memory_used_gb: 11 } })
  await until(() => platform.hooks('progress').length === 2, 'second progress')
  await agent.heartbeat()
  await until(() => platform.channel.agents()[0]?.heartbeat?.status === 'working', 'a working heartbeat')
  assert.equal(platform.channel.agents()[0]?.heartbeat?.current_task_id, 'task-1')
  assert.deepEqual(platform.channel.agents()[0]?.tasks, ['task-1'])
  controller!.complete({ result: { output_url: 'mem://out/1', output_hash: 'sha256:11', execution_time_sec: 2, gpu_time_sec: 2 } })
  const [complete] = await until(() => platform.hooks('complete').length === 1 && platform.hooks('complete'), 'completion')
  assert.equal((complete!.value as OrbanMessageOf<'TASK_COMPLETE'>).result.output_url, 'mem://out/1')
  assert.deepEqual(platform.channel.agents()[0]?.tasks, [])
  assert.deepEqual(agent.activeTasks(), [])
  // Reports after completion go nowhere.
  controller!.progress({ progress: 0.9, stage: 'late' })

  // Metrics on request, persisted.
  assert.equal(agent.sendMetrics({ aggregated_metrics: { tasks_completed: 1, tasks_failed: 0, total_gpu_hours: 0.001, avg_gpu_utilization: 0.9, total_energy_kwh: 0.01, earnings_usd: '0.002' } }), true)
  await until(() => platform.hooks('metrics').length === 1, 'metrics')
  const [stored] = await platform.store.metrics(agent.agentId)
  assert.equal(stored?.aggregated.earnings_usd, 0.002)
  assert.equal(stored?.aggregated.tasks_completed, 1)

  // Proof of work: answered automatically, verified from the counter, recorded.
  const solved = new Promise<{ counter: bigint }>((resolve) => agent.on('pow', resolve))
  assert.equal(await platform.channel.challengePow(agent.agentId, 10), true)
  assert.ok((await solved).counter >= 0n)
  const [pow] = await platform.store.powResults(agent.agentId)
  assert.equal(pow?.verified, true)
  assert.equal(pow?.difficulty, 10)
  assert.equal(platform.hooks('progress').length, 2)
  assert.equal(platform.channel.stats().errorsSent, 0)
})

test('a task needing more VRAM than the agent has is rejected without asking the callback; an unknown agent is unavailable', async (t) => {
  const platform = await startPlatform(t)
  let asked = 0
  const agent = await startAgent(t, platform.url, {
    onTask: () => {
      asked++
      return { accept: false, reason: 'busy', details: 'serving a shard' }
    },
  })
  await agent.ready()
  assert.deepEqual(await platform.channel.assignTask(agent.agentId, task('big', 80)), { rejected: 'insufficient_vram', details: 'Required 80GB, available 24GB' })
  assert.equal(asked, 0)
  // What fits goes to the callback, whose refusal travels back.
  assert.deepEqual(await platform.channel.assignTask(agent.agentId, task('small', 8)), { rejected: 'busy', details: 'serving a shard' })
  assert.equal(asked, 1)
  assert.deepEqual(await platform.channel.assignTask('agent-nobody', task('x')), { rejected: 'agent_unavailable' })
  await assert.rejects(platform.channel.challengePow('agent-nobody'), OrbanAgentUnavailableError)
})

test('forged proof-of-work answers are refused: a counter that does not meet the difficulty, a hash without its counter', async (t) => {
  const platform = await startPlatform(t)
  const raw = await rawClient(platform.url)
  const identity = await raw.login()
  const difficulty = 16
  const forged = platform.channel.challengePow(identity.agentId, difficulty)
  const challenge = await raw.next('POW_CHALLENGE')
  assert.equal(challenge.difficulty, difficulty)
  const nonce = Buffer.from(challenge.nonce, 'hex')
  let counter = 0n
  while (verifyProofOfWork({ nonce, difficulty, counter })) counter++
  raw.send('POW_RESPONSE', {
    challenge_id: challenge.challenge_id,
    response: Buffer.from(proofOfWorkHash(nonce, counter)).toString('hex'),
    computation_time_ms: 1,
    gpu_signature: { device_uuid: 'GPU-fake' },
    counter,
  })
  assert.equal(await forged, false)

  // Upstream's answer shape (no counter): a claimed hash full of zeros cannot be checked, so it is refused.
  const unchecked = platform.channel.challengePow(identity.agentId, difficulty)
  const second = await raw.next('POW_CHALLENGE')
  raw.send('POW_RESPONSE', { challenge_id: second.challenge_id, response: '00'.repeat(32), computation_time_ms: 1, gpu_signature: { device_uuid: 'GPU-fake' } })
  assert.equal(await unchecked, false)
  const results = await platform.store.powResults(identity.agentId)
  assert.deepEqual(
    results.map((r) => r.verified),
    [false, false],
  )
  assert.equal(platform.channel.stats().powRefused, 2)
})

test('earnings are persisted and survive a restart of the channel on the same SQLite file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'orban-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const dbPath = join(dir, 'oracle.db')
  const first = await startPlatform(t, { dbPath })
  const received: OrbanMessageOf<'EARNINGS_RECORD'>[] = []
  const agent = await startAgent(t, first.url, { reconnect: { baseDelayMs: 20, maxDelayMs: 50 } })
  agent.on('earnings', (record) => received.push(record))
  await agent.ready()
  const record = (taskId: string, amount: string, status: string) => ({
    task_id: taskId,
    earnings: { gpu_hours: 0.079, rate_usd_per_hour: '1.25', amount_usd: amount, bonus_multiplier: 1, final_amount_usd: amount },
    status: status as 'Pending',
    estimated_payout_date: '2024-11-21',
  })
  assert.deepEqual(await first.channel.sendEarnings(agent.agentId, record('t1', '0.104', 'Pending')), { delivered: true })
  assert.deepEqual(await first.channel.sendEarnings(agent.agentId, record('t2', '0.5', 'paid')), { delivered: true })
  // A status change updates the record rather than adding one.
  await first.channel.sendEarnings(agent.agentId, record('t1', '0.104', 'Confirmed'))
  await until(() => received.length === 3, 'three EARNINGS_RECORD frames')
  assert.equal(received[0]?.earnings.final_amount_usd, 0.104)
  assert.equal(received[1]?.status, 'Paid')
  const payout = new Promise<OrbanMessageOf<'PAYOUT_NOTIFICATION'>>((resolve) => agent.on('payout', resolve))
  assert.equal(
    first.channel.sendPayout(agent.agentId, {
      payout_id: 'p-1',
      period: { start: '2024-11-07', end: '2024-11-13' },
      summary: { total_tasks: 2, total_gpu_hours: 0.158, gross_amount_usd: '0.604', platform_fee_usd: '0.03', net_amount_usd: '0.574' },
      payment_method: 'evm',
      payment_address: '0x0000000000000000000000000000000000000001',
      status: 'Processing',
    }),
    true,
  )
  assert.equal((await payout).summary.net_amount_usd, 0.574)
  await first.stop()

  // Same file, new channel: the totals are still there.
  const second = await startPlatform(t, { dbPath })
  const summary = await second.channel.earnings(agent.agentId)
  assert.equal(summary.totalUsd, 0.604)
  const today = new Date().toISOString().slice(0, 10)
  const madeToday = summary.history.filter((h) => new Date(h.createdAt).toISOString().slice(0, 10) === today)
  assert.equal(summary.todayUsd, madeToday.reduce((sum, h) => sum + h.earnings.final_amount_usd, 0))
  assert.equal(summary.pendingUsd, 0.104)
  assert.deepEqual(summary.history.map((h) => [h.taskId, h.status]).sort(), [
    ['t1', 'Confirmed'],
    ['t2', 'Paid'],
  ])
  // The key binding survived too.
  assert.equal((await second.store.agent(agent.agentId))?.publicKey, bytesToBase64(agent.publicKey))
})

test('after the platform drops the connection the agent backs off, reconnects and sends STATE_SYNC with its running task', async (t) => {
  const platform = await startPlatform(t)
  let controller: OrbanTaskController | undefined
  const agent = await startAgent(t, platform.url, { onTask: (_task, ctl) => ((controller = ctl), { accept: true }) })
  const backoffs: number[] = []
  agent.on('backoff', (b) => backoffs.push(b.delayMs))
  let registrations = 0
  agent.on('registered', () => registrations++)
  await agent.ready()
  assert.equal(await platform.channel.assignTask(agent.agentId, task('long-task')), 'accepted')
  controller!.progress({ progress: 0.3, stage: 'inference' })
  await until(() => platform.hooks('progress').length === 1, 'progress')

  assert.equal(platform.channel.disconnect(agent.agentId), true)
  const [sync] = await until(() => platform.hooks('sync').length === 1 && platform.hooks('sync'), 'STATE_SYNC')
  const state = sync!.value as OrbanMessageOf<'STATE_SYNC'>
  assert.deepEqual(
    state.active_tasks.map((a) => [a.task_id, a.progress]),
    [['long-task', 0.3]],
  )
  assert.equal(platform.hooks('disconnect').length, 1)
  assert.deepEqual(backoffs, [20])
  assert.equal(registrations, 2)
  await until(() => platform.channel.agents().length === 1, 'the agent back')
  assert.equal(platform.hooks('register').length, 2)

  // Dropped again, the task finishes while the agent is offline: the result waits for the next session.
  const offline = new Promise<void>((resolve) => {
    const off = agent.on('backoff', () => (off(), resolve()))
  })
  platform.channel.disconnect(agent.agentId)
  await offline
  controller!.complete({ result: { output_url: 'mem://o', output_hash: 'h', execution_time_sec: 1, gpu_time_sec: 1 } })
  await until(() => platform.hooks('complete').length === 1, 'completion after reconnect')
  assert.equal(platform.hooks('sync').length, 2)
  assert.deepEqual((platform.hooks('sync')[1]!.value as OrbanMessageOf<'STATE_SYNC'>).active_tasks, [])
  assert.equal(platform.channel.stats().unknownTasks, 0)
  assert.deepEqual(platform.channel.agents()[0]?.tasks, [])
})

test('a recoverable ERROR from the platform makes the agent back off and come back; aborting its signal stops it', async (t) => {
  const platform = await startPlatform(t, { limits: { handshakeTimeoutMs: 200 } })
  let asked = 0
  const controller = new AbortController()
  const agent = await startAgent(t, platform.url, {
    signal: controller.signal,
    // Too slow the first time: the platform times the handshake out.
    registration: async () => {
      if (asked++ === 0) await new Promise((r) => setTimeout(r, 600))
      return registration
    },
  })
  const errors: string[] = []
  agent.on('platform-error', (e) => errors.push(e.code))
  await agent.ready()
  // Once, unless a loaded machine made the second handshake slow too.
  assert.ok(errors.length >= 1 && errors.every((code) => code === 'TIMEOUT'))
  assert.equal(asked, errors.length + 1)
  assert.equal(platform.channel.stats().handshakeTimeouts, errors.length)
  controller.abort()
  assert.equal((await agent.done).reason, 'aborted')
  await until(() => platform.channel.agents().length === 0, 'the agent gone')
})

test('backoff doubles up to its cap and gives up after the configured tries', async (t) => {
  const port = await freePort()
  const agent = await startAgent(t, `ws://127.0.0.1:${port}`, { reconnect: { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 5 } })
  const delays: number[] = []
  agent.on('backoff', (b) => delays.push(b.delayMs))
  const stop = await agent.done
  assert.equal(stop.reason, 'reconnect_exhausted')
  assert.deepEqual(delays, [5, 10, 20, 20, 20])
  assert.equal(agent.state, 'stopped')
  await assert.rejects(agent.ready())
})

test('a quiet agent is marked stale and reported silent; a frame brings it back; a gone one is forgotten', async (t) => {
  const platform = await startPlatform(t, { heartbeatTimeoutMs: 150 })
  const agent = await startAgent(t, platform.url, { heartbeatIntervalMs: 60_000 })
  await agent.ready()
  const [silent] = await until(() => platform.hooks('silent').length === 1 && platform.hooks('silent'), 'onSilent')
  assert.deepEqual((silent!.value as { connected: boolean }).connected, true)
  assert.equal(platform.channel.agents()[0]?.stale, true)
  const heartbeats = platform.hooks('heartbeat').length
  await agent.heartbeat()
  const revived = await until(() => platform.hooks('heartbeat')[heartbeats], 'a heartbeat after the silence')
  assert.equal((revived.args[0] as OrbanConnectedAgent).stale, false)
  await agent.stop()
  const gone = await until(() => platform.hooks('silent').find((h) => !(h.value as { connected: boolean }).connected), 'onSilent for the gone agent')
  assert.equal(gone.agentId, agent.agentId)
  assert.deepEqual(platform.channel.agents(), [])
})

test('abuse is refused and counted while a well-behaved agent on another connection carries on', async (t) => {
  const platform = await startPlatform(t, { limits: { maxFrameBytes: 16 * 1024, maxErrors: 3, messagesPerSecond: 20, burst: 30 } })
  let registrations = 0
  const good = await startAgent(t, platform.url, { heartbeatIntervalMs: 50, onTask: (_t, ctl) => (queueMicrotask(() => ctl.complete({ result: { output_url: 'o', output_hash: 'h', execution_time_sec: 0, gpu_time_sec: 0 } })), { accept: true }) })
  good.on('registered', () => registrations++)
  await good.ready()
  const endpoint = platform.url + ORBAN_PATH

  // No subprotocol, a wrong one, a wrong path.
  assert.equal(await refusedStatus(endpoint), 426)
  assert.equal(await refusedStatus(endpoint, 'graphql-ws'), 426)
  assert.equal(await refusedStatus(platform.url + '/elsewhere', ORBAN_SUBPROTOCOL), 404)
  assert.equal(platform.channel.stats().badSubprotocol, 2)
  assert.equal(platform.channel.stats().notFound, 1)

  // A signature that is not over the challenge.
  const forger = await rawClient(platform.url)
  const identity = await createOrbanIdentity(randomBytes(32))
  await forger.next('AUTH_CHALLENGE')
  forger.send('AUTH_RESPONSE', { agent_id: identity.agentId, signature: await signOrbanChallenge(identity.seed, randomBytes(32).toString('base64')), public_key: bytesToBase64(identity.publicKey) })
  const authError = await forger.next('ERROR')
  assert.equal(authError.code, 'AUTH_FAILED')
  assert.equal(authError.recoverable, false)
  assert.equal((await forger.closed).code, 1008)

  // A derived id that is not this key's, and a custom id already bound to another key.
  const impostor = await rawClient(platform.url)
  const challenge = await impostor.next('AUTH_CHALLENGE')
  impostor.send('AUTH_RESPONSE', { agent_id: good.agentId, signature: await signOrbanChallenge(identity.seed, challenge.challenge), public_key: bytesToBase64(identity.publicKey) })
  assert.equal((await impostor.next('ERROR')).code, 'AUTH_FAILED')
  const owner = await rawClient(platform.url)
  await owner.login({ agentId: 'rig-7', register: false })
  owner.ws.close()
  const squatter = await rawClient(platform.url)
  const squatChallenge = await squatter.next('AUTH_CHALLENGE')
  squatter.send('AUTH_RESPONSE', { agent_id: 'rig-7', signature: await signOrbanChallenge(identity.seed, squatChallenge.challenge), public_key: bytesToBase64(identity.publicKey) })
  assert.match((await squatter.next('ERROR')).message, /another key/)
  assert.equal(platform.channel.stats().authFailures, 3)

  // Anything before authentication.
  const eager = await rawClient(platform.url)
  eager.send('HEARTBEAT', { agent_id: good.agentId, status: 'idle', gpu_status: [], uptime_sec: 1 })
  const eagerError = await eager.next('ERROR')
  assert.equal(eagerError.code, 'UNAUTHENTICATED')
  assert.equal((await eager.closed).code, 1008)
  assert.equal(platform.channel.stats().unauthenticated, 1)

  // Malformed JSON and schema violations after authentication: ERROR frames, then closed at maxErrors.
  const sloppy = await rawClient(platform.url)
  await sloppy.login()
  sloppy.ws.send('{"message_id": ')
  const malformed = await sloppy.next('ERROR')
  assert.equal(malformed.code, 'MALFORMED_JSON')
  assert.equal(malformed.recoverable, true)
  sloppy.ws.send(JSON.stringify({ message_id: 'nope', timestamp: 1, type: 'HEARTBEAT' }))
  assert.equal((await sloppy.next('ERROR')).code, 'INVALID_ENVELOPE')
  sloppy.ws.send(encodeOrbanMessage('TASK_ASSIGN', task('reverse')))
  assert.equal((await sloppy.next('ERROR')).code, 'UNEXPECTED_MESSAGE')
  assert.equal((await sloppy.closed).code, 1008)
  assert.equal(platform.channel.stats().malformed, 1)
  assert.equal(platform.channel.stats().closedForErrors, 1)

  // A frame over the size limit.
  const bulky = await rawClient(platform.url)
  await bulky.login()
  bulky.ws.send('x'.repeat(64 * 1024))
  assert.equal((await bulky.closed).code, 1009)
  await until(() => platform.channel.stats().oversize === 1, 'the oversize count')

  // A flood of heartbeats.
  const flooder = await rawClient(platform.url)
  const floodId = await flooder.login()
  const heartbeat = encodeOrbanMessage('HEARTBEAT', { agent_id: floodId.agentId, status: 'idle', gpu_status: [], uptime_sec: 1 })
  for (let i = 0; i < 200; i++) flooder.ws.send(heartbeat)
  assert.equal((await flooder.next('ERROR')).code, 'RATE_LIMITED')
  assert.equal((await flooder.closed).code, 1008)
  assert.equal(platform.channel.stats().rateLimited, 1)

  // A binary frame is a protobuf Message: accepted like its JSON twin.
  const binary = await rawClient(platform.url)
  const binaryId = await createOrbanIdentity(randomBytes(32))
  const binaryChallenge = await binary.next('AUTH_CHALLENGE')
  binary.ws.send(
    toProtobuf(
      createOrbanMessage('AUTH_RESPONSE', {
        agent_id: binaryId.agentId,
        signature: await signOrbanChallenge(binaryId.seed, binaryChallenge.challenge),
        public_key: bytesToBase64(binaryId.publicKey),
      }) as unknown as OrbanMessage,
    ),
  )
  assert.ok((await binary.next('AUTH_SUCCESS')).jwt_token)
  assert.equal(platform.channel.stats().binaryFrames, 1)
  binary.ws.close()

  // The well-behaved agent never noticed.
  assert.equal(good.state, 'ready')
  assert.equal(registrations, 1)
  assert.ok(platform.channel.agents().some((a) => a.agentId === good.agentId))
  assert.equal(await platform.channel.challengePow(good.agentId, 8), true)
  assert.equal(await platform.channel.assignTask(good.agentId, task('after-abuse')), 'accepted')
  await until(() => platform.hooks('complete').some((h) => h.agentId === good.agentId), 'its task completed')
  const before = platform.hooks('heartbeat').filter((h) => h.agentId === good.agentId).length
  await until(() => platform.hooks('heartbeat').filter((h) => h.agentId === good.agentId).length > before, 'its heartbeats')
})

test('an AUTH_FAILED error stops the agent instead of retrying', async (t) => {
  const platform = await startPlatform(t)
  const seed = randomBytes(32)
  // Someone else holds the custom id first.
  const owner = await rawClient(platform.url)
  await owner.login({ agentId: 'shared-name', register: false })
  const agent = await startAgent(t, platform.url, { key: seed, agentId: 'shared-name' })
  const stop = await agent.done
  assert.equal(stop.reason, 'auth_failed')
  assert.equal(stop.error?.code, 'AUTH_FAILED')
})

/** An AUTH_RESPONSE signed the way upstream's agent signs: Ed25519 over the raw challenge bytes. */
async function rawSignedResponse(seed: Uint8Array, challengeBase64: string, agentId?: string): Promise<OrbanPayloadInput<'AUTH_RESPONSE'>> {
  const publicKey = await ed.getPublicKeyAsync(seed)
  const signature = await ed.signAsync(Buffer.from(challengeBase64, 'base64'), seed)
  return { agent_id: agentId ?? agentIdOf(publicKey), signature: bytesToBase64(signature), public_key: bytesToBase64(publicKey) }
}

test('upstream agents (raw challenge signatures) are accepted but may not claim a libp2p peer; our agents may claim only their own', async (t) => {
  const platform = await startPlatform(t)

  // An upstream agent: raw signature, no mesh: registered, marked raw.
  const upstream = await rawClient(platform.url)
  const upstreamSeed = randomBytes(32)
  upstream.send('AUTH_RESPONSE', await rawSignedResponse(upstreamSeed, (await upstream.next('AUTH_CHALLENGE')).challenge, 'upstream-rig-1'))
  await upstream.next('AUTH_SUCCESS')
  upstream.send('AGENT_REGISTER', { agent_id: 'upstream-rig-1', ...registration })
  await upstream.next('REGISTER_ACK')
  assert.equal(platform.channel.agents().find((a) => a.agentId === 'upstream-rig-1')?.authMode, 'raw')

  // A raw signature that announces a peer (even its own key's) is refused: such a key signs for anyone.
  const rawClaimer = await rawClient(platform.url)
  const rawSeed = randomBytes(32)
  const rawKey = await ed.getPublicKeyAsync(rawSeed)
  rawClaimer.send('AUTH_RESPONSE', await rawSignedResponse(rawSeed, (await rawClaimer.next('AUTH_CHALLENGE')).challenge))
  await rawClaimer.next('AUTH_SUCCESS')
  rawClaimer.send('AGENT_REGISTER', { agent_id: agentIdOf(rawKey), ...registrationFor(rawKey) })
  const unproven = await rawClaimer.next('ERROR')
  assert.equal(unproven.code, 'PEER_ID_UNPROVEN')
  assert.equal((await rawClaimer.closed).code, 1008)

  // Our signature, but another host's peer id: refused.
  const victim = await createOrbanIdentity(randomBytes(32))
  const thief = await rawClient(platform.url)
  const thiefId = await thief.login({ register: false })
  thief.send('AGENT_REGISTER', { agent_id: thiefId.agentId, ...registrationFor(victim.publicKey) })
  assert.equal((await thief.next('ERROR')).code, 'PEER_ID_MISMATCH')

  // Its own peer id, with addresses of others, metadata endpoints and inflated capacity: filtered and capped.
  const boaster = await rawClient(platform.url)
  const boasterId = await boaster.login({ register: false })
  const own = registrationFor(boasterId.publicKey)
  const peerId = own.mesh!.peer_id
  const victimPeer = peerIdOfEd25519(victim.publicKey)
  boaster.send('AGENT_REGISTER', {
    agent_id: boasterId.agentId,
    ...own,
    mesh: {
      peer_id: peerId,
      multiaddrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${peerId}`, `/ip4/127.0.0.1/tcp/4002/p2p/${victimPeer}`, `/ip4/169.254.169.254/tcp/80/p2p/${peerId}`, '/dns4/evil/tcp/1'],
      memory_mb: 50_000_000,
      benchmark_tok_per_sec: 1e8,
    },
  })
  await boaster.next('REGISTER_ACK')
  const mesh = platform.channel.agents().find((a) => a.agentId === boasterId.agentId)?.registration.mesh
  assert.deepEqual(mesh?.multiaddrs, [`/ip4/127.0.0.1/tcp/4001/p2p/${peerId}`])
  assert.equal(mesh?.memory_mb, 64 * 1024, 'capped at the 64 GB of RAM it declared')
  assert.equal(mesh?.benchmark_tok_per_sec, 10_000)
  assert.equal(platform.channel.stats().multiaddrsDropped, 3)
  assert.equal(platform.channel.stats().meshRefused, 2)

  // Wallet-shaped ids belong to Plumise nodes.
  const walletLike = await rawClient(platform.url)
  const seed = randomBytes(32)
  const identity = await createOrbanIdentity(seed, '0x' + 'ab'.repeat(20))
  const challenge = await walletLike.next('AUTH_CHALLENGE')
  walletLike.send('AUTH_RESPONSE', { agent_id: identity.agentId, signature: await signOrbanChallenge(seed, challenge.challenge), public_key: bytesToBase64(identity.publicKey) })
  const walletError = await walletLike.next('ERROR')
  assert.equal(walletError.code, 'AUTH_FAILED')
  assert.match(walletError.message, /0x/)
})

test('a malicious platform gets no signature over bytes it chose: a Noise payload or any size but 32 is refused, 32 bytes are signed under our domain only', async (t) => {
  const server = createServer()
  const wss = new WebSocketServer({ server, handleProtocols: () => ORBAN_SUBPROTOCOL })
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate()
        wss.close()
        server.close(() => resolve())
      }),
  )
  const key = await generateKeyPair('Ed25519')
  const noisePayload = Buffer.concat([Buffer.from('noise-libp2p-static-key:'), randomBytes(32)])
  const offers: Buffer[] = [noisePayload, randomBytes(64), randomBytes(16), randomBytes(32)]
  const received: Array<{ offered: Buffer; frames: OrbanMessage[]; code?: number }> = []
  wss.on('connection', (ws) => {
    const offered = offers[received.length] ?? randomBytes(32)
    const entry: (typeof received)[number] = { offered, frames: [] }
    received.push(entry)
    ws.on('message', (data) => entry.frames.push(parseOrbanMessage(data.toString())))
    ws.on('close', (code) => (entry.code = code))
    ws.send(encodeOrbanMessage('AUTH_CHALLENGE', { challenge: offered.toString('base64') }))
  })
  await startAgent(t, `ws://127.0.0.1:${port}`, { key: key.raw, reconnect: { baseDelayMs: 10, maxDelayMs: 20 } })
  await until(() => received.length >= 4 && received[3]!.frames.length > 0, 'the agent to answer the fourth challenge', 10_000)
  for (const entry of received.slice(0, 3)) {
    assert.deepEqual(entry.frames, [], `${entry.offered.length} bytes offered: nothing may be sent`)
    assert.equal(entry.code, 4001)
  }
  const [response] = received[3]!.frames
  assert.equal(response?.type, 'AUTH_RESPONSE')
  const signature = Buffer.from((response as OrbanMessageOf<'AUTH_RESPONSE'>).signature, 'base64')
  assert.equal(await key.publicKey.verify(Buffer.concat([Buffer.from('orban-auth-v1'), received[3]!.offered]), signature), true)
  assert.equal(await key.publicKey.verify(received[3]!.offered, signature), false)
})

test('before authentication only a small AUTH_RESPONSE is read: a 256 KiB crafted frame is refused in well under a second and the loop keeps turning', async (t) => {
  const platform = await startPlatform(t)
  const good = await startAgent(t, platform.url, { heartbeatIntervalMs: 50 })
  await good.ready()
  // AGENT_REGISTER with a decimal string made to backtrack (the old pattern: ~100 s at this size).
  const crafted = (agentId: string) => {
    const base = encodeOrbanMessage('AGENT_REGISTER', { agent_id: agentId, ...registration })
    const pad = 256 * 1024 - base.length - 64
    const value = JSON.parse(base) as { hardware: { memory_gb: unknown } }
    value.hardware.memory_gb = '1'.repeat(pad) + 'x'
    return JSON.stringify(value)
  }
  // The event loop's longest stall while the frames are handled.
  let lastTick = performance.now()
  let longestStallMs = 0
  const ticker = setInterval(() => {
    const now = performance.now()
    longestStallMs = Math.max(longestStallMs, now - lastTick - 5)
    lastTick = now
  }, 5)
  t.after(() => clearInterval(ticker))

  const stranger = await rawClient(platform.url)
  await stranger.next('AUTH_CHALLENGE')
  const frame = crafted('agent-x')
  assert.ok(frame.length > 250 * 1024 && frame.length < 256 * 1024)
  let started = performance.now()
  stranger.ws.send(frame)
  const refused = await stranger.next('ERROR')
  const preAuthMs = performance.now() - started
  assert.equal(refused.code, 'FRAME_TOO_LARGE')
  assert.equal((await stranger.closed).code, 1008)

  // A small frame of another type before auth: refused as such, its payload never validated.
  const small = await rawClient(platform.url)
  await small.next('AUTH_CHALLENGE')
  small.ws.send(JSON.stringify({ ...(JSON.parse(crafted('agent-y')) as object), hardware: { memory_gb: '1'.repeat(3000) + 'x' } }))
  assert.equal((await small.next('ERROR')).code, 'UNAUTHENTICATED')

  // After authentication the full schema runs, and is linear too.
  const member = await rawClient(platform.url)
  const memberId = await member.login({ register: false })
  started = performance.now()
  member.ws.send(crafted(memberId.agentId))
  const invalid = await member.next('ERROR')
  const postAuthMs = performance.now() - started
  assert.equal(invalid.code, 'INVALID_PAYLOAD')
  clearInterval(ticker)
  console.log(`256 KiB crafted frame: refused before auth in ${preAuthMs.toFixed(1)} ms, validated after auth in ${postAuthMs.toFixed(1)} ms; longest event-loop stall ${longestStallMs.toFixed(1)} ms`)
  assert.ok(preAuthMs < 1000, `pre-auth ${preAuthMs} ms`)
  assert.ok(postAuthMs < 1000, `post-auth ${postAuthMs} ms`)
  assert.ok(longestStallMs < 1000, `stall ${longestStallMs} ms`)
  assert.equal(good.state, 'ready')
})

/** Sends raw bytes on a TCP connection and returns the HTTP status line's code (0 when closed without one). */
function rawUpgrade(port: number, request: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request))
    let text = ''
    socket.on('data', (d) => {
      text += d.toString()
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text)
      if (match) {
        resolve(Number(match[1]))
        socket.destroy()
      }
    })
    socket.on('error', () => resolve(0))
    socket.on('close', () => resolve(0))
  })
}

test('upgrades are capped per IP and while unauthenticated, strangers time out, and bad upgrade requests get a 4xx', async (t) => {
  const platform = await startPlatform(t, { limits: { maxConnectionsPerIp: 3, maxUnauthenticated: 100, authTimeoutMs: 300 } })
  const endpoint = platform.url + ORBAN_PATH
  const idle = [await rawClient(platform.url), await rawClient(platform.url), await rawClient(platform.url)]
  assert.equal(await refusedStatus(endpoint, ORBAN_SUBPROTOCOL), 429)
  assert.equal(platform.channel.stats().perIpRefused, 1)
  // None of them authenticates: each is told and closed once authTimeoutMs passes, which frees the slots.
  for (const client of idle) {
    assert.equal((await client.next('ERROR')).code, 'TIMEOUT')
    assert.equal((await client.closed).code, 1008)
  }
  const agent = await startAgent(t, platform.url)
  await agent.ready()

  // Bad upgrade requests: a 4xx each, and the channel goes on.
  const upgradeHead = (path: string, extra: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${extra}\r\n`
  assert.equal(await rawUpgrade(platform.port, upgradeHead(ORBAN_PATH, `Sec-WebSocket-Protocol: ${ORBAN_SUBPROTOCOL}\r\nSec-WebSocket-Version: 13\r\n`)), 400)
  assert.equal(await rawUpgrade(platform.port, upgradeHead(ORBAN_PATH, `Sec-WebSocket-Protocol: ${ORBAN_SUBPROTOCOL}\r\nSec-WebSocket-Key: ${'A'.repeat(500)}\r\nSec-WebSocket-Version: 99\r\n`)), 400)
  assert.equal(await rawUpgrade(platform.port, upgradeHead('//a:b', `Sec-WebSocket-Protocol: ${ORBAN_SUBPROTOCOL}\r\n`)), 404)
  assert.equal(await rawUpgrade(platform.port, upgradeHead('/%E0%A4%A', '')), 404)
  assert.equal(agent.state, 'ready')

  // The unauthenticated cap.
  const tight = await startPlatform(t, { limits: { maxUnauthenticated: 2, authTimeoutMs: 10_000 } })
  const a = await rawClient(tight.url)
  await rawClient(tight.url)
  assert.equal(await refusedStatus(tight.url + ORBAN_PATH, ORBAN_SUBPROTOCOL), 503)
  await a.login({ register: false })
  const c = await rawClient(tight.url)
  assert.equal((await c.next('AUTH_CHALLENGE')).type, 'AUTH_CHALLENGE')
})

test('per-IP caps count IPv4 (also IPv4-mapped) by address and IPv6 by its /64', () => {
  assert.equal(ipBucket('10.1.2.3'), '10.1.2.3')
  assert.equal(ipBucket('::ffff:10.1.2.3'), '10.1.2.3')
  assert.equal(ipBucket('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  assert.equal(ipBucket('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64')
  assert.equal(ipBucket('2001:0db8::1'), '2001:db8:0:0::/64')
  assert.equal(ipBucket('::1'), '0:0:0:0::/64')
  assert.equal(ipBucket(undefined), 'unknown')
})
