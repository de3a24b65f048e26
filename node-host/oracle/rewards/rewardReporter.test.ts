import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createPublicClient, createWalletClient, custom, http, parseEther, type Address, type Hash } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { getContractEvents, readContract } from 'viem/actions'
import { rewardPoolAbi } from '../../../shared/chain/abis.ts'
import { ChainActionError } from '../../../shared/chain/errors.ts'
import { getPendingReward } from '../../../shared/chain/getPendingReward.ts'
import { createInferenceProof, type InferenceProof } from '../../../shared/chain/proofHash.ts'
import { registerAgent } from '../../../shared/chain/registerAgent.ts'
import { computeEpochRewards, contributionFromMetrics } from '../../../shared/chain/rewardFormula.ts'
import { submitProof } from '../../../shared/chain/submitProof.ts'
import { silentLogger } from '../../../shared/logger.ts'
import { startDevnet, type DevAccount, type Devnet } from '../../chain/startDevnet.ts'
import type { NodeChain } from '../../chain/chainConfigFromEnv.ts'
import { createOracleCore, type OracleCore } from '../createOracleCore.ts'
import { readModelInfo } from '../modelInfo.ts'
import type { OracleStore } from '../store/oracleStore.ts'
import { createRewardReporter, type RewardReporter } from './rewardReporter.ts'
import { createSqliteOracleStore } from '../store/sqliteOracleStore.ts'
import { freePort } from '../../net/freePort.ts'

// The oracle's reward reporter against a real devnet and a real SQLite store: metrics booked to the
// chain's epoch, proofs checked on chain, one report per agent per epoch even across a crash in the
// middle of one, and the pool's split matching the formula to the wei.

const MODEL = 'docs-llama-7m'
const FUND = parseEther('1') + 777n
let dir: string
let devnet: Devnet
let chain: NodeChain
let store: OracleStore
let core: OracleCore
let alice: DevAccount, bob: DevAccount, mallory: DevAccount, stranger: DevAccount
let proofs: Array<{ proof: InferenceProof; hash: Hash }>
let registrationTx: Hash
/** The reporter the core books metrics by (replaced on each simulated restart). */
let current: RewardReporter

const oracleAccount = () => privateKeyToAccount(devnet.accounts.oracle.privateKey)
const reporter = (client?: ReturnType<typeof createWalletClient>) =>
  createRewardReporter({ store, chain, account: oracleAccount(), fundWeiPerEpoch: FUND, logger: silentLogger, pollMs: 3_600_000, client })
const lower = (a: DevAccount) => a.address.toLowerCase()
const wire = (p: InferenceProof, txHash?: Hash) => ({ modelHash: p.modelHash, inputHash: p.inputHash, outputHash: p.outputHash, tokenCount: p.tokenCount, txHash })
const reports = async () =>
  (await getContractEvents(devnet.walletClient(stranger), { address: devnet.contracts.rewardPool, abi: rewardPoolAbi, eventName: 'ContributionReported', fromBlock: 0n })).map((l) => l.args as Required<typeof l.args>)

/** A wallet client whose connection drops at the `failAt`-th transaction sent. */
function failingClient(failAt: number) {
  const rpc = createPublicClient({ transport: http(devnet.rpcUrl) })
  let sent = 0
  const transport = custom({
    async request({ method, params }: { method: string; params?: unknown }) {
      if (method === 'eth_sendRawTransaction' && ++sent >= failAt) throw new Error('connection lost')
      return rpc.request({ method, params } as never)
    },
  })
  return createWalletClient({ chain: devnet.chain, transport, account: oracleAccount(), pollingInterval: 100 })
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reward-reporter-'))
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  chain = { config: devnet.config, rpcUrl: devnet.rpcUrl, chain: devnet.chain, devnet: devnet.file }
  ;[alice, bob, mallory, stranger] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount, DevAccount]
  for (const who of [alice, bob, mallory]) {
    const key = await generateKeyPair('Ed25519')
    const r = await registerAgent(devnet.walletClient(who), {
      config: devnet.config,
      peer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (m) => key.sign(m) },
      precompile: { name: 'shardmesh', modelHash: createInferenceProof({ model: MODEL, prompt: '', output: '', agentAddress: who.address, tokenCount: 0 }).modelHash },
    })
    registrationTx = r.hash!
  }
  proofs = []
  for (const [prompt, output, tokens] of [['The capital of France is', ' Paris.', 3], ['Once upon a time', ' there was a shard', 5]] as const) {
    const proof = createInferenceProof({ model: MODEL, prompt, output, agentAddress: alice.address, tokenCount: tokens })
    proofs.push({ proof, hash: (await submitProof(devnet.walletClient(alice), { config: devnet.config, proof })).hash })
  }
  store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
  current = reporter()
  await current.start()
  // The four wallets are nodes of the Oracle, each holding the whole model, seen serving for 200 s
  // before they report: what they claim below is within what the Oracle observed, so booked whole.
  const clock = { t: Date.now() }
  core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, epoch: () => current.epoch(), sweepIntervalMs: 3_600_000, replicas: 4, now: () => clock.t })
  for (const [i, who] of [alice, bob, mallory, stranger].entries()) {
    await core.join({ id: lower(who), kind: 'plumise', model: MODEL, grpcEndpoint: `http://10.0.0.${i + 1}:50051`, httpEndpoint: `http://10.0.0.${i + 1}:31331`, ramMb: 16_384, vramMb: 0, device: 'cpu' })
  }
  for (const who of [alice, bob, mallory, stranger]) await core.ready(lower(who))
  clock.t += 200_000
  for (const who of [alice, bob, mallory, stranger]) assert.ok(core.rangeOf(lower(who)), 'every node holds layers (serving once ready)')
})
after(async () => {
  await current?.stop()
  await core?.close()
  await store?.close()
  await devnet?.close()
  await rm(dir, { recursive: true, force: true })
})

