import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { parseEther } from 'viem'
import { evidenceToJson } from '../../../shared/verify/evidence.ts'
import type { DevAccount } from '../../chain/startDevnet.ts'
import { noisyShard } from '../../../testing/cheatingShards.ts'
import { startRewardsDevnet } from '../../../testing/rewardsDevnet.ts'
import { ExcludedPeerError } from '../createOracleCore.ts'

// On a real devnet and SQLite store: two hosts serve the same epoch; one is caught cheating (its
// evidence checked by the Oracle's own recomputation). The honest host's work is reported and
// paid; the cheater's is not; a second confirmed failure takes its node out of the assignment.

const MODEL = 'docs-llama-7m'
const FUND = parseEther('1')
const net = await startRewardsDevnet({ fundWeiPerEpoch: FUND })
after(() => net.stop())
// evidenceOf: what an origin's spot check of a host's step sends the Oracle (its signed commitment, audit and a checker's row).
const { devnet, core, reporter, ledger, honestShard, evidenceOf } = net
const [alice, mallory] = net.hosts
const lower = (a: DevAccount) => a.address.toLowerCase()

test("the cheater's work is not reported or paid, the honest host's is; a second failure takes it out of assignment", async () => {
  await reporter.tick()
  const e0 = reporter.epoch()
  await core.recordMetrics({ agent: lower(alice), tokensProcessed: 100, requestCount: 2, avgLatencyMs: 50, uptimeSeconds: 60 })
  await core.recordMetrics({ agent: lower(mallory), tokensProcessed: 100, requestCount: 2, avgLatencyMs: 50, uptimeSeconds: 60 })
  // mallory's logits are noisy (the last shard); an honest step of alice's falsely accused is rejected by the referee
  assert.equal((await ledger.report(evidenceToJson(await evidenceOf(mallory, noisyShard(honestShard, 0.1), 's1')))).verdict, 'confirmed')
  const lie = await evidenceOf(alice, honestShard, 's2')
  assert.equal((await ledger.report(evidenceToJson({ ...lie, checkerOutput: lie.checkerOutput.map((x) => -x) }))).verdict, 'rejected')

  await devnet.mineToNextEpoch()
  await reporter.tick()
  await reporter.tick()
  const reported = await net.reportedAgents()
  assert.deepEqual(reported, [alice.address])
  assert.equal(reporter.stats().withheldAgents, 1)
  await devnet.mineToNextEpoch()
  await reporter.tick()
  assert.ok(reporter.stats().distributed.includes(e0 + 1))
  const pending = net.pendingReward
  assert.equal(await pending(alice), FUND, 'the honest host gets the whole epoch')
  assert.equal(await pending(mallory), 0n)

  // a second confirmed failure: banned, its node leaves the assignment and cannot rejoin; the status says why
  const malloryPeer = net.peerOf(mallory)
  assert.ok(core.rangeOf(lower(mallory)))
  assert.equal((await ledger.report(evidenceToJson(await evidenceOf(mallory, noisyShard(honestShard, 0.1, 9), 's3')))).verdict, 'confirmed')
  assert.equal(core.node(lower(mallory)), undefined)
  await assert.rejects(core.join({ id: lower(mallory), kind: 'plumise', model: MODEL, grpcEndpoint: '', httpEndpoint: '', ramMb: 16_384, vramMb: 0, device: 'cpu', peerId: malloryPeer }), ExcludedPeerError)
  const status = ledger.status(malloryPeer)
  assert.equal(status.banned, true)
  assert.equal(status.confirmedFailures, 2)
  assert.ok(core.rangeOf(lower(alice)))
})
