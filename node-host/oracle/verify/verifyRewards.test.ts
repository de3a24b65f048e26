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
import { ExcludedPeerError, createOracleCore, type OracleCore } from '../createOracleCore.ts'
import { readModelInfo } from '../modelInfo.ts'
import type { OracleStore } from '../store/oracleStore.ts'
import { createRewardReporter, type RewardReporter } from '../rewards/rewardReporter.ts'
import { createShardReferee } from './shardReferee.ts'
import { createSqliteOracleStore } from '../store/sqliteOracleStore.ts'
import { verifyConsequences } from './verifyConsequences.ts'
import { createVerifyLedger, type VerifyLedger } from './verifyLedger.ts'

// On a real devnet and SQLite store: two hosts serve the same epoch; one is caught cheating (its
// evidence checked by the Oracle's own recomputation). The honest host's work is reported and
// paid; the cheater's is not; a second confirmed failure takes its node out of the assignment.

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
let alice: DevAccount, mallory: DevAccount, stranger: DevAccount
const keys = new Map<string, PrivateKey>()
const lower = (a: DevAccount) => a.address.toLowerCase()

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'verify-rewards-'))
  fixture = await loadFixture('docs-llama-7m')
  honestShard = (await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [{ start: 0, end: 8 }] })).shards[0]!
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  ;[alice, mallory, stranger] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount]
  for (const who of [alice, mallory]) {
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
  reporter = createRewardReporter({ store, chain, account: privateKeyToAccount(devnet.accounts.oracle.privateKey), fundWeiPerEpoch: FUND, logger: silentLogger, pollMs: 3_600_000, withheld: consequences.withheld })
  await reporter.start()
  ledger = await createVerifyLedger({ store, referee: createShardReferee(new Map([[MODEL, fileModelSource(fixture.dir)]])), epoch: () => reporter.epoch(), logger: silentLogger, onBan: consequences.ban })
  const clock = { t: Date.now() }
  core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, epoch: () => reporter.epoch(), sweepIntervalMs: 3_600_000, replicas: 2, now: () => clock.t, excludedPeer: ledger.banned })
  for (const [i, who] of [alice, mallory].entries()) {
    await core.join({ id: lower(who), kind: 'plumise', model: MODEL, grpcEndpoint: `http://10.0.0.${i + 1}:50051`, httpEndpoint: '', ramMb: 16_384, vramMb: 0, device: 'cpu', peerId: peerIdFromPrivateKey(keys.get(lower(who))!).toString() })
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

/** What an origin's spot check of `who`'s step sends the Oracle: its signed commitment, audit and a checker's row. */
async function evidenceOf(who: DevAccount, shard: ShardSession, session: string): Promise<Evidence> {
  const key = keys.get(lower(who))!
  const log = createStepLog({ signer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (d) => key.sign(d) }, model: MODEL, hiddenSize: 256 })
  const tokens = fixture.prompts[0]!.input_ids
  const out = await shard.forward(session, { tokens }, { reset: true })
  shard.drop(session)
  const { commitment: digest } = log.record({ origin: 'origin', sessionId: session, range: { start: 0, end: 8 }, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: tokens } }, output: out, start: true })
  const audit = await log.audit('origin', session, digest)
  return { commitment: audit.commitment, signature: audit.signature, inputs: audit.inputs, output: rowFromBytes(audit.output), checker: 'checker', checkerOutput: await recomputeLastRow(honestShard, audit.inputs) }
}

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
  const reported = (await getContractEvents(devnet.walletClient(stranger), { address: devnet.contracts.rewardPool, abi: rewardPoolAbi, eventName: 'ContributionReported', fromBlock: 0n })).map((l) => l.args.agent)
  assert.deepEqual(reported, [alice.address])
  assert.equal(reporter.stats().withheldAgents, 1)
  await devnet.mineToNextEpoch()
  await reporter.tick()
  assert.ok(reporter.stats().distributed.includes(e0 + 1))
  const pending = async (who: DevAccount) => getPendingReward(devnet.walletClient(stranger), { config: devnet.config, agent: who.address })
  assert.equal(await pending(alice), FUND, 'the honest host gets the whole epoch')
  assert.equal(await pending(mallory), 0n)

  // a second confirmed failure: banned, its node leaves the assignment and cannot rejoin; the status says why
  const malloryPeer = peerIdFromPrivateKey(keys.get(lower(mallory))!).toString()
  assert.ok(core.rangeOf(lower(mallory)))
  assert.equal((await ledger.report(evidenceToJson(await evidenceOf(mallory, noisyShard(honestShard, 0.1, 9), 's3')))).verdict, 'confirmed')
  assert.equal(core.node(lower(mallory)), undefined)
  await assert.rejects(core.join({ id: lower(mallory), kind: 'plumise', model: MODEL, grpcEndpoint: '', httpEndpoint: '', ramMb: 16_384, vramMb: 0, device: 'cpu', peerId: malloryPeer }), ExcludedPeerError)
  const status = ledger.status(malloryPeer)
  assert.equal(status.banned, true)
  assert.equal(status.confirmedFailures, 2)
  assert.ok(core.rangeOf(lower(alice)))
})