test('an epoch is reported once from the booked metrics, with only the proofs the chain vouches for, and paid by the formula', async () => {
  const e0 = current.epoch()
  assert.equal(BigInt(e0), await readContract(devnet.walletClient(stranger), { address: devnet.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'getCurrentEpoch' }))
  await current.tick()
  const [p1, p2] = proofs as [(typeof proofs)[0], (typeof proofs)[0]]

  await core.recordMetrics({ agent: lower(alice), tokensProcessed: 120, requestCount: 3, avgLatencyMs: 40, uptimeSeconds: 50, proofs: [wire(p1.proof, p1.hash)] })
  // p1 again (a report whose answer was lost): it counts once
  await core.recordMetrics({ agent: lower(alice), tokensProcessed: 200, requestCount: 4, avgLatencyMs: 45, uptimeSeconds: 80, proofs: [wire(p1.proof, p1.hash), wire(p2.proof, p2.hash)] })
  await core.recordMetrics({ agent: lower(bob), tokensProcessed: 60, requestCount: 2, avgLatencyMs: 300, uptimeSeconds: 70 })
  // mallory: a proof never submitted, alice's proof and transaction under her name, a transaction that is no proof
  const never = createInferenceProof({ model: MODEL, prompt: 'never', output: 'sent', agentAddress: mallory.address, tokenCount: 9 })
  await core.recordMetrics({
    agent: lower(mallory),
    tokensProcessed: 10,
    requestCount: 1,
    avgLatencyMs: 100,
    uptimeSeconds: 20,
    proofs: [wire(never), wire(p2.proof, p2.hash), wire(never, registrationTx)],
  })
  // a node whose wallet the registry does not know is left out of the report
  await core.recordMetrics({ agent: lower(stranger), tokensProcessed: 999, requestCount: 9, avgLatencyMs: 10, uptimeSeconds: 99 })
  assert.equal((await store.epochTotals(e0)).length, 4)

  await devnet.mineToNextEpoch()
  await current.tick()
  assert.equal(current.epoch(), e0 + 1)
  assert.equal((await reports()).length, 0, 'the epoch that just closed waits one round (a booking to it may still be in flight)')

  // the connection drops after the funding and the first agent's report: a restart finishes the epoch without repeating either
  await current.stop()
  current = reporter(failingClient(3))
  await current.start()
  await assert.rejects(current.tick(), (e: Error) => e instanceof ChainActionError && e.action === 'reportContribution' && e.reason === undefined)
  assert.equal((await reports()).length, 1)
  await current.stop()
  current = reporter()
  await current.start()
  await current.tick()

  const reported = await reports()
  const chainEpoch = BigInt(e0 + 1)
  assert.deepEqual(reported.map((r) => r.agent).sort(), [alice.address, bob.address, mallory.address].sort())
  assert.ok(reported.every((r) => r.epoch === chainEpoch))
  const funded = await getContractEvents(devnet.walletClient(stranger), { address: devnet.contracts.rewardPool, abi: rewardPoolAbi, eventName: 'RewardReceived', fromBlock: 0n })
  assert.deepEqual(funded.map((l) => [l.args.amount, l.args.epoch]), [[FUND, chainEpoch]])

  const byAgent = new Map(reported.map((r) => [r.agent, r]))
  const expectAlice = contributionFromMetrics({ tokensProcessed: 200, avgLatencyMs: (40 * 3 + 45 * 1) / 4, uptimeSeconds: 80, requestCount: 2 })
  const a = byAgent.get(alice.address)!
  assert.deepEqual([a.processedTokens, a.taskCount, a.uptimeSeconds, a.avgLatencyInv], [expectAlice.processedTokens, 2n, 80n, expectAlice.avgLatencyInv])
  assert.equal(byAgent.get(bob.address)!.taskCount, 0n)
  assert.equal(byAgent.get(mallory.address)!.taskCount, 0n, "mallory's proofs are not counted")
  assert.equal(byAgent.get(mallory.address)!.processedTokens, 10n)

  const verdicts = (await store.epochProofs(e0)).map((r) => [r.agent, r.proofHash, r.verdict])
  assert.deepEqual(verdicts, [
    [lower(alice), p1.proof.proofHash, 'verified'],
    [lower(alice), p1.proof.proofHash, 'duplicate'],
    [lower(alice), p2.proof.proofHash, 'verified'],
    [lower(mallory), never.proofHash, 'refused'],
    [lower(mallory), createInferenceProof({ model: MODEL, prompt: 'Once upon a time', output: ' there was a shard', agentAddress: mallory.address, tokenCount: 5 }).proofHash, 'refused'],
    [lower(mallory), never.proofHash, 'refused'],
  ])

  // once the epoch it was paid in has ended, it is distributed; each share is the formula's
  await devnet.mineToNextEpoch()
  await current.tick()
  assert.deepEqual(current.stats().distributed, [e0 + 1])
  const predicted = computeEpochRewards({ totalReward: FUND, reports: reported })
  for (const who of [alice, bob, mallory]) {
    assert.equal(await getPendingReward(devnet.walletClient(stranger), { config: devnet.config, agent: who.address }), predicted.get(who.address as Address))
  }

  // another restart later: nothing is reported or distributed twice; the next epoch's uptime is what was added in it
  await core.recordMetrics({ agent: lower(alice), tokensProcessed: 230, requestCount: 5, avgLatencyMs: 45, uptimeSeconds: 130 })
  await current.stop()
  current = reporter()
  await current.start()
  await current.tick()
  await devnet.mineToNextEpoch()
  await current.tick()
  await current.tick()
  const later = (await reports()).slice(reported.length)
  assert.deepEqual(later.map((r) => [r.agent, r.processedTokens, r.uptimeSeconds]), [[alice.address, 30n, 50n]])
  assert.deepEqual(current.stats().distributed, [])
})

