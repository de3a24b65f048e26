import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { keccak256, stringToBytes } from 'viem'
import { silentLogger } from '../../shared/logger.ts'
import { createOracleCore, NodeIdSpaceError, pipelineOrder, UnknownModelError, UnknownNodeError, type OracleCore, type OracleCoreEvents } from './createOracleCore.ts'
import { readModelInfo, type ModelInfo } from './modelInfo.ts'
import { openOracleDatabase, MIGRATIONS, schemaVersion } from './store/oracleDatabase.ts'
import { inferenceProofHash } from '../../shared/chain/proofHash.ts'
import { createSqliteOracleStore } from './store/sqliteOracleStore.ts'

let dir: string
let llama: ModelInfo
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oracle-core-'))
  llama = await readModelInfo(undefined)
})
after(() => rm(dir, { recursive: true, force: true }))

const MIB = 1 << 20
/** A second served model, described directly (its files do not matter to the core). */
const big: ModelInfo = { name: 'acme/big-model', numLayers: 32, layerBytes: 200 * MIB, embedBytes: 500 * MIB, headBytes: 500 * MIB, source: 'acme/big-model', modelHash: keccak256(stringToBytes('acme/big-model')) }

function record(core: OracleCore) {
  const seen: Array<{ name: keyof OracleCoreEvents; data: unknown }> = []
  for (const name of ['topology', 'nodeStatus', 'nodeJoined', 'nodeLeft', 'assignment'] as const) core.events.on(name, (data: unknown) => seen.push({ name, data }))
  return seen
}

async function setup(file: string, t0: number, opts: { silenceMs?: number; replicas?: number; grow?: boolean } = {}) {
  const clock = { t: t0 }
  const store = createSqliteOracleStore({ path: join(dir, file) })
  const core = await createOracleCore({ store, models: [llama, big], logger: silentLogger, now: () => clock.t, silenceMs: opts.silenceMs ?? 600_000, replicas: opts.replicas ?? 1, grow: opts.grow, sweepIntervalMs: 3_600_000 })
  return { clock, store, core }
}

const gpu = (id: string, vramMb: number, extra: Record<string, unknown> = {}) => ({
  id,
  kind: 'plumise' as const,
  model: 'acme/big-model',
  grpcEndpoint: `http://${id}:50051`,
  httpEndpoint: `http://${id}:31331`,
  ramMb: 64_000,
  vramMb,
  device: 'cuda',
  ...extra,
})

/** Every layer of the topology covered exactly once, in pipeline order, ranges end to start. */
function assertOneChain(core: OracleCore, model: string, numLayers: number) {
  const topo = core.topology(model)
  let at = 0
  for (const [i, n] of topo.nodes.entries()) {
    assert.equal(n.pipelineOrder, i)
    assert.equal(n.layerStart, at)
    at = n.layerEnd
  }
  assert.equal(at, numLayers)
}

test('the shipped model is read from its files: layer count and sizes, proof hash of its name', () => {
  assert.equal(llama.name, 'docs-llama-7m')
  assert.equal(llama.numLayers, 8)
  assert.ok(llama.layerBytes > 0 && llama.embedBytes > 0)
  // Tied embeddings: the last shard holds the embedding matrix again as its LM head.
  assert.ok(llama.headBytes > llama.embedBytes)
  assert.equal(llama.modelHash, keccak256(stringToBytes('docs-llama-7m')))
})

