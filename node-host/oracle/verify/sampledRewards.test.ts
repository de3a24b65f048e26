import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { getContractEvents } from 'viem/actions'
import { parseEther } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { rewardPoolAbi } from '../../../shared/chain/abis.ts'
import { getPendingReward } from '../../../shared/chain/getPendingReward.ts'
import { createInferenceProof } from '../../../shared/chain/proofHash.ts'
import { registerAgent } from '../../../shared/chain/registerAgent.ts'
import { loadShards } from '../../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../../shared/engine/shardSession.ts'
import { silentLogger } from '../../../shared/logger.ts'
import { evidenceToJson, type Evidence } from '../../../shared/verify/evidence.ts'
import { recomputeLastRow } from '../../../shared/verify/recompute.ts'
import { createStepLog } from '../../../shared/verify/stepLog.ts'
import { rowFromBytes } from '../../../shared/verify/verifyProtocol.ts'
import { startDevnet, type DevAccount, type Devnet } from '../../chain/startDevnet.ts'
import { nodeRuntime } from '../../engine/nodeRuntime.ts'
import { fileModelSource } from '../../model/fileModelSource.ts'
import { noisyShard } from '../../../testing/cheatingShards.ts'
import { loadFixture, type Fixture } from '../../../testing/fixtures.ts'
import { createOracleCore, type OracleCore } from '../createOracleCore.ts'
import { readModelInfo } from '../modelInfo.ts'
import type { OracleStore } from '../store/oracleStore.ts'
import { createRewardReporter, type RewardReporter } from '../rewards/rewardReporter.ts'
import { createShardReferee } from './shardReferee.ts'
import { createSqliteOracleStore } from '../store/sqliteOracleStore.ts'
import { verifyConsequences } from './verifyConsequences.ts'
import { createVerifyLedger, EvidenceRefusedError, type VerifyLedger } from './verifyLedger.ts'

// Only sampled work is paid (paySampledWorkOnly), on a real devnet and SQLite store: two hosts book
// the same work in an epoch; a spot check sampled one of alice's committed steps and passed (the
// origin sent it as a sample, the Oracle's referee recomputed it), while bob never attached a
// commitment. Alice is reported and paid; bob is not, and his status says why.

const MODEL = 'docs-llama-7m'
const FUND = parseEther('1')
let dir: string
let devnet: Devnet
let store: OracleStore
let core: OracleCore
let reporter: RewardReporter
let ledger: VerifyLedger
let fixture: Fixture
let honestShard: ShardSession
let alice: DevAccount, bob: DevAccount, stranger: DevAccount
const keys = new Map<string, PrivateKey>()
const lower = (a: DevAccount) => a.address.toLowerCase()
const peerOf = (a: DevAccount) => peerIdFromPrivateKey(keys.get(lower(a))!).toString()

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sampled-rewards-'))
  fixture = await loadFixture('docs-llama-7m')
  honestShard = (await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [{ start: 0, end: 8 }] })).shards[0]!
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  ;[alice, bob, stranger] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount]
  for (const who of [alice, bob]) {
    const key = await generateKeyPair('Ed25519')
    keys.set(lower(who), key)
    await registerAgent(devnet.walletClient(who), {
      config: devnet.config,
      peer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (m) => key.sign(m) },
      precompile: { name: 'shardmesh', modelHash: createInferenceProof({ model: MODEL, prompt: '', output: '', agentAddress: who.address, tokenCount: 0 }).modelHash },
    })
  }
  store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
  const chain = { config: devnet.config, rpcUrl: devnet.rpcUrl, chain: devnet.chain, devnet: devnet.file }
  const consequences = verifyConsequences({ ledger: () => ledger, core: () => core })
  reporter = createRewardReporter({ store, chain, account: privateKeyToAccount(devnet.accounts.oracle.privateKey), fundWeiPerEpoch: FUND, logger: silentLogger, pollMs: 3_600_000, withheld: consequences.withheld, unsampled: consequences.unsampled })
  await reporter.start()
  ledger = await createVerifyLedger({ store, referee: createShardReferee(new Map([[MODEL, fileModelSource(fixture.dir)]])), epoch: () => reporter.epoch(), logger: silentLogger, onBan: consequences.ban, paySampledWorkOnly: true })
  const clock = { t: Date.now() }
  core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, epoch: () => reporter.epoch(), sweepIntervalMs: 3_600_000, replicas: 2, now: () => clock.t, excludedPeer: ledger.banned })
  for (const [i, who] of [alice, bob].entries()) {
    await core.join({ id: lower(who), kind: 'plumise', model: MODEL, grpcEndpoint: `http://10.0.0.${i + 1}:50051`, httpEndpoint: '', ramMb: 16_384, vramMb: 0, device: 'cpu', peerId: peerOf(who) })
    await core.ready(lower(who))
  }
  clock.t += 200_000
})
after(async () => {
  await reporter?.stop()
  await core?.close()
  await store?.close()
  await devnet?.close()
  await rm(dir, { recursive: true, force: true })
})

/** What an origin's passed (or failed) spot check of `who`'s step sends the Oracle. */
async function checkOf(who: DevAccount, shard: ShardSession, session: string, origin = 'origin'): Promise<Evidence> {
  const key = keys.get(lower(who))!
  const log = createStepLog({ signer: { peerId: peerOf(who), sign: (d) => key.sign(d) }, model: MODEL, hiddenSize: 256 })
  const tokens = fixture.prompts[0]!.input_ids
  const out = await shard.forward(session, { tokens }, { reset: true })
  shard.drop(session)
  const { commitment: digest } = log.record({ origin, sessionId: session, range: { start: 0, end: 8 }, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: tokens } }, output: out, start: true })
  const audit = await log.audit(origin, session, digest)
  return { commitment: audit.commitment, signature: audit.signature, inputs: audit.inputs, output: rowFromBytes(audit.output), checker: 'checker', checkerOutput: await recomputeLastRow(honestShard, audit.inputs) }
}

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
  const reported = (await getContractEvents(devnet.walletClient(stranger), { address: devnet.contracts.rewardPool, abi: rewardPoolAbi, eventName: 'ContributionReported', fromBlock: 0n })).map((l) => l.args.agent)
  assert.deepEqual(reported, [alice.address])
  assert.equal(reporter.stats().unsampledAgents, 1, 'bob: no confirmed failure, but no sample either')
  assert.equal(reporter.stats().withheldAgents, 0)
  await devnet.mineToNextEpoch()
  await reporter.tick()
  assert.ok(reporter.stats().distributed.includes(e0 + 1))
  const pending = async (who: DevAccount) => getPendingReward(devnet.walletClient(stranger), { config: devnet.config, agent: who.address })
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
