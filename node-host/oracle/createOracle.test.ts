import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { createOrbanIdentity } from '../../shared/identity/orbanIdentity.ts'
import { peerIdOfEd25519 } from '../../shared/orban/orbanMeshClaims.ts'
import { createOrbanAgent, type OrbanAgent, type OrbanRegistration, type OrbanTaskController } from '../../shared/orban/createOrbanAgent.ts'
import { createLogger } from '../logger.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { rawGet, rawRequest } from '../../testing/rawHttp.ts'
import { createOracle, type Oracle } from './createOracle.ts'
import { readModelInfo } from './modelInfo.ts'

const MODEL = 'docs-llama-7m'
let dir: string
let oracle: Oracle
const agents: OrbanAgent[] = []
let assignedModelUrl: string | undefined

/** A registration whose mesh claim the key backs (its own peer id). */
const registration = async (memoryMb: number, key: Uint8Array): Promise<OrbanRegistration> => ({
  hardware: { gpus: [], cpu: { model: 'test', cores: 2, threads: 2 }, memory_gb: 8, storage_available_gb: 10 },
  capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 1, fp16_support: false, int8_support: false },
  location: { country: '', region: '', latency_to_platform_ms: 0 },
  availability: { hours_per_day: 24, reliability_score: 1 },
  mesh: { peer_id: peerIdOfEd25519((await createOrbanIdentity(key)).publicKey), multiaddrs: [], device: 'cpu', memory_mb: memoryMb, benchmark_tok_per_sec: 100 },
})

async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shardmesh-create-oracle-'))
  oracle = await createOracle({ db: join(dir, 'oracle.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, logger: createLogger('oracle', 'silent') })
})
after(async () => {
  for (const a of agents) await a.stop()
  await oracle.close()
  await rm(dir, { recursive: true, force: true })
})

test('an agent that refuses its range leaves the assignment and is not offered one again on every heartbeat', async () => {
  let offers = 0
  const refuserKey = randomBytes(32)
  const refuser = await createOrbanAgent({
    url: oracle.url,
    key: refuserKey,
    heartbeatIntervalMs: 50,
    registration: await registration(100, refuserKey),
    onTask: () => (offers++, { accept: false, reason: 'busy', details: 'a test that says no' }),
  })
  agents.push(refuser)
  await refuser.ready()
  await waitFor('the first offer', () => offers >= 1)
  await waitFor('the refusal to take effect', () => oracle.core.node(refuser.agentId) === undefined)
  // Twenty heartbeats later: still the one offer (the backoff holds), not a join/leave loop.
  await new Promise((r) => setTimeout(r, 1000))
  assert.equal(offers, 1)
  assert.equal(oracle.core.node(refuser.agentId), undefined)
})

test('an agent that accepts gets its range as TASK_ASSIGN and is ready only once it reports serving', async () => {
  let controller: OrbanTaskController | undefined
  const agentKey = randomBytes(32)
  const agent = await createOrbanAgent({
    url: oracle.url,
    key: agentKey,
    heartbeatIntervalMs: 200,
    registration: await registration(100, agentKey),
    onTask: (_task, c) => ((controller = c), { accept: true }),
  })
  agents.push(agent)
  const c = await waitFor('a task', () => controller)
  assignedModelUrl = c.task.payload.model_url
  assert.deepEqual(c.task.payload.config, { kind: 'shardmesh.shard', model: MODEL, layer_start: 0, layer_end: 8, total_layers: 8 })
  await waitFor('the accept to reach the oracle', () => oracle.core.node(agent.agentId))
  assert.equal(oracle.core.node(agent.agentId)!.ready, false, 'not ready while loading')
  c.progress({ progress: 0.5, stage: 'loading' })
  c.progress({ progress: 1, stage: 'serving' })
  const node = await waitFor('ready in topology', () => oracle.core.topology(MODEL).nodes.find((n) => n.nodeAddress === agent.agentId && n.ready))
  assert.deepEqual([node.layerStart, node.layerEnd], [0, 8])
})

test("a model in a local folder is offered by the Oracle: tasks name /models/<name>/, its files answer Range reads, nothing else is served", async () => {
  // The task of the agent above.
  const modelUrl = assignedModelUrl
  assert.equal(modelUrl, `/models/${MODEL}/`)
  const base = new URL(modelUrl!, oracle.url).href
  const folder = join(import.meta.dirname, '..', '..', 'public', 'models', MODEL)
  assert.deepEqual(await (await fetch(`${base}config.json`)).json(), JSON.parse(await readFile(join(folder, 'config.json'), 'utf8')))
  const ranged = await fetch(`${base}model.safetensors`, { headers: { Range: 'bytes=8-15' } })
  assert.equal(ranged.status, 206)
  assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), (await readFile(join(folder, 'model.safetensors'))).subarray(8, 16))
  // What the hosts do with it: an http model source named after the folder.
  const source = resolveModelSource(base)
  assert.equal(source.name, MODEL)
  assert.equal(JSON.parse(await source.readText('config.json')).num_hidden_layers, 8)
  for (const path of [`/models/${MODEL}/README.md`, `/models/${MODEL}/..%2Fconfig.json`, '/models/other/config.json', `/models/${MODEL}/%2E%2E/package.json`]) {
    assert.equal((await fetch(new URL(path, oracle.url))).status, 404, path)
  }
})