test('joins split the layers by memory, announce joins, assignments and topology; ready is announced', async () => {
  const { core, store } = await setup('join.db', 1_000_000)
  const seen = record(core)
  // The model needs 32 × 200 MiB + 1000 MiB: no 3000 MiB node holds it alone, three together do.
  const a = await core.join(gpu('0xaa', 3000))
  assert.equal(a.isNew, true)
  assert.equal(a.totalLayers, 32)
  await core.join(gpu('0xbb', 3000))
  await core.join({ ...gpu('agent-c', 3000), kind: 'orban', grpcEndpoint: undefined, httpEndpoint: undefined, peerId: '12D3KooWc', multiaddrs: ['/ip4/127.0.0.1/tcp/4001'] })
  assertOneChain(core, 'acme/big-model', 32)
  const topo = core.topology('acme/big-model')
  assert.equal(topo.count, 3)
  assert.equal(topo.totalLayers, 32)
  assert.deepEqual(Object.keys(topo.nodes[0]!), [
    'id', 'nodeAddress', 'modelName', 'layerStart', 'layerEnd', 'totalLayers', 'grpcEndpoint', 'httpEndpoint', 'ramMb', 'device', 'vramMb',
    'benchmarkTokPerSec', 'ready', 'pipelineOrder', 'nodeMode', 'clusterId', 'rpcPort', 'lanIp', 'createdAt', 'updatedAt', 'kind', 'peerId', 'multiaddrs',
  ])
  const orban = topo.nodes.find((n) => n.nodeAddress === 'agent-c')!
  assert.equal(orban.kind, 'orban')
  assert.equal(orban.peerId, '12D3KooWc')
  assert.deepEqual(orban.multiaddrs, ['/ip4/127.0.0.1/tcp/4001'])
  assert.deepEqual(core.rangeOf('agent-c'), { start: orban.layerStart, end: orban.layerEnd })

  assert.deepEqual(seen.filter((e) => e.name === 'nodeJoined').map((e) => (e.data as { address: string }).address), ['0xaa', '0xbb', 'agent-c'])
  assert.ok(seen.filter((e) => e.name === 'topology').length >= 3)
  // The last assignment event of each node is its current range.
  for (const id of ['0xaa', '0xbb', 'agent-c']) {
    const last = seen.filter((e) => e.name === 'assignment' && (e.data as { id: string }).id === id).at(-1)!.data as { range: unknown }
    assert.deepEqual(last.range, core.rangeOf(id))
  }

  seen.length = 0
  await core.ready('0xbb')
  assert.deepEqual(seen.map((e) => e.name), ['nodeStatus', 'topology'])
  assert.equal(core.topology('acme/big-model').nodes.find((n) => n.nodeAddress === '0xbb')!.ready, true)
  await assert.rejects(core.ready('0xnobody'), /not registered/)
  await core.close()
  await store.close()
})

test('a model the oracle does not serve is refused, naming the served ones', async () => {
  const { core, store } = await setup('unknown.db', 1_000_000)
  await assert.rejects(core.join({ ...gpu('0xaa', 1000), model: 'bigscience/bloom-560m' }), (e: unknown) => {
    assert.ok(e instanceof UnknownModelError)
    assert.match(e.message, /"bigscience\/bloom-560m" is not served.*"docs-llama-7m", "acme\/big-model"/)
    return true
  })
  assert.throws(() => core.topology('nope'), UnknownModelError)
  await core.close()
  await store.close()
})

test('silent nodes are dropped after silenceMs (fake clock), their layers go to the others; touch and metrics keep a node alive', async () => {
  const { core, store, clock } = await setup('silence.db', 1_000_000, { silenceMs: 60_000 })
  const seen = record(core)
  for (const id of ['0xaa', '0xbb', '0xcc']) await core.join(gpu(id, 3000))
  clock.t += 59_000
  assert.deepEqual(await core.sweep(), [])
  assert.equal(core.touch('0xaa'), true)
  assert.equal(core.touch('0xunknown'), false)
  await core.recordMetrics({ agent: '0xbb', tokensProcessed: 10, requestCount: 1, avgLatencyMs: 5, uptimeSeconds: 59 })
  clock.t += 2_000
  assert.deepEqual(await core.sweep(), ['0xcc'])
  assert.equal(core.node('0xcc'), undefined)
  const left = seen.find((e) => e.name === 'nodeLeft')!.data as { address: string; reason: string }
  assert.equal(left.address, '0xcc')
  assert.match(left.reason, /silent for 61 s/)
  const taken = seen.filter((e) => e.name === 'assignment' && (e.data as { id: string }).id === '0xcc').at(-1)!.data as { range: unknown; previous: unknown }
  assert.equal(taken.range, undefined)
  assert.ok(taken.previous)
  // Two 3 GB nodes cannot hold 32 × 200 MiB + embeddings + head: whatever they hold is one chain from 0.
  const topo = core.topology('acme/big-model')
  assert.equal(topo.nodes[0]!.layerStart, 0)
  assert.ok(topo.nodes.every((n) => n.nodeAddress !== '0xcc'))

  clock.t += 60_001
  assert.deepEqual((await core.sweep()).sort(), ['0xaa', '0xbb'])
  assert.equal(core.topology('acme/big-model').count, 0)
  await core.close()
  await store.close()
})

