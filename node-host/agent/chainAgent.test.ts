import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createWalletClient, http } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { getBalance, getBlock, getContractEvents, getTransactionCount, getTransactionReceipt } from 'viem/actions'
import { agentRegistryAbi } from '../../shared/chain/abis.ts'
import { getAgent } from '../../shared/chain/getAgent.ts'
import { getPendingReward } from '../../shared/chain/getPendingReward.ts'
import { isAgentAccount } from '../../shared/chain/isAgentAccount.ts'
import { isProofVerified } from '../../shared/chain/isProofVerified.ts'
import { createInferenceProof } from '../../shared/chain/proofHash.ts'
import { verifyAgentBinding } from '../../shared/chain/registerAgent.ts'
import { silentLogger } from '../../shared/logger.ts'
import type { NodeChain } from '../chain/chainConfigFromEnv.ts'
import { startDevnet, type DevAccount, type Devnet } from '../chain/startDevnet.ts'
import type { HostCounters } from '../host/createNodeHost.ts'
import { freePort } from '../net/freePort.ts'
import { createOracle, type Oracle } from '../oracle/createOracle.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { createOrbanAgent, type OrbanAgent } from '../../shared/orban/createOrbanAgent.ts'
import { createChainAgent, type ChainAgentInit } from './chainAgent.ts'

// A host's chain agent against a real devnet and a real Oracle (HTTP API, SQLite, reward reporter):
// registration bound to the peer, proofs of its generations on chain and in its metrics reports,
// its reward claimed; an unreachable chain or Oracle is logged and retried, never thrown.

const MODEL = 'docs-llama-7m'
let devnet: Devnet
let chain: NodeChain
let oracle: Oracle
let alice: DevAccount, bob: DevAccount, carol: DevAccount
const HOUR = 3_600_000

before(async () => {
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  chain = { config: devnet.config, rpcUrl: devnet.rpcUrl, chain: devnet.chain, devnet: devnet.file }
  ;[alice, bob, carol] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount]
  oracle = await createOracle({
    db: ':memory:',
    models: [await readModelInfo(undefined)],
    port: 0,
    logger: silentLogger,
    chain: { chain, account: privateKeyToAccount(devnet.accounts.oracle.privateKey), fundWeiPerEpoch: 10n ** 18n, pollMs: HOUR },
  })
})
const hosts: OrbanAgent[] = []
after(async () => {
  for (const h of hosts) await h.stop()
  await oracle?.close()
  await devnet?.close()
})

async function agentOf(who: DevAccount, extra: Partial<ChainAgentInit> & { counters?: HostCounters } = {}) {
  const key: PrivateKey = await generateKeyPair('Ed25519')
  const counters = extra.counters ?? { tokensProcessed: 0, requestCount: 0, totalLatencyMs: 0 }
  const agent = createChainAgent({
    chain,
    account: privateKeyToAccount(who.privateKey),
    peer: { peerId: peerIdFromPrivateKey(key).toString(), privateKey: key },
    oracleUrl: oracle.url,
    model: MODEL,
    reportIntervalMs: HOUR,
    heartbeatIntervalMs: HOUR,
    claimThresholdWei: 1n,
    stats: () => counters,
    logger: silentLogger,
    ...extra,
  })
  return { agent, key, counters }
}

async function waitFor<T>(what: string, fn: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const v = fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The host's own link to the Oracle, as runOracleAgent keeps it: an Orban agent with the peer's key, serving the range it is given. */
async function connectHost(key: PrivateKey): Promise<OrbanAgent> {
  const host = await createOrbanAgent({
    url: oracle.url,
    key: key.raw,
    heartbeatIntervalMs: 200,
    registration: {
      hardware: { gpus: [], cpu: { model: 'test', cores: 2, threads: 2 }, memory_gb: 8, storage_available_gb: 10 },
      capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 1, fp16_support: false, int8_support: false },
      location: { country: '', region: '', latency_to_platform_ms: 0 },
      availability: { hours_per_day: 24, reliability_score: 1 },
      mesh: { peer_id: peerIdFromPrivateKey(key).toString(), multiaddrs: [], model: MODEL, device: 'cpu', memory_mb: 4096, benchmark_tok_per_sec: 100 },
    },
    onTask: (_task, controller) => {
      setTimeout(() => controller.progress({ progress: 1, stage: 'serving' }), 10)
      return { accept: true }
    },
  })
  hosts.push(host)
  await waitFor('the host serving at the oracle', () => (oracle.core.node(host.agentId)?.ready ? true : undefined))
  return host
}

