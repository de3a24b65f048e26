import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createWalletClient, encodeFunctionData, http, keccak256, stringToHex, type Address } from 'viem'
import { agentRegistryAbi } from '../../shared/chain/abis.ts'
import { AgentBindingError } from '../../shared/chain/agentBinding.ts'
import { transact } from '../../shared/chain/transact.ts'
import { getBalance, getTransaction } from 'viem/actions'
import { claimIfAbove, claimReward } from '../../shared/chain/claimReward.ts'
import { distributeRewards } from '../../shared/chain/distributeRewards.ts'
import { ChainActionError } from '../../shared/chain/errors.ts'
import { getAgent } from '../../shared/chain/getAgent.ts'
import { getPendingReward } from '../../shared/chain/getPendingReward.ts'
import { isAgentAccount } from '../../shared/chain/isAgentAccount.ts'
import { isProofVerified } from '../../shared/chain/isProofVerified.ts'
import { predictEpochRewards } from '../../shared/chain/predictEpochRewards.ts'
import { createInferenceProof, modelHashOf } from '../../shared/chain/proofHash.ts'
import { ed25519Signer, registerAgent, verifyAgentBinding } from '../../shared/chain/registerAgent.ts'
import { reportContributions } from '../../shared/chain/reportContributions.ts'
import { computeEpochRewards, contributionFromMetrics } from '../../shared/chain/rewardFormula.ts'
import { sendHeartbeat } from '../../shared/chain/sendHeartbeat.ts'
import { submitProof } from '../../shared/chain/submitProof.ts'
import { startDevnet, type DevAccount, type Devnet } from './startDevnet.ts'

// The chain side of the product end to end on a devnet: two hosts bind their libp2p identities to
// their wallets, prove generations, the oracle reports an epoch from their metrics, the pool splits
// it, and each host's balance rises by exactly its predicted share.

const MODEL = 'docs-llama-7m'
let devnet: Devnet
let alice: DevAccount, bob: DevAccount, stranger: DevAccount
let aliceKey: PrivateKey, bobKey: PrivateKey

before(async () => {
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 30 })
  ;[alice, bob, stranger] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount]
  aliceKey = await generateKeyPair('Ed25519')
  bobKey = await generateKeyPair('Ed25519')
})
after(() => devnet.close())

// bob's wallet is a JSON-RPC account (anvil signs, like a browser wallet behind wagmi's connector
// client); the others sign locally
const client = (a: DevAccount) =>
  a === bob ? createWalletClient({ chain: devnet.chain, transport: http(devnet.rpcUrl), account: bob.address, pollingInterval: 100 }) : devnet.walletClient(a)
const balance = (address: Address) => getBalance(client(stranger), { address })
const peerOf = (key: PrivateKey) => ({ peerId: peerIdFromPrivateKey(key).toString(), sign: (m: Uint8Array) => key.sign(m) })

async function rejectsWith(p: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof ChainActionError && e.reason === reason)
}