test('explicit leave reassigns; re-registering for another model moves the node', async () => {
  const { core, store } = await setup('leave.db', 1_000_000)
  const seen = record(core)
  await core.join({ ...gpu('0xaa', 8000), model: 'docs-llama-7m' })
  await core.join({ ...gpu('0xbb', 8000), model: 'docs-llama-7m' })
  assert.equal(await core.leave('0xaa', 'shutdown'), true)
  assert.equal(await core.leave('0xaa', 'shutdown'), false)
  assert.deepEqual(core.rangeOf('0xbb'), { start: 0, end: 8 })
  const moved = await core.join(gpu('0xbb', 8000))
  assert.equal(moved.isNew, false)
  assert.equal(core.topology('docs-llama-7m').count, 0)
  assert.equal(core.topology('acme/big-model').count, 1)
  assert.ok(seen.some((e) => e.name === 'nodeLeft' && (e.data as { reason: string }).reason === 'moved to acme/big-model'))
  await core.close()
  await store.close()
})

test('metrics: cumulative counters become deltas, counters going backwards (agent restart) ask for a reset, proofs are stored with their hash', async () => {
  const { core, store, clock } = await setup('metrics.db', 1_000_000)
  const agent = '0x00000000000000000000000000000000000000aa'
  // a node that served for 4 minutes: enough for every claim below (see the bounds tests)
  await core.join({ ...gpu(agent, 8000), model: 'docs-llama-7m' })
  await core.ready(agent)
  clock.t += 240_000
  const r1 = await core.recordMetrics({ agent, tokensProcessed: 100, requestCount: 2, avgLatencyMs: 50, uptimeSeconds: 60 })
  assert.deepEqual(r1, { shouldReset: false, epoch: 0, delta: { tokens: 100, requests: 2 }, booked: { tokens: 100, requests: 2, uptimeSeconds: 60, avgLatencyMs: 50, node: agent }, clamped: false })
  const r2 = await core.recordMetrics({ agent, tokensProcessed: 250, requestCount: 5, avgLatencyMs: 40, uptimeSeconds: 120 })
  assert.deepEqual(r2.delta, { tokens: 150, requests: 3 })
  const proof = { modelHash: llama.modelHash, inputHash: keccak256(stringToBytes('hi')), outputHash: keccak256(stringToBytes('there')), tokenCount: 30 }
  const r3 = await core.recordMetrics({ agent, tokensProcessed: 30, requestCount: 1, avgLatencyMs: 10, uptimeSeconds: 5, proofs: [proof] })
  assert.deepEqual(r3, { shouldReset: true, epoch: 0, delta: { tokens: 30, requests: 1 }, booked: { tokens: 30, requests: 1, uptimeSeconds: 5, avgLatencyMs: 10, node: agent }, clamped: false })
  const [totals] = await store.metricsTotals(agent, 0)
  assert.equal(totals!.tokens, 280)
  assert.equal(totals!.requests, 6)
  assert.equal(totals!.reports, 3)
  assert.equal(totals!.latencyMsSum, 50 * 2 + 40 * 3 + 10 * 1)
  const [stored] = await store.proofs(agent, 10)
  assert.equal(stored!.proofHash, inferenceProofHash({ ...proof, agent }))
  assert.equal(stored!.tokenCount, 30)
  await core.close()
  await store.close()
})