test('registers bound to its peer, proves its generations, reports them with their transactions, claims its reward', async () => {
  const reader = devnet.walletClient(carol)
  const { agent, key, counters } = await agentOf(alice)
  // the Oracle books a wallet's report only for a node it knows: here the node host of the peer the wallet is bound to
  await connectHost(key)
  await agent.start()
  const record = (await getAgent(reader, { config: devnet.config, agent: alice.address }))!
  assert.equal((await verifyAgentBinding({ chainId: devnet.chainId, agent: record })).peerId, peerIdFromPrivateKey(key).toString())
  assert.equal(await isAgentAccount(reader, { config: devnet.config, agent: alice.address }), true)

  // generation goes on at once; the chain gets the proofs in the background
  const g1 = { model: MODEL, prompt: 'The capital of France is', text: ' Paris, a city of light.', tokenCount: 7 }
  const g2 = { model: MODEL, prompt: 'Once upon a time', text: ' there was a shard.', tokenCount: 5 }
  agent.recordGeneration(g1)
  agent.recordGeneration(g1) // the same prompt, model and text: the chain would refuse it as a duplicate, so it is skipped without a call
  agent.recordGeneration(g2)
  Object.assign(counters, { tokensProcessed: 40, requestCount: 2, totalLatencyMs: 90 })
  await agent.round()
  assert.deepEqual([agent.stats().proofsSubmitted, agent.stats().proofsSkipped, agent.stats().proofsDropped, agent.stats().proofsUnreported, agent.stats().reports], [2, 1, 0, 0, 1])

  // the oracle has the metrics and both proofs, each with the transaction that carried it: the chain vouches for them
  const wallet = alice.address.toLowerCase()
  assert.deepEqual(await oracle.store.agentCounters(wallet).then((c) => [c?.tokens, c?.requests]), [40, 2])
  const rows = await oracle.store.epochProofs(oracle.rewards!.epoch())
  assert.deepEqual(rows.map((r) => r.proofHash), [g1, g2].map((g) => createInferenceProof({ model: g.model, prompt: g.prompt, output: g.text, agentAddress: alice.address, tokenCount: g.tokenCount }).proofHash))
  for (const r of rows) {
    const proof = createInferenceProof({ model: MODEL, prompt: r.inputHash === rows[0]!.inputHash ? g1.prompt : g2.prompt, output: r.outputHash === rows[0]!.outputHash ? g1.text : g2.text, agentAddress: alice.address, tokenCount: r.tokenCount })
    assert.ok(r.txHash)
    assert.equal(await isProofVerified(reader, { config: devnet.config, proof, txHash: r.txHash as `0x${string}` }), true)
  }

  const heartbeats = () => getContractEvents(reader, { address: devnet.contracts.agentRegistry, abi: agentRegistryAbi, eventName: 'Heartbeat', args: { agent: alice.address }, fromBlock: 0n })
  const seen = (await heartbeats()).length
  await agent.heartbeat()
  assert.equal(agent.stats().heartbeats, 1)
  assert.equal((await heartbeats()).length, seen + 1)

  // the oracle reports and distributes the epoch; the agent's next round claims all of it, paying only the claim's gas
  await devnet.mineToNextEpoch()
  await oracle.rewards!.tick()
  await oracle.rewards!.tick()
  await devnet.mineToNextEpoch()
  await oracle.rewards!.tick()
  const pending = await getPendingReward(reader, { config: devnet.config, agent: alice.address })
  assert.equal(pending, 10n ** 18n, 'the only agent of the epoch gets all of it')
  const before = await getBalance(reader, { address: alice.address })
  await agent.round()
  assert.equal(agent.stats().claimedWei, pending)
  const claimTx = (await getBlock(reader, { blockTag: 'latest', includeTransactions: true })).transactions.find((t) => t.from.toLowerCase() === wallet)!
  const receipt = await getTransactionReceipt(reader, { hash: claimTx.hash })
  assert.equal(await getBalance(reader, { address: alice.address }), before + pending - receipt.gasUsed * receipt.effectiveGasPrice)

  // stop sends a final report with the latest counters
  Object.assign(counters, { tokensProcessed: 55, requestCount: 3, totalLatencyMs: 120 })
  await agent.stop()
  assert.deepEqual(await oracle.store.agentCounters(wallet).then((c) => [c?.tokens, c?.requests]), [55, 3])
})

