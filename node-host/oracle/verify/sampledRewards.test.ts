import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseEther } from 'viem'
import { silentLogger } from '../../../shared/logger.ts'
import { evidenceToJson } from '../../../shared/verify/evidence.ts'
import type { DevAccount } from '../../chain/startDevnet.ts'
import { noisyShard } from '../../../testing/cheatingShards.ts'
import { startRewardsDevnet } from '../../../testing/rewardsDevnet.ts'
import { createVerifyLedger, EvidenceRefusedError } from './verifyLedger.ts'

// Only sampled work is paid (paySampledWorkOnly), on a real devnet and SQLite store: two hosts book
// the same work in an epoch; a spot check sampled one of alice's committed steps and passed (the
// origin sent it as a sample, the Oracle's referee recomputed it), while bob never attached a
// commitment. Alice is reported and paid; bob is not, and his status says why.

const FUND = parseEther('1')
const net = await startRewardsDevnet({ fundWeiPerEpoch: FUND, paySampledWorkOnly: true })
after(() => net.stop())
// checkOf: what an origin's passed (or failed) spot check of a host's step sends the Oracle.
const { devnet, store, core, reporter, ledger, honestShard, peerOf, evidenceOf: checkOf } = net
const [alice, bob] = net.hosts
const lower = (a: DevAccount) => a.address.toLowerCase()

let sampledEpoch = -1

test("only sampled work is reported and paid: the committed, sampled host's is; the uncommitted host's is not, and its status says why", async () => {
  await reporter.tick()
  const e0 = reporter.epoch()
  await core.recordMetrics({ agent: lower(alice), tokensProcessed: 100, requestCount: 2, avgLatencyMs: 50, uptimeSeconds: 60 })
  await core.recordMetrics({ agent: lower(bob), tokensProcessed: 100, requestCount: 2, avgLatencyMs: 50, uptimeSeconds: 60 })

  // a peer's own session proves nothing (it can commit to work nobody asked for)
  await assert.rejects(ledger.sample(evidenceToJson(await checkOf(bob, honestShard, 'own', peerOf(bob)))), EvidenceRefusedError)
  // alice's sampled step: the referee recomputes it and agrees; a second copy is a duplicate
  const pass = evidenceToJson(await checkOf(alice, honestShard, 's1'))
  assert.equal((await ledger.sample(pass)).verdict, 'verified')
  assert.equal((await ledger.sample(pass)).verdict, 'duplicate')
  assert.equal((await ledger.sample(evidenceToJson(await checkOf(alice, honestShard, 's2')))).verdict, 'verified')
  assert.equal((await ledger.sample(evidenceToJson(await checkOf(alice, honestShard, 's3')))).verdict, 'enough', 'a peer needs no more than two per epoch')
  assert.equal(ledger.sampled(peerOf(alice), e0), true)
  assert.equal(ledger.sampled(peerOf(bob), e0), false)

  await devnet.mineToNextEpoch()
  await reporter.tick()
  await reporter.tick()
  const reported = await net.reportedAgents()
  assert.deepEqual(reported, [alice.address])
  assert.equal(reporter.stats().unsampledAgents, 1, 'bob: no confirmed failure, but no sample either')
  assert.equal(reporter.stats().withheldAgents, 0)
  await devnet.mineToNextEpoch()
  await reporter.tick()
  assert.ok(reporter.stats().distributed.includes(e0 + 1))
  const pending = net.pendingReward
  assert.equal(await pending(alice), FUND, 'the sampled host gets the whole epoch')
  assert.equal(await pending(bob), 0n)

  const status = ledger.status(peerOf(bob))
  assert.deepEqual(status.sampledEpochs, [])
  assert.match(status.rewardRule, /only if it is in sampledEpochs/)
  assert.deepEqual(ledger.status(peerOf(alice)).sampledEpochs, [e0])
  sampledEpoch = e0
})

test('a sample the referee finds wrong is a confirmed failure, not a sample; a restart keeps the samples', async () => {
  const cheat = await ledger.sample(evidenceToJson(await checkOf(bob, noisyShard(honestShard, 0.1), 'noisy')))
  assert.equal(cheat.verdict, 'confirmed')
  assert.equal(ledger.status(peerOf(bob)).confirmedFailures, 1)
  assert.deepEqual(ledger.status(peerOf(bob)).sampledEpochs, [])
  const reloaded = await createVerifyLedger({ store, epoch: () => reporter.epoch(), logger: silentLogger })
  assert.equal(reloaded.sampled(peerOf(alice), sampledEpoch), true)
  assert.equal(reloaded.sampled(peerOf(bob), sampledEpoch), false)
})