test('metrics of a wallet that is no node are refused; a node books no more than the Oracle saw it serve, and what is left survives a restart', async () => {
  const file = 'bounds.db'
  const { core, store, clock } = await setup(file, 1_000_000)
  const stranger = '0x00000000000000000000000000000000000000ee'
  await assert.rejects(core.recordMetrics({ agent: stranger, tokensProcessed: 10, requestCount: 1, avgLatencyMs: 5, uptimeSeconds: 60 }), (e: unknown) => e instanceof UnknownNodeError && /not a node of this oracle/.test(e.message))
  assert.deepEqual(await store.metricsTotals(stranger), [])
  assert.equal(await store.agentCounters(stranger), undefined)

  // 12.5 tok/s declared: below the floor, so 100 × 32 = 3200 tokens per second seen serving
  const id = '0x00000000000000000000000000000000000000bb'
  await core.join({ ...gpu(id, 8000), model: 'docs-llama-7m', benchmarkTokPerSec: 12.5 })
  clock.t += 60_000
  // registered, not ready: nothing was served, nothing is booked (but the counters move on)
  const early = await core.recordMetrics({ agent: id, tokensProcessed: 500, requestCount: 5, avgLatencyMs: 5, uptimeSeconds: 60 })
  assert.deepEqual(early.booked, { tokens: 0, requests: 0, uptimeSeconds: 0, avgLatencyMs: 5, node: id })
  assert.equal(early.clamped, true)

  await core.ready(id)
  clock.t += 30_000
  const big = await core.recordMetrics({ agent: id, tokensProcessed: 500 + 1_000_000, requestCount: 5 + 50, avgLatencyMs: 1, uptimeSeconds: 60 + 3600 })
  assert.deepEqual(big.delta, { tokens: 1_000_000, requests: 50 })
  assert.deepEqual(big.booked, { tokens: 30 * 3200, requests: 50, uptimeSeconds: 30, avgLatencyMs: (1000 * 30 * 3200) / 50 / 3200, node: id })
  assert.equal(big.clamped, true)
  assert.deepEqual(core.budget(id), { servingSeconds: 0, tokens: 0 })

  // heartbeats every minute: each minute is credited; a claim within it is booked whole
  for (let i = 0; i < 3; i++) {
    clock.t += 60_000
    assert.equal(core.touch(id), true)
  }
  const honest = await core.recordMetrics({ agent: id, tokensProcessed: 1_000_500 + 1000, requestCount: 56, avgLatencyMs: 400, uptimeSeconds: 3660 + 180 })
  assert.deepEqual(honest.booked, { tokens: 1000, requests: 1, uptimeSeconds: 180, avgLatencyMs: 400, node: id })
  assert.equal(honest.clamped, false)
  // a long silence counts for the liveness gap (5 min) at most; tokens the 3 minutes allowed and no report claimed stay
  clock.t += 540_000
  core.touch(id)
  const left = 180 * 3200 - 1000 + 300 * 3200
  assert.deepEqual(core.budget(id), { servingSeconds: 300, tokens: left })

  const [totals] = await store.metricsTotals(id, 0)
  assert.equal(totals!.tokens, 30 * 3200 + 1000)
  assert.equal(totals!.uptimeCredited, 30 + 180)
  assert.equal(totals!.requests, 51)
  await core.close()
  await store.close()

  // what the node may still book is kept; the time the Oracle was down is not credited
  const again = await setup(file, clock.t + 3_600_000)
  assert.deepEqual(again.core.budget(id), { servingSeconds: 300, tokens: left })
  again.clock.t += 10_000
  again.core.touch(id)
  assert.deepEqual(again.core.budget(id), { servingSeconds: 310, tokens: left + 10 * 3200 })
  await again.core.close()
  await again.store.close()
})