test('an unreachable Oracle keeps the proofs for the next report; an unreachable chain is logged, never thrown', async () => {
  const closed = `http://127.0.0.1:${await freePort()}`
  const { agent } = await agentOf(bob, { oracleUrl: closed })
  await agent.start()
  agent.recordGeneration({ model: MODEL, prompt: 'Hello', text: ', world!', tokenCount: 3 })
  await agent.round()
  assert.equal(agent.stats().proofsSubmitted, 1)
  assert.equal(agent.stats().proofsUnreported, 1, 'the proof waits for a report the Oracle accepts')
  assert.match(agent.stats().lastError ?? '', /metrics report/)
  await agent.stop()

  const key = await generateKeyPair('Ed25519')
  const account = privateKeyToAccount(carol.privateKey)
  const offline = createChainAgent({
    chain: { ...chain, rpcUrl: closed },
    account,
    peer: { peerId: peerIdFromPrivateKey(key).toString(), privateKey: key },
    model: MODEL,
    reportIntervalMs: HOUR,
    heartbeatIntervalMs: HOUR,
    stats: () => ({ tokensProcessed: 1, requestCount: 1, totalLatencyMs: 1 }),
    logger: silentLogger,
    client: createWalletClient({ chain: devnet.chain, transport: http(closed, { retryCount: 0 }), account }),
  })
  await offline.start()
  offline.recordGeneration({ model: MODEL, prompt: 'a', text: 'b', tokenCount: 1 })
  await offline.round()
  await offline.heartbeat()
  const s = offline.stats()
  assert.equal(s.registered, false)
  assert.equal(s.proofsQueued, 1, 'kept for when the chain answers')
  assert.match(s.lastError ?? '', /heartbeat/)
  await offline.stop()
})

test("repeated greedy generations: one proof on chain, repeats skipped without a chain call; a restarted agent's repeat is refused once, then skipped; proof sends are rate-bounded", async () => {
  const reader = devnet.walletClient(carol)
  const { agent, key } = await agentOf(carol, { maxProofsPerMinute: 2 })
  await agent.start()
  const sent = () => getTransactionCount(reader, { address: carol.address, blockTag: 'latest' })
  const before = await sent()
  const g = { model: MODEL, prompt: 'Repeat after me', text: ' the same words.', tokenCount: 4 }
  for (let i = 0; i < 5; i++) agent.recordGeneration(g)
  await waitFor('the proof on chain', () => (agent.stats().proofsSubmitted === 1 ? true : undefined))
  assert.equal(agent.stats().proofsSkipped, 4)
  assert.equal(agent.stats().proofsDropped, 0, 'nothing refused by the chain')
  assert.equal(await sent(), before + 1, 'one transaction for five identical generations')
  const proof = createInferenceProof({ model: g.model, prompt: g.prompt, output: g.text, agentAddress: carol.address, tokenCount: g.tokenCount })
  assert.equal(await isProofVerified(reader, { config: devnet.config, proof }), true)
  // Two a minute: one token is left, so one of three new proofs goes now and two wait in the queue.
  for (const i of [1, 2, 3]) agent.recordGeneration({ ...g, text: ` words ${i}.` })
  await waitFor('the second proof', () => (agent.stats().proofsSubmitted === 2 ? true : undefined))
  await new Promise((r) => setTimeout(r, 500))
  assert.equal(agent.stats().proofsSubmitted, 2)
  assert.equal(agent.stats().proofsQueued, 2)
  assert.equal(await sent(), before + 2)
  await agent.stop()
  // A restart forgets what it proved: the chain refuses the repeat once (a dropped proof), later repeats are skipped.
  const { agent: again } = await agentOf(carol, { peer: { peerId: peerIdFromPrivateKey(key).toString(), privateKey: key } })
  await again.start()
  again.recordGeneration(g)
  await waitFor('the chain refuses the duplicate', () => (again.stats().proofsDropped === 1 ? true : undefined))
  again.recordGeneration(g)
  assert.equal(again.stats().proofsSkipped, 1)
  assert.equal(again.stats().proofsQueued, 0)
  await again.stop()
})
