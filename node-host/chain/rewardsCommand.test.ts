import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { formatEther } from 'viem'
import { getBalance, getTransactionReceipt } from 'viem/actions'
import { registerAgent } from '../../shared/chain/registerAgent.ts'
import { reportContributions } from '../../shared/chain/reportContributions.ts'
import { computeEpochRewards, contributionFromMetrics } from '../../shared/chain/rewardFormula.ts'
import { NothingToClaimError, parseRewardsArgs, runClaim, runRewards } from './rewardsCommand.ts'
import { UsageError } from '../cli/usageError.ts'
import { startDevnet, type DevAccount, type Devnet } from './startDevnet.ts'

// `shardmesh rewards` and `shardmesh claim` against a devnet whose pool has split one epoch between
// two hosts: the printed pending reward and history are the pool's, and a claim raises the wallet's
// balance by exactly the pending reward less the gas it paid.

let devnet: Devnet
let dir: string
let alice: DevAccount, bob: DevAccount

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shardmesh-rewards-'))
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 20, out: join(dir, 'devnet.json') })
  ;[alice, bob] = devnet.accounts.others as [DevAccount, DevAccount]
})
after(async () => {
  await devnet.close()
  await rm(dir, { recursive: true, force: true })
})

const envOf = (key?: string) => ({ PLUMISE_CHAIN_ID: String(devnet.chainId), SHARDMESH_DEVNET_FILE: join(dir, 'devnet.json'), ...(key ? { PLUMISE_PRIVATE_KEY: key } : {}) })

test('rewards prints epoch, pending and history; claim pays exactly the pending reward less gas', async () => {
  const { config } = devnet
  for (const who of [alice, bob]) {
    const key = await generateKeyPair('Ed25519')
    await registerAgent(devnet.walletClient(who), { config, peer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (m) => key.sign(m) }, precompile: false })
  }
  const epoch = await devnet.mineToNextEpoch()
  const contributions = [
    { agent: alice.address, ...contributionFromMetrics({ tokensProcessed: 40, avgLatencyMs: 120, uptimeSeconds: 300, requestCount: 3 }) },
    { agent: bob.address, ...contributionFromMetrics({ tokensProcessed: 7, avgLatencyMs: 800, uptimeSeconds: 200, requestCount: 1 }) },
  ]
  const fundWei = 3n * 10n ** 17n + 777n
  await reportContributions(devnet.walletClient(devnet.accounts.oracle), { config, contributions, fundWei })
  await devnet.mineToNextEpoch()
  await reportContributions(devnet.walletClient(devnet.accounts.oracle), { config, contributions: [], distributeEpochs: [epoch] })
  const share = computeEpochRewards({ totalReward: fundWei, reports: contributions }).get(alice.address)!
  assert.ok(share > 0n)

  // reading needs no wallet: any address
  const lines: string[] = []
  const read = await runRewards(parseRewardsArgs(['--address', alice.address.toLowerCase()]), { env: envOf(), print: (l) => lines.push(l) })
  assert.equal(read.address, alice.address)
  assert.equal(read.info.epoch, epoch + 1n)
  assert.equal(read.info.endBlock, devnet.deployBlock + (epoch + 2n) * 20n)
  assert.ok(lines.includes(`epoch ${epoch + 1n}, ends at block ${read.info.endBlock} (${read.info.endBlock! - read.info.blockNumber} blocks from now, block ${read.info.blockNumber})`), lines.join('\n'))
  assert.ok(lines.includes(`pending reward ${formatEther(share)} ETH (${share} wei)`), lines.join('\n'))
  assert.ok(lines.includes(`epoch ${epoch}: share ${formatEther(share)} ETH (${share} wei) of ${formatEther(fundWei)} ETH, distributed`), lines.join('\n'))
  assert.ok(lines.includes('claims: none'))
  assert.throws(() => parseRewardsArgs(['--address', '0x12']), UsageError)

  // claim with the configured wallet (PLUMISE_PRIVATE_KEY)
  const out: string[] = []
  const balanceBefore = await getBalance(devnet.walletClient(bob), { address: alice.address })
  const claimed = await runClaim({}, { env: envOf(alice.privateKey), print: (l) => out.push(l) })
  const receipt = await getTransactionReceipt(devnet.walletClient(bob), { hash: claimed.claim.hash })
  assert.equal(claimed.before, balanceBefore)
  assert.equal(claimed.claim.amount, share)
  assert.equal(claimed.after, balanceBefore + share - receipt.gasUsed * receipt.effectiveGasPrice)
  assert.equal(await getBalance(devnet.walletClient(bob), { address: alice.address }), claimed.after)
  assert.ok(out.some((l) => l.startsWith(`claim tx ${claimed.claim.hash}`)), out.join('\n'))
  assert.ok(out.includes(`balance before ${formatEther(balanceBefore)} ETH (${balanceBefore} wei)`))
  assert.ok(out.includes(`balance after ${formatEther(claimed.after)} ETH (${claimed.after} wei)`))

  // afterwards: nothing pending, the claim is in the history, a second claim is refused in words
  const again: string[] = []
  await runRewards({}, { env: envOf(alice.privateKey), print: (l) => again.push(l) })
  assert.ok(again.includes('pending reward 0 ETH (0 wei)'), again.join('\n'))
  assert.ok(again.includes(`claimed ${formatEther(share)} ETH (${share} wei) in block ${receipt.blockNumber}, tx ${claimed.claim.hash}`), again.join('\n'))
  await assert.rejects(runClaim({}, { env: envOf(alice.privateKey), print: () => {} }), NothingToClaimError)
})
