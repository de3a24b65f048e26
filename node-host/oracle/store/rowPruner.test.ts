import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { keccak256, stringToBytes } from 'viem'
import { silentLogger } from '../../../shared/logger.ts'
import type { OrbanPayload } from '../../../shared/orban/orbanMessages.ts'
import { createOracleCore } from '../createOracleCore.ts'
import { readModelInfo } from '../modelInfo.ts'
import { openOracleDatabase } from './oracleDatabase.ts'
import type { StoredProof } from './oracleStore.ts'
import { createRowPruner } from './rowPruner.ts'
import { createSqliteOracleStore } from './sqliteOracleStore.ts'
import { createSqliteOrbanStore } from '../orban/sqliteOrbanStore.ts'

// Old rows go on a schedule, against a real SQLite file: proofs and metrics of reported epochs past
// the retention, counters of agents silent that long, replay-guard entries past any signed
// timestamp's window, budgets of nodes gone, Orban metrics and proof-of-work history. What a
// restart reads stays: nodes, assignments, the reward reporter's state, unreported epochs, recent
// counters and replay entries.

const DAY = 86_400_000
const NOW = 1_800_000_000_000
let dir: string
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oracle-prune-'))
})
after(() => rm(dir, { recursive: true, force: true }))

const proof = (agent: string, epoch: number, createdAt: number, n: number): StoredProof => ({
  agent,
  epoch,
  modelHash: keccak256(stringToBytes('m')),
  inputHash: keccak256(stringToBytes(`in ${n}`)),
  outputHash: keccak256(stringToBytes(`out ${n}`)),
  tokenCount: 3,
  proofHash: keccak256(stringToBytes(`proof ${n}`)),
  createdAt,
})
const batch = { agent_id: 'rig-1', time_range: { start: '2026-01-01T00:00:00Z', end: '2026-01-01T00:05:00Z' }, aggregated_metrics: { tasks_completed: 1, tasks_failed: 0, total_gpu_hours: 0.1, avg_gpu_utilization: 0.5, total_energy_kwh: 0.01, earnings_usd: 0 } } as OrbanPayload<'METRICS_BATCH'>
const count = (db: ReturnType<typeof openOracleDatabase>, table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n

test('old rows are pruned on a schedule; what a restart and the unreported epochs need is kept', async () => {
  const path = join(dir, 'oracle.db')
  const db = openOracleDatabase(path)
  const store = createSqliteOracleStore({ db })
  const orban = createSqliteOrbanStore(db)
  const old = NOW - 40 * DAY
  const recent = NOW - DAY
  const [gone, quiet, live] = ['0x00000000000000000000000000000000000000a1', '0x00000000000000000000000000000000000000a2', '0x00000000000000000000000000000000000000a3']

  // a live node with its range and budget; the reporter's state
  const core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, now: () => NOW, sweepIntervalMs: 3_600_000 })
  await core.join({ id: live, kind: 'plumise', model: 'docs-llama-7m', grpcEndpoint: 'http://a:1', httpEndpoint: 'http://a:2', ramMb: 16_384, vramMb: 0, device: 'cpu' })
  await core.close()
  await store.setValue('chain:rewards:test', '{"nextEpoch":5,"toDistribute":[]}')
  await store.saveBudgets([
    { nodeId: live, servingSeconds: 30, tokens: 99, updatedAt: old },
    { nodeId: gone, servingSeconds: 10, tokens: 10, updatedAt: old },
  ])

  // gone: reported long ago, epoch 1 (reported). quiet: old counters, but a row in epoch 5, which the reporter has not reported. live: recent.
  const entry = (agent: string, epoch: number, at: number, proofs: StoredProof[]) =>
    store.recordMetrics({ counters: { agent, tokens: 10, requests: 1, uptimeSeconds: 60, epoch, reportedAt: at }, delta: { tokens: 10, requests: 1, latencyMsSum: 5, uptimeSeconds: 60 }, uptimeSeconds: 60, proofs })
  await entry(gone, 1, old, [proof(gone, 1, old, 1), proof(gone, 1, old, 2)])
  await entry(quiet, 5, old, [proof(quiet, 5, old, 3)])
  await entry(live, 1, recent, [proof(live, 1, recent, 4)])
  assert.equal(await store.acceptTimestamp(gone, 'metrics', Math.floor((NOW - 2 * DAY) / 1000)), true)
  assert.equal(await store.acceptTimestamp(live, 'metrics', Math.floor((NOW - 60_000) / 1000)), true)
  await orban.addMetrics('rig-1', batch, old)
  await orban.addMetrics('rig-1', batch, recent)
  await orban.putPow({ challengeId: 'c-old', agentId: 'rig-1', difficulty: 8, verified: true, computationTimeMs: 3, issuedAt: old, answeredAt: old })
  await orban.putPow({ challengeId: 'c-new', agentId: 'rig-1', difficulty: 8, verified: true, computationTimeMs: 3, issuedAt: recent, answeredAt: recent })
  await orban.bindAgentKey('rig-1', 'key', old)

  const pruner = createRowPruner({ store, orbanStore: orban, logger: silentLogger, keepFromEpoch: () => 5, now: () => NOW, intervalMs: 3_600_000 })
  const result = await pruner.prune()
  assert.deepEqual(result, { proofs: 2, metricsTotals: 1, agentCounters: 1, replayGuard: 1, nodeBudgets: 1, orbanMetrics: 1, orbanPow: 1 })
  assert.deepEqual((await store.proofs(gone, 10)).length, 0)
  assert.deepEqual(await store.metricsTotals(gone), [])
  assert.equal(await store.agentCounters(gone), undefined)
  assert.equal(await store.lastTimestamp(gone, 'metrics'), undefined)
  // epoch 5 is not reported yet: kept at any age, and with it the counters its deltas are taken against
  assert.equal((await store.epochProofs(5)).length, 1)
  assert.equal((await store.metricsTotals(quiet)).length, 1)
  assert.ok(await store.agentCounters(quiet))
  assert.equal((await store.proofs(live, 10)).length, 1)
  assert.equal(await store.lastTimestamp(live, 'metrics'), Math.floor((NOW - 60_000) / 1000))
  assert.deepEqual((await orban.metrics('rig-1')).length, 1)
  assert.deepEqual((await orban.powResults('rig-1')).map((p) => p.challengeId), ['c-new'])
  assert.ok(await orban.agent('rig-1'), "an agent's key binding is never pruned")
  assert.deepEqual(await pruner.prune(), { proofs: 0, metricsTotals: 0, agentCounters: 0, replayGuard: 0, nodeBudgets: 0, orbanMetrics: 0, orbanPow: 0 })
  await store.close()

  // a restart reads everything it needs
  const store2 = createSqliteOracleStore({ path })
  const core2 = await createOracleCore({ store: store2, models: [await readModelInfo(undefined)], logger: silentLogger, now: () => NOW, sweepIntervalMs: 3_600_000 })
  assert.deepEqual(core2.rangeOf(live), { start: 0, end: 8 })
  assert.deepEqual(core2.budget(live), { servingSeconds: 30, tokens: 99 })
  assert.equal(await store2.getValue('chain:rewards:test'), '{"nextEpoch":5,"toDistribute":[]}')
  assert.equal(await store2.acceptTimestamp(live, 'metrics', Math.floor((NOW - 60_000) / 1000)), false, 'the replay guard still holds')
  const r = await core2.recordMetrics({ agent: live, tokensProcessed: 15, requestCount: 2, avgLatencyMs: 5, uptimeSeconds: 70 })
  assert.deepEqual(r.delta, { tokens: 5, requests: 1 })
  await core2.close()
  await store2.close()
})

test('the schedule runs a pass at start and then every interval, until stopped', async () => {
  const store = createSqliteOracleStore({ path: ':memory:' })
  let clock = NOW
  const pruner = createRowPruner({ store, logger: silentLogger, now: () => clock, intervalMs: 30 })
  assert.equal(await store.acceptTimestamp('0xaa', 'ready', Math.floor(NOW / 1000) - 10), true)
  pruner.start()
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(await store.lastTimestamp('0xaa', 'ready'), Math.floor(NOW / 1000) - 10, 'recent: kept')
  clock += 2 * DAY
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(await store.lastTimestamp('0xaa', 'ready'), undefined, 'a day past the window: pruned by a later pass')
  pruner.stop()
  assert.equal(await store.acceptTimestamp('0xbb', 'ready', 1), true)
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(await store.lastTimestamp('0xbb', 'ready'), 1, 'stopped: no more passes')
  await store.close()
})