test('a restart from the same SQLite file loses nothing: nodes, ranges, ready flags, ids, replay guard, counters; silence clocks restart', async () => {
  const file = 'restart.db'
  const first = await setup(file, 1_000_000, { silenceMs: 60_000 })
  for (const id of ['0xaa', '0xbb', '0xcc']) await first.core.join(gpu(id, 3000))
  await first.core.join({ ...gpu('0xdd', 8000), model: 'docs-llama-7m' })
  await first.core.ready('0xbb')
  await first.core.recordMetrics({ agent: '0xaa', tokensProcessed: 500, requestCount: 4, avgLatencyMs: 1, uptimeSeconds: 1 })
  assert.equal(await first.store.acceptTimestamp('0xaa', 'register', 1_700_000_000), true)
  await first.store.setValue('orban:agent-c', '{"earnings":1}')
  const before = { big: first.core.topology('acme/big-model'), llama: first.core.topology('docs-llama-7m') }
  await first.core.close()
  await first.store.close()

  // An hour later: long past the silence limit by the stored clocks.
  const second = await setup(file, 1_000_000 + 3_600_000, { silenceMs: 60_000 })
  const seen = record(second.core)
  assert.deepEqual(second.core.topology('acme/big-model'), before.big)
  assert.deepEqual(second.core.topology('docs-llama-7m'), before.llama)
  assert.deepEqual(await second.core.sweep(), [], 'reconnecting agents get a full silence period')
  assert.equal(seen.length, 0, 'loading announces nothing')
  assert.equal(await second.store.acceptTimestamp('0xaa', 'register', 1_700_000_000), false)
  assert.equal(await second.store.getValue('orban:agent-c'), '{"earnings":1}')
  const r = await second.core.recordMetrics({ agent: '0xaa', tokensProcessed: 600, requestCount: 5, avgLatencyMs: 1, uptimeSeconds: 2 })
  assert.deepEqual(r.delta, { tokens: 100, requests: 1 })
  // A node joining after the restart gets the next id.
  await second.core.join(gpu('0xee', 3000))
  assert.equal(second.core.node('0xee')!.seq, 5)
  second.clock.t += 60_001
  assert.deepEqual((await second.core.sweep()).sort(), ['0xaa', '0xbb', '0xcc', '0xdd', '0xee'])
  await second.core.close()
  await second.store.close()
})

test('stored ranges that no longer fit the model are reassigned on load', async () => {
  const file = 'shrunk.db'
  const first = await setup(file, 1_000_000)
  await first.core.join(gpu('0xaa', 80_000))
  assert.deepEqual(first.core.rangeOf('0xaa'), { start: 0, end: 32 })
  await first.core.close()
  await first.store.close()
  const store = createSqliteOracleStore({ path: join(dir, file) })
  const core = await createOracleCore({ store, models: [llama, { ...big, numLayers: 24 }], logger: silentLogger, replicas: 1 })
  assert.deepEqual(core.rangeOf('0xaa'), { start: 0, end: 24 })
  await core.close()
  await store.close()
})

test('pipeline order walks whole chains first (agents call order + 1), then the nodes in none', () => {
  const n = (seq: number, start: number, end: number) => ({ seq, r: { start, end } })
  // seq 1 is a fragment that leads nowhere; the two chains are [2] and [3, 4].
  const nodes = [n(1, 0, 3), n(2, 0, 8), n(3, 0, 5), n(4, 5, 8), n(5, 6, 8)]
  assert.deepEqual(pipelineOrder(nodes, (x) => x.r, 8).map((x) => x.seq), [2, 3, 4, 1, 5])
})