test('a fresh devnet behind the same addresses gets its own progress; an unreachable chain at start books to the last epoch read', async () => {
  const old = current.stats().nextEpoch
  const fresh = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  try {
    assert.equal(fresh.contracts.rewardPool, devnet.contracts.rewardPool, 'deployments are deterministic')
    const r = createRewardReporter({ store, chain: { config: fresh.config, rpcUrl: fresh.rpcUrl, chain: fresh.chain, devnet: fresh.file }, account: oracleAccount(), logger: silentLogger, pollMs: 3_600_000 })
    await r.start()
    await r.stop()
    const epoch = Number(await readContract(fresh.walletClient(stranger), { address: fresh.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'getCurrentEpoch' }))
    assert.notEqual(epoch, old)
    assert.equal(r.stats().nextEpoch, epoch)

    await fresh.mine(25)
    await r.start()
    await r.stop()
    const later = r.epoch()
    assert.ok(later > epoch)
    const closed = `http://127.0.0.1:${await freePort()}`
    const offline = createRewardReporter({
      store,
      chain: { config: fresh.config, rpcUrl: closed, chain: fresh.chain, devnet: fresh.file },
      account: oracleAccount(),
      logger: silentLogger,
      client: createWalletClient({ chain: fresh.chain, transport: http(closed, { retryCount: 0 }), account: oracleAccount() }),
    })
    await offline.start()
    await offline.stop()
    assert.equal(offline.epoch(), later)
    assert.match(offline.stats().lastError ?? '', /fetch failed|HTTP request failed/)
  } finally {
    await fresh.close()
  }
})

test('a proof whose transaction is older than maxProofAgeMs is not counted (the store forgets old proofs, so it could not tell a replay)', async () => {
  await current.stop()
  // this reporter's clock is 8 days ahead: every transaction on the devnet looks 8 days old
  current = createRewardReporter({ store, chain, account: oracleAccount(), logger: silentLogger, pollMs: 3_600_000, now: () => Date.now() + 8 * 86_400_000 })
  await current.start()
  await current.tick()
  const epoch = current.epoch()
  const proof = createInferenceProof({ model: MODEL, prompt: 'an old one', output: ' replayed', agentAddress: alice.address, tokenCount: 4 })
  const { hash } = await submitProof(devnet.walletClient(alice), { config: devnet.config, proof })
  await core.recordMetrics({ agent: lower(alice), tokensProcessed: 240, requestCount: 6, avgLatencyMs: 45, uptimeSeconds: 140, proofs: [wire(proof, hash)] })
  await devnet.mineToNextEpoch()
  await current.tick()
  await current.tick()
  assert.deepEqual((await store.epochProofs(epoch)).map((r) => [r.proofHash, r.verdict]), [[proof.proofHash, 'refused']])
  assert.equal(current.stats().proofs.refused, 1)
})