test('a declared benchmark score counts only once the agent answered its proof of work; memory is capped by its declared hardware', async () => {
  const make = async (maxPowDifficulty: number) => {
    const key = randomBytes(32)
    const reg = await registration(1_000_000, key)
    const agent = await createOrbanAgent({ url: oracle.url, key, maxPowDifficulty, registration: { ...reg, mesh: { ...reg.mesh!, benchmark_tok_per_sec: 250 } }, onTask: () => ({ accept: true }) })
    agents.push(agent)
    return agent
  }
  // This one declines every proof of work (the Oracle asks 16 bits).
  const shirker = await make(0)
  const worker = await make(32)
  const shirkerNode = await waitFor('the shirker to join', () => oracle.core.node(shirker.agentId))
  const workerNode = await waitFor('the worker to join', () => oracle.core.node(worker.agentId))
  assert.equal(shirkerNode.benchmarkTokPerSec, 0)
  assert.equal(workerNode.benchmarkTokPerSec, 250)
  // 1,000,000 MiB offered on a machine that declared 8 GB.
  assert.equal(workerNode.ramMb, 8 * 1024)
  assert.equal(shirkerNode.ramMb, 8 * 1024)
  assert.equal(shirkerNode.peerId, oracle.orban.agents().find((a) => a.agentId === shirker.agentId)?.registration.mesh?.peer_id)
})

