import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { createOrbanAgent, type OrbanAgent, type OrbanRegistration, type OrbanTaskController } from '../../shared/oracle/orban/createOrbanAgent.ts'
import { createLogger } from '../logger.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { createOracle, type Oracle } from './createOracle.ts'
import { readModelInfo } from './modelInfo.ts'

const MODEL = 'docs-llama-7m'
let dir: string
let oracle: Oracle
const agents: OrbanAgent[] = []
let assignedModelUrl: string | undefined

const registration = (memoryMb: number): OrbanRegistration => ({
  hardware: { gpus: [], cpu: { model: 'test', cores: 2, threads: 2 }, memory_gb: 8, storage_available_gb: 10 },
  capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 1, fp16_support: false, int8_support: false },
  location: { country: '', region: '', latency_to_platform_ms: 0 },
  availability: { hours_per_day: 24, reliability_score: 1 },
  mesh: { peer_id: `peer-${randomBytes(4).toString('hex')}`, multiaddrs: [], device: 'cpu', memory_mb: memoryMb, benchmark_tok_per_sec: 100 },
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
  const refuser = await createOrbanAgent({
    url: oracle.url,
    key: randomBytes(32),
    heartbeatIntervalMs: 50,
    registration: registration(100),
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
  const agent = await createOrbanAgent({
    url: oracle.url,
    key: randomBytes(32),
    heartbeatIntervalMs: 200,
    registration: registration(100),
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

test('an agent that stops (a clean close, 1000) leaves at once; one whose socket just drops keeps its range for the silence window', async () => {
  const serving = (agent: OrbanAgent) => () => oracle.core.topology(MODEL).nodes.find((n) => n.nodeAddress === agent.agentId && n.ready)
  // The earlier tests' agents hold the one copy (replicas 1): they stop first, so the next agent gets the range.
  for (const a of agents.splice(0)) await a.stop()
  await waitFor('no agent assigned', () => oracle.core.topology(MODEL).nodes.length === 0, 2000)
  const start = async () => {
    const agent = await createOrbanAgent({
      url: oracle.url,
      key: randomBytes(32),
      heartbeatIntervalMs: 200,
      registration: registration(100),
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