test('hosts register with their peer binding, prove generations, get paid their exact share', async () => {
  const { config } = devnet
  const precompile = { name: 'shardmesh-host', modelHash: modelHashOf(MODEL) }

  // registration: the libp2p key signs (chain, wallet); the seed signer works the same
  const a = await registerAgent(client(alice), { config, peer: peerOf(aliceKey), metadata: { model: MODEL }, precompile })
  const b = await registerAgent(client(bob), { config, peer: { peerId: peerIdFromPrivateKey(bobKey).toString(), sign: ed25519Signer(bobKey.raw.slice(0, 32)) }, precompile })
  assert.ok(a.hash && a.precompileHash && b.hash && b.precompileHash)
  for (const [who, key] of [[alice, aliceKey], [bob, bobKey]] as const) {
    const record = (await getAgent(client(stranger), { config, agent: who.address }))!
    const binding = await verifyAgentBinding({ chainId: devnet.chainId, agent: record })
    assert.equal(binding.peerId, peerIdFromPrivateKey(key).toString())
    assert.equal(await isAgentAccount(client(stranger), { config, agent: who.address }), true)
  }
  assert.equal((await verifyAgentBinding({ chainId: devnet.chainId, agent: (await getAgent(client(stranger), { config, agent: alice.address }))! })).metadata.model, MODEL)
  // idempotent
  const again = await registerAgent(client(alice), { config, peer: peerOf(aliceKey), precompile })
  assert.equal(again.hash, undefined)
  assert.equal(again.precompileHash, undefined)
  // a stranger cannot bind alice's peer: a signer that is not the peer's key is refused before sending;
  // alice's node id with her metadata copied verbatim is taken by the chain (it cannot check Ed25519),
  // but the binding does not verify for the stranger's wallet, so the Oracle credits it nothing
  const strangerKey = await generateKeyPair('Ed25519')
  await assert.rejects(registerAgent(client(stranger), { config, peer: { peerId: peerOf(aliceKey).peerId, sign: (m) => strangerKey.sign(m) }, precompile: false }), AgentBindingError)
  const aliceRecord = (await getAgent(client(stranger), { config, agent: alice.address }))!
  await transact(client(stranger), 'registerAgent', { config, to: config.contracts.agentRegistry, data: encodeFunctionData({ abi: agentRegistryAbi, functionName: 'registerAgent', args: [aliceRecord.nodeId, aliceRecord.metadata] }) })
  const squat = (await getAgent(client(stranger), { config, agent: stranger.address }))!
  assert.equal(squat.nodeId, aliceRecord.nodeId)
  await assert.rejects(verifyAgentBinding({ chainId: devnet.chainId, agent: squat }), (e: unknown) => e instanceof AgentBindingError && /peerSig is not/.test(e.message))
  assert.equal((await verifyAgentBinding({ chainId: devnet.chainId, agent: (await getAgent(client(stranger), { config, agent: alice.address }))! })).peerId, peerOf(aliceKey).peerId)
  await assert.rejects(registerAgent(client(alice), { config, peer: peerOf(bobKey) }), /already registered under nodeId/)

  // heartbeats through the registry and through the precompile, and the oracle's on the agent's behalf
  await sendHeartbeat(client(alice), { config })
  const legacy = await sendHeartbeat(client(alice), { config: { ...config, legacyTransactions: true } }) // Plumise's transaction type
  assert.equal((await getTransaction(client(stranger), { hash: legacy.hash })).type, 'legacy')
  await sendHeartbeat(client(bob), { config, via: 'precompile' })
  await sendHeartbeat(client(devnet.accounts.oracle), { config, via: 'precompile', agent: alice.address })
  await rejectsWith(sendHeartbeat(client(stranger), { config, via: 'precompile', agent: bob.address }), 'agentHeartbeat: sender is neither the agent nor the operator')

  // generations and their proofs
  const gens = [
    { who: alice, prompt: 'The capital of France is', output: ' Paris, a city of light.', tokens: 7 },
    { who: alice, prompt: 'Once upon a time', output: ' there was a shard.', tokens: 5 },
    { who: bob, prompt: 'Hello', output: ', world!', tokens: 3 },
  ]
  const submitted = []
  for (const g of gens) {
    const proof = createInferenceProof({ model: MODEL, prompt: g.prompt, output: g.output, agentAddress: g.who.address, tokenCount: g.tokens })
    const { hash } = await submitProof(client(g.who), { config, proof })
    submitted.push({ proof, hash })
  }
  for (const { proof, hash } of submitted) {
    assert.equal(await isProofVerified(client(stranger), { config, proof, txHash: hash }), true)
    assert.equal(await isProofVerified(client(stranger), { config, proof }), true)
  }
  const [first, , bobs] = submitted as [(typeof submitted)[0], (typeof submitted)[0], (typeof submitted)[0]]
  // what the chain does not vouch for is not verified
  const inflated = { ...first.proof, tokenCount: first.proof.tokenCount + 100 }
  assert.equal(await isProofVerified(client(stranger), { config, proof: inflated, txHash: first.hash }), false)
  assert.equal(await isProofVerified(client(stranger), { config, proof: inflated }), false)
  assert.equal(await isProofVerified(client(stranger), { config, proof: first.proof, txHash: bobs.hash }), false)
  const unsent = createInferenceProof({ model: MODEL, prompt: 'never', output: 'sent', agentAddress: alice.address, tokenCount: 1 })
  assert.equal(await isProofVerified(client(stranger), { config, proof: unsent }), false)
  assert.equal(await isProofVerified(client(stranger), { config, proof: unsent, txHash: keccak256(stringToHex('no such tx')) }), false)
  // forged proofs are rejected by the chain: another sender, an unregistered agent, a replay
  await rejectsWith(submitProof(client(bob), { config, proof: unsent }), 'verifyInference: sender is not the agent')
  const strangers = createInferenceProof({ model: MODEL, prompt: 'x', output: 'y', agentAddress: stranger.address, tokenCount: 1 })
  await rejectsWith(submitProof(client(stranger), { config, proof: strangers }), 'verifyInference: agent not registered')
  await rejectsWith(submitProof(client(alice), { config, proof: first.proof }), 'verifyInference: duplicate proof')

  // the oracle reports an epoch from the hosts' metrics, funding it on the devnet
  const epoch = await devnet.mineToNextEpoch()
  const contributions = [
    { agent: alice.address, ...contributionFromMetrics({ tokensProcessed: 12, avgLatencyMs: 180.5, uptimeSeconds: 600, requestCount: 2 }) },
    { agent: bob.address, ...contributionFromMetrics({ tokensProcessed: 3, avgLatencyMs: 950, uptimeSeconds: 540, requestCount: 1 }) },
  ]
  const fundWei = 10n ** 18n + 12_345n
  await rejectsWith(reportContributions(client(stranger), { config, contributions }), 'RewardPool: caller is not the oracle')
  const reported = await reportContributions(client(devnet.accounts.oracle), { config, contributions, fundWei })
  assert.equal(reported.epoch, epoch)
  assert.equal(reported.fundEpoch, epoch)
  assert.deepEqual(reported.reports.map((r) => r.epoch), [epoch, epoch])
  const predicted = computeEpochRewards({ totalReward: fundWei, reports: contributions })
  assert.deepEqual(await predictEpochRewards(client(stranger), { config, epoch }), predicted)

  // not distributable until the epoch has ended; then the oracle's next step distributes it
  const early = await reportContributions(client(devnet.accounts.oracle), { config, contributions: [], distributeEpochs: [epoch] })
  assert.deepEqual(early.pendingEpochs, [epoch])
  await devnet.mineToNextEpoch()
  const next = await reportContributions(client(devnet.accounts.oracle), { config, contributions: [], distributeEpochs: [epoch] })
  assert.deepEqual(next.distributed.map((d) => [d.epoch, d.totalReward, d.agentCount]), [[epoch, fundWei, 2n]])
  await rejectsWith(distributeRewards(client(stranger), { config, epoch }), 'RewardPool: epoch already distributed')

  const aliceShare = predicted.get(alice.address)!
  const bobShare = predicted.get(bob.address)!
  assert.equal(aliceShare + bobShare, fundWei)
  assert.equal(await getPendingReward(client(stranger), { config, agent: alice.address }), aliceShare)

  // alice claims herself once her pending reward reaches the threshold: her balance rises by her share less the gas
  assert.equal(await claimIfAbove(client(alice), { config, thresholdWei: aliceShare + 1n }), null)
  const before = await balance(alice.address)
  const claim = (await claimIfAbove(client(alice), { config, thresholdWei: aliceShare }))!
  assert.equal(claim.amount, aliceShare)
  assert.equal(await balance(alice.address), before + aliceShare - claim.receipt.gasUsed * claim.receipt.effectiveGasPrice)
  await rejectsWith(claimReward(client(alice), { config }), 'RewardPool: nothing to claim')

  // bob's claim is sponsored by the oracle's account: bob gets every wei, pays nothing
  const bobBefore = await balance(bob.address)
  const sponsored = await claimReward(client(devnet.accounts.oracle), { config, agent: bob.address })
  assert.equal(sponsored.amount, bobShare)
  assert.equal(await balance(bob.address), bobBefore + bobShare)
  assert.equal(await getPendingReward(client(stranger), { config, agent: bob.address }), 0n)
})
