import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { bytesToHex, type Address } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { getBalance } from 'viem/actions'
import { agentBindingMessage, nodeIdFromPeerId, verifyAgentBinding } from '../../shared/chain/agentBinding.ts'
import { getAgent } from '../../shared/chain/getAgent.ts'
import { getPendingReward } from '../../shared/chain/getPendingReward.ts'
import { reportContributions } from '../../shared/chain/reportContributions.ts'
import { contributionFromMetrics } from '../../shared/chain/rewardFormula.ts'
import { silentLogger } from '../../shared/logger.ts'
import { startDevnet, type Devnet } from '../chain/startDevnet.ts'
import { createFarmWallet, type FarmPageSigner, type FarmWallet } from './farmWallet.ts'

// The farm wallet on a real devnet: each worker's page is bound to the worker's own wallet (derived
// from the farm's key) with the page's binding signature; rewards paid to a worker wallet are
// claimed and forwarded to the farm wallet. The pages are Ed25519 keys here, signing exactly what
// web/agent/pageAgentBinding.ts signs.

let devnet: Devnet
let wallet: FarmWallet

const pageOf = (key: PrivateKey, signer: PrivateKey = key): FarmPageSigner => {
  const peerId = peerIdFromPrivateKey(key).toString()
  return { peerId, signBinding: async (chainId: number, w: Address) => ({ peerId, signature: bytesToHex(await signer.sign(agentBindingMessage({ chainId, wallet: w, peerId }))) }) }
}

before(async () => {
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  wallet = await createFarmWallet({ account: privateKeyToAccount(devnet.accounts.others[0]!.privateKey), chain: { config: devnet.config, rpcUrl: devnet.rpcUrl, chain: devnet.chain, devnet: devnet.file }, logger: silentLogger })
})
after(async () => {
  await devnet?.close()
})

test('each worker\'s page is bound to its own derived wallet, the same on every run; a forged signature binds nothing; a new identity re-binds', async () => {
  const [a, b, c, stranger] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519'), generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const again = await createFarmWallet({ account: privateKeyToAccount(devnet.accounts.others[0]!.privateKey), chain: { config: devnet.config, rpcUrl: devnet.rpcUrl, chain: devnet.chain, devnet: devnet.file }, logger: silentLogger })
  assert.equal(again.workerAddress(1), wallet.workerAddress(1))
  assert.notEqual(wallet.workerAddress(1), wallet.workerAddress(2))
  assert.notEqual(wallet.workerAddress(1), wallet.address)

  assert.deepEqual(await wallet.bind(1, pageOf(a)), { wallet: wallet.workerAddress(1), sent: true })
  const record = (await getAgent(devnet.walletClient(devnet.accounts.others[1]!), { config: devnet.config, agent: wallet.workerAddress(1) }))!
  assert.equal(record.nodeId, nodeIdFromPeerId(peerIdFromPrivateKey(a).toString()))
  assert.equal((await verifyAgentBinding({ chainId: devnet.chainId, agent: record })).peerId, peerIdFromPrivateKey(a).toString())
  assert.deepEqual(await wallet.bind(1, pageOf(a)), { wallet: wallet.workerAddress(1), sent: false }, 'already bound: nothing sent')

  await assert.rejects(wallet.bind(2, pageOf(b, stranger)))
  assert.equal(await getAgent(devnet.walletClient(devnet.accounts.others[1]!), { config: devnet.config, agent: wallet.workerAddress(2) }), null)
  await wallet.bind(2, pageOf(b))

  // worker 1's profile was wiped: a new peer id; its wallet is re-bound to it
  await wallet.bind(1, pageOf(c))
  const rebound = (await getAgent(devnet.walletClient(devnet.accounts.others[1]!), { config: devnet.config, agent: wallet.workerAddress(1) }))!
  assert.equal((await verifyAgentBinding({ chainId: devnet.chainId, agent: rebound })).peerId, peerIdFromPrivateKey(c).toString())
})

test('sweep claims what the pool owes the worker wallets and forwards it to the farm wallet', async () => {
  const oracle = devnet.walletClient(devnet.accounts.oracle)
  await devnet.mineToNextEpoch()
  const r = await reportContributions(oracle, {
    config: devnet.config,
    contributions: [{ agent: wallet.workerAddress(1), ...contributionFromMetrics({ tokensProcessed: 500, avgLatencyMs: 100, uptimeSeconds: 60, requestCount: 2 }) }],
    fundWei: 10n ** 18n,
  })
  await devnet.mineToNextEpoch()
  await reportContributions(oracle, { config: devnet.config, contributions: [], distributeEpochs: [r.epoch!] })
  const owed = await wallet.pending(1)
  assert.ok(owed > 0n)
  const farmBefore = await getBalance(oracle, { address: wallet.address })
  const s = await wallet.sweep([1, 2])
  assert.equal(s.claimedWei, owed)
  assert.ok(s.forwardedWei >= owed, `forwarded ${s.forwardedWei} of ${owed} (plus what the worker held above its reserve)`)
  assert.equal(await getPendingReward(oracle, { config: devnet.config, agent: wallet.workerAddress(1) }), 0n)
  assert.equal(await getBalance(oracle, { address: wallet.address }), farmBefore + s.forwardedWei, 'the farm wallet received what was forwarded (it paid no gas in the sweep: worker 1 had its reserve)')
})