test('the database records its schema version and refuses a newer one', () => {
  const path = join(dir, 'schema.db')
  const db = openOracleDatabase(path)
  assert.equal(schemaVersion(db), MIGRATIONS.length)
  assert.equal((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal')
  db.prepare('UPDATE schema_version SET version = ?').run(MIGRATIONS.length + 1)
  db.close()
  assert.throws(() => openOracleDatabase(path), /newer than this build knows/)
})

test('Orban agents and Plumise wallets never share an id: no 0x Orban ids, no id changes kind, the other node stays as it was', async () => {
  const { core, store } = await setup('id-spaces.db', 1_000_000)
  const wallet = '0x' + 'ab'.repeat(20)
  await core.join(gpu(wallet, 3000))
  const before = core.node(wallet)
  const orban = { ...gpu(wallet, 90_000), kind: 'orban' as const, grpcEndpoint: undefined, httpEndpoint: undefined, peerId: '12D3KooWx', multiaddrs: ['/ip4/6.6.6.6/tcp/1'] }
  // The wallet's own id, and any other 0x id, cannot join as an Orban agent.
  await assert.rejects(core.join(orban), NodeIdSpaceError)
  await assert.rejects(core.join({ ...orban, id: '0X' + 'cd'.repeat(20) }), NodeIdSpaceError)
  assert.deepEqual(core.node(wallet), before)
  assert.equal(core.node('0X' + 'cd'.repeat(20)), undefined)
  // Nor does a Plumise join take an Orban agent's node.
  await core.join({ ...orban, id: 'agent-c' })
  await assert.rejects(core.join(gpu('agent-c', 3000)), NodeIdSpaceError)
  assert.equal(core.node('agent-c')?.kind, 'orban')
  assert.equal(core.node('agent-c')?.peerId, '12D3KooWx')
  await core.close()
  await store.close()
})

/** An Orban node host for docs-llama-7m with a little over half the model's weights (as e2e hosts with --memory-mb 9). */
const host = (id: string) => ({ id, kind: 'orban' as const, model: 'docs-llama-7m', ramMb: 9, vramMb: 0, device: 'cpu', peerId: `peer-${id}` })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('a closed channel: the range is kept for the reconnect grace, then re-planned; an idle connected node takes it, never an absent one', async () => {
  // Spares kept idle (grow off): the hand-over to an idle node is what this checks.
  const { core, store } = await setup('grace.db', 1_000_000, { grow: false })
  const seen = record(core)
  for (const id of ['host-a', 'host-b', 'host-c', 'host-d']) await core.join(host(id))
  const a = core.rangeOf('host-a')
  assert.ok(a && core.rangeOf('host-b'), 'a and b make the pipeline')
  assert.equal(core.rangeOf('host-c'), undefined, 'c is spare')
  assert.equal(core.rangeOf('host-d'), undefined, 'd is spare')
  await core.ready('host-a')
  // c, idle, loses its channel for good; then a, holding a range, loses its channel.
  assert.equal(await core.absent('host-c', 60_000), true)
  assert.equal(await core.absent('host-a', 150), true)
  assert.equal(await core.absent('host-unknown'), false)
  assert.deepEqual(core.rangeOf('host-a'), a, 'within the grace the range stays')
  assert.equal(core.node('host-a')!.ready, false, 'a disconnected node is not ready')
  assert.ok(core.node('host-a')!.absentSince !== undefined)
  // A change during the grace (another join) neither moves the absent node nor gives the absent idle one a range.
  await core.join(host('host-e'))
  assert.deepEqual(core.rangeOf('host-a'), a)
  await sleep(400)
  assert.equal(core.node('host-a'), undefined, 'dropped after the grace')
  assert.match((seen.find((e) => e.name === 'nodeLeft')!.data as { reason: string }).reason, /disconnected/)
  const holders = ['host-d', 'host-e'].filter((id) => core.rangeOf(id))
  assert.ok(holders.some((id) => core.rangeOf(id)!.start === a.start), `a connected spare took a's layers: ${JSON.stringify(core.nodes('docs-llama-7m').map((n) => [n.id, n.range]))}`)
  assert.equal(core.rangeOf('host-c'), undefined, 'the absent idle node got nothing')
  assert.ok(!seen.some((e) => e.name === 'assignment' && (e.data as { id: string; range?: unknown }).id === 'host-c' && (e.data as { range?: unknown }).range), 'no assignment event ever gave c a range')
  // Every layer has a copy among connected nodes.
  const covered = new Array<number>(8).fill(0)
  for (const n of core.nodes('docs-llama-7m')) if (n.range && n.absentSince === undefined) for (let l = n.range.start; l < n.range.end; l++) covered[l]!++
  assert.ok(covered.every((c) => c >= 1), JSON.stringify(covered))
  await core.close()
  await store.close()
})

test('a node that reconnects within the grace keeps its range; the sweep drops one whose grace is over', async () => {
  const { core, store, clock } = await setup('reconnect.db', 1_000_000)
  for (const id of ['host-a', 'host-b', 'host-c']) await core.join(host(id))
  const a = core.rangeOf('host-a')
  assert.ok(a)
  await core.absent('host-a', 200)
  await sleep(50)
  assert.equal(core.present('host-a'), true)
  // It re-registers (as an agent does after a reconnect): same range, not new.
  const again = await core.join(host('host-a'))
  assert.equal(again.isNew, false)
  assert.deepEqual(again.range, a)
  await sleep(400)
  assert.deepEqual(core.rangeOf('host-a'), a, 'the cancelled grace dropped nothing')
  assert.equal(core.node('host-a')!.absentSince, undefined)
  // By the (fake) clock: the grace passed, the sweep drops it even before its timer fires.
  await core.absent('host-b', 30_000)
  assert.deepEqual(await core.sweep(), [])
  clock.t += 30_000
  assert.deepEqual(await core.sweep(), ['host-b'])
  assert.ok(core.rangeOf('host-c'), 'the spare took over')
  await core.close()
  await store.close()
})

test('every node that can serve does: four hosts for one wanted copy make two pipelines; a Plumise agent joining them gets a range a route goes on from', async () => {
  const { core, store } = await setup('grow.db', 1_000_000)
  for (const id of ['host-a', 'host-b', 'host-c', 'host-d']) await core.join(host(id))
  for (const id of ['host-a', 'host-b', 'host-c', 'host-d']) assert.ok(core.rangeOf(id), `${id} serves`)
  // Two node-disjoint pipelines over the 8 layers: every layer twice.
  const copies = new Array<number>(8).fill(0)
  for (const n of core.nodes('docs-llama-7m')) for (let l = n.range!.start; l < n.range!.end; l++) copies[l]!++
  assert.deepEqual(copies, new Array(8).fill(2))
  // A small Plumise agent (3 MB: no pipeline's stretch fits it) still gets layers, ending where a host starts or at the end.
  const joined = await core.join({ id: '0x' + 'ab'.repeat(20), kind: 'plumise', model: 'docs-llama-7m', ramMb: 3, vramMb: 0, device: 'cpu', grpcEndpoint: 'http://p:50051', httpEndpoint: 'http://p:31331' })
  assert.ok(joined.range && joined.range.end > joined.range.start, 'a non-empty range')
  const starts = new Set(core.nodes('docs-llama-7m').map((n) => n.range?.start))
  assert.ok(joined.range.end === 8 || starts.has(joined.range.end), `its range ${joined.range.start}-${joined.range.end} ends where a route goes on`)
  await core.close()
  await store.close()
})

test('a node\'s reported load shows in the topology (sessions open, steps queued); unknown until reported, gone when it leaves', async () => {
  const { core, store } = await setup('load.db', 1_000_000)
  for (const id of ['host-a', 'host-b']) await core.join(host(id))
  const nodeOf = (id: string) => core.topology('docs-llama-7m').nodes.find((n) => n.nodeAddress === id)
  assert.equal(nodeOf('host-a')!.activeSessions, undefined)
  assert.equal(core.reportLoad('host-a', { activeSessions: 3, queueDepth: 1 }), true)
  assert.equal(core.reportLoad('host-unknown', { activeSessions: 1, queueDepth: 0 }), false)
  assert.equal(nodeOf('host-a')!.activeSessions, 3)
  assert.equal(nodeOf('host-a')!.queueDepth, 1)
  assert.equal(nodeOf('host-b')!.queueDepth, undefined)
  await core.leave('host-a', 'test')
  await core.join(host('host-a'))
  assert.equal(nodeOf('host-a')!.activeSessions, undefined)
  await core.close()
  await store.close()
})