test('a completed shard task is paid for no more time than it existed, whatever execution time the agent claims', async (t) => {
  const fresh = await createOracle({ db: join(dir, 'earnings.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, logger: createLogger('oracle', 'silent') })
  t.after(() => fresh.close())
  let controller: OrbanTaskController | undefined
  const key = randomBytes(32)
  const agent = await createOrbanAgent({ url: fresh.url, key, heartbeatIntervalMs: 200, registration: await registration(100, key), onTask: (_task, c) => ((controller = c), { accept: true }) })
  t.after(() => agent.stop())
  const earnings: Array<{ gpu_hours: number }> = []
  agent.on('earnings', (e) => earnings.push(e.earnings))
  const c = await waitFor('a task', () => controller)
  const sentBefore = Date.now()
  await new Promise((r) => setTimeout(r, 200))
  c.complete({ result: { output_url: 'mesh://served', output_hash: 'none', execution_time_sec: 36_000, gpu_time_sec: 36_000 } })
  const [paid] = await waitFor('the earnings record', () => (earnings.length ? earnings : undefined))
  assert.ok(paid!.gpu_hours > 0 && paid!.gpu_hours <= (Date.now() - sentBefore + 10_000) / 3_600_000, `${paid!.gpu_hours} h paid for a 10 h claim on a task seconds old`)
})

test('the whole Oracle (HTTP API, model files and the Orban upgrade on one port) answers hostile requests with 4xx and goes on', async () => {
  const upgrade = (target: string) => [`GET ${target} HTTP/1.1`, 'Host: localhost', 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', '', ''].join('\r\n')
  const requests = [
    rawGet(`/models/%E0%A4%A/config.json`),
    rawGet(`/models/${MODEL}/%E0%A4%A`),
    rawGet('//a:b'),
    rawGet('http://[::1/x'),
    upgrade('//a:b'),
    upgrade('/%E0%A4%A'),
    upgrade('*'),
    'CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n',
  ]
  for (const request of requests) {
    const r = await rawRequest(oracle.url, request)
    assert.ok(r.status >= 400 && r.status < 500, `${request.split('\r\n')[0]}: ${r.status}`)
    assert.equal((await rawRequest(oracle.url, rawGet('/health'))).status, 200)
  }
})

test('an agent that stops (a clean close, 1000) leaves at once; one whose socket just drops keeps its range for the reconnect grace', async () => {
  const serving = (agent: OrbanAgent) => () => oracle.core.topology(MODEL).nodes.find((n) => n.nodeAddress === agent.agentId && n.ready)
  // The earlier tests' agents hold the one copy (replicas 1): they stop first, so the next agent gets the range.
  for (const a of agents.splice(0)) await a.stop()
  await waitFor('no agent assigned', () => oracle.core.topology(MODEL).nodes.length === 0, 2000)
  const start = async () => {
    const key = randomBytes(32)
    const agent = await createOrbanAgent({
      url: oracle.url,
      key,
      heartbeatIntervalMs: 200,
      registration: await registration(100, key),
      reconnect: { maxAttempts: 1 },
      onTask: (_task, c) => (c.progress({ progress: 1, stage: 'serving' }), { accept: true }),
    })
    agents.push(agent)
    return agent
  }
  const leaver = await start()
  await waitFor('the leaver serving', serving(leaver))
  const t0 = Date.now()
  await leaver.stop()
  await waitFor('the leaver gone', () => oracle.core.node(leaver.agentId) === undefined, 2000)
  assert.ok(Date.now() - t0 < 2000)

  // A dropped socket (the close code a crashed or reloaded page leaves) is not a leave.
  const dropped = await start()
  await waitFor('the second agent serving', serving(dropped))
  const session = oracle.orban.agents().find((a) => a.agentId === dropped.agentId)
  assert.ok(session)
  assert.ok(oracle.orban.disconnect(dropped.agentId))
  await new Promise((r) => setTimeout(r, 500))
  assert.ok(oracle.core.node(dropped.agentId), 'still assigned after a non-clean close')
})

test('a dropped channel keeps its range for the reconnect grace, a reconnect in time keeps it; after the grace a connected spare gets it; a clean close leaves at once', async (t) => {
  const graced = await createOracle({ db: join(dir, 'grace.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, grow: false, reconnectGraceMs: 1500, logger: createLogger('oracle', 'silent') })
  t.after(() => graced.close())
  const tasks = new Map<string, OrbanTaskController[]>()
  const start = async (reconnectMs: number) => {
    const key = randomBytes(32)
    const agent = await createOrbanAgent({
      url: graced.url,
      key,
      heartbeatIntervalMs: 200,
      reconnect: { baseDelayMs: reconnectMs, maxDelayMs: reconnectMs },
      registration: await registration(100, key),
      onTask: (task, c) => {
        tasks.set(agent.agentId, [...(tasks.get(agent.agentId) ?? []), c])
        queueMicrotask(() => c.progress({ progress: 1, stage: 'serving' }))
        return { accept: true }
      },
    })
    t.after(() => agent.stop())
    await waitFor('it joins', () => graced.core.node(agent.agentId))
    return agent
  }
  const quick = await start(200)
  await waitFor('quick serves the model', () => graced.core.node(quick.agentId)?.ready)
  const spare = await start(60_000)
  assert.equal(graced.core.rangeOf(spare.agentId), undefined, 'one copy wanted: the second agent is spare')
  // Dropped, back in 200 ms: within the grace, so it keeps its range and the spare gets nothing.
  graced.orban.disconnect(quick.agentId)
  await waitFor('absent', () => graced.core.node(quick.agentId)?.absentSince !== undefined)
  assert.deepEqual(graced.core.rangeOf(quick.agentId), { start: 0, end: 8 })
  await waitFor('back and ready', () => graced.core.node(quick.agentId)?.ready && graced.core.node(quick.agentId)?.absentSince === undefined)
  await new Promise((r) => setTimeout(r, 2000))
  assert.deepEqual(graced.core.rangeOf(quick.agentId), { start: 0, end: 8 }, 'kept after the grace')
  assert.equal(graced.core.rangeOf(spare.agentId), undefined)
  // A clean close (the agent stops): it leaves at once and the spare is sent the range.
  const stoppedAt = Date.now()
  await quick.stop()
  await waitFor('quick left', () => graced.core.node(quick.agentId) === undefined)
  assert.ok(Date.now() - stoppedAt < 1000, 'a clean close does not wait for the grace')
  await waitFor('the spare serves the range', () => graced.core.node(spare.agentId)?.ready && graced.core.rangeOf(spare.agentId)?.end === 8)
  // The spare is dropped and comes back only after a minute: past the grace it is gone, and no range is sent to it meanwhile.
  const third = await start(60_000)
  const sentBefore = tasks.get(spare.agentId)!.length
  graced.orban.disconnect(spare.agentId)
  await waitFor('the spare dropped after the grace', () => graced.core.node(spare.agentId) === undefined, 5000)
  await waitFor('the third agent took the range', () => graced.core.node(third.agentId)?.ready && graced.core.rangeOf(third.agentId)?.end === 8)
  assert.equal(tasks.get(spare.agentId)!.length, sentBefore, 'nothing was assigned to the disconnected agent')
})

test('an agent whose socket stays open but sends nothing is dropped at the heartbeat timeout, and its range goes to a connected spare', async (t) => {
  const quiet = await createOracle({ db: join(dir, 'quiet.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, grow: false, heartbeatTimeoutMs: 800, silenceMs: 3_600_000, logger: createLogger('oracle', 'silent') })
  t.after(() => quiet.close())
  const start = async (heartbeatIntervalMs: number) => {
    const key = randomBytes(32)
    const agent = await createOrbanAgent({
      url: quiet.url,
      key,
      heartbeatIntervalMs,
      registration: await registration(100, key),
      onTask: (_task, c) => (queueMicrotask(() => c.progress({ progress: 1, stage: 'serving' })), { accept: true }),
    })
    t.after(() => agent.stop())
    await waitFor('it joins', () => quiet.core.node(agent.agentId))
    return agent
  }
  // Silent after registering: no heartbeat for an hour.
  const mute = await start(3_600_000)
  await waitFor('mute serves the model', () => quiet.core.node(mute.agentId)?.ready)
  const spare = await start(100)
  assert.equal(quiet.core.rangeOf(spare.agentId), undefined)
  await waitFor('the mute agent dropped', () => quiet.core.node(mute.agentId) === undefined, 5000)
  assert.ok(quiet.orban.agents().some((a) => a.agentId === mute.agentId), 'its socket is still open')
  await waitFor('the spare serves the range', () => quiet.core.node(spare.agentId)?.ready && quiet.core.rangeOf(spare.agentId)?.end === 8)
})

test('a host agent\'s HEARTBEAT carries its mesh load; the topology shows it', async (t) => {
  const oracle = await createOracle({ db: join(dir, 'load.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, logger: createLogger('oracle', 'silent') })
  t.after(() => oracle.close())
  const key = randomBytes(32)
  let load = { activeSessions: 0, queueDepth: 0 }
  const agent = await createOrbanAgent({
    url: oracle.url,
    key,
    heartbeatIntervalMs: 100,
    meshLoad: () => load,
    registration: await registration(100, key),
    onTask: (_task, c) => (queueMicrotask(() => c.progress({ progress: 1, stage: 'serving' })), { accept: true }),
  })
  t.after(() => agent.stop())
  await waitFor('it joins', () => oracle.core.node(agent.agentId))
  load = { activeSessions: 5, queueDepth: 2 }
  const node = await waitFor('the topology shows its load', () => oracle.core.topology('docs-llama-7m').nodes.find((n) => n.nodeAddress === agent.agentId && n.activeSessions === 5))
  assert.equal(node.queueDepth, 2)
})
