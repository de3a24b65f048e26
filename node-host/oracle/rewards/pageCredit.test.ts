import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createPublicClient, encodeFunctionData, http, parseEther } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { getBalance, getLogs } from 'viem/actions'
import { agentRegistryAbi } from '../../../shared/chain/abis.ts'
import { claimReward } from '../../../shared/chain/claimReward.ts'
import { getAgent } from '../../../shared/chain/getAgent.ts'
import { getPendingReward } from '../../../shared/chain/getPendingReward.ts'
import { registerAgent } from '../../../shared/chain/registerAgent.ts'
import { transact } from '../../../shared/chain/transact.ts'
import { silentLogger } from '../../../shared/logger.ts'
import { createOrbanAgent, type OrbanAgent, type OrbanTaskController } from '../../../shared/orban/createOrbanAgent.ts'
import { BOOKED_PATH, bookedWorkSchema } from '../../../shared/oracle/bookedWork.ts'
import { SERVED_PATH, servedSnapshotSchema } from '../../../shared/oracle/servedThroughput.ts'
import { startDevnet, type DevAccount, type Devnet } from '../../chain/startDevnet.ts'
import { createOracle, type Oracle } from '../createOracle.ts'
import { readModelInfo } from '../modelInfo.ts'
import { createPeerWallets } from './peerWallets.ts'
import { createWalletBindings } from './walletBindings.ts'

// A page's served work, end to end on the Oracle's side: a real devnet, a real Oracle (its reward
// reporter, its Orban channel), a "page" agent (registers with onnxruntime-web, signs nothing but
// its channel's challenge) and a host agent, both reporting what they served in TASK_PROGRESS. The
// page's wallet (bob) bound its peer on chain; a stranger copied the binding. The Oracle counts the
// throughput of both, books the page's work to bob only, keeps bob active with operator
// heartbeats, reports the epoch, and bob claims real wei.

const MODEL = 'docs-llama-7m'
const HOUR = 3_600_000
let devnet: Devnet
let oracle: Oracle
let bob: DevAccount, stranger: DevAccount, reader: DevAccount
let pageKey: PrivateKey, hostKey: PrivateKey
let page: OrbanAgent, host: OrbanAgent
const controllers = new Map<string, OrbanTaskController>()

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const agentOf = (key: PrivateKey, framework: string) =>
  createOrbanAgent({
    url: oracle.url,
    key: key.raw,
    heartbeatIntervalMs: 100,
    registration: {
      hardware: { gpus: [], cpu: { model: 'test', cores: 2, threads: 2 }, memory_gb: 8, storage_available_gb: 10 },
      capabilities: { supported_frameworks: [framework], max_batch_size: 1, fp16_support: false, int8_support: false },
      location: { country: '', region: '', latency_to_platform_ms: 0 },
      availability: { hours_per_day: 24, reliability_score: 1 },
      mesh: { peer_id: peerIdFromPrivateKey(key).toString(), multiaddrs: [], model: MODEL, device: 'wasm', memory_mb: 4096, benchmark_tok_per_sec: 50 },
    },
    onTask: (_task, controller) => {
      controllers.set(peerIdFromPrivateKey(key).toString(), controller)
      setTimeout(() => controller.progress({ progress: 1, stage: 'serving' }), 10)
      return { accept: true }
    },
  })

const servedReport = (key: PrivateKey, tokens: number, steps: number, sessions: number) =>
  controllers.get(peerIdFromPrivateKey(key).toString())!.progress({ progress: 1, stage: 'serving', metrics: { throughput_tokens_per_sec: 12.5 }, served: { tokens, steps, sessions } })

const snapshot = async () => servedSnapshotSchema.parse(await (await fetch(new URL(SERVED_PATH, oracle.url))).json())

before(async () => {
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  ;[bob, stranger, reader] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount]
  oracle = await createOracle({
    db: ':memory:',
    models: [await readModelInfo(undefined)],
    port: 0,
    logger: silentLogger,
    replicas: 2,
    chain: { chain: { config: devnet.config, rpcUrl: devnet.rpcUrl, chain: devnet.chain, devnet: devnet.file }, account: privateKeyToAccount(devnet.accounts.oracle.privateKey), pollMs: HOUR, fundWeiPerEpoch: parseEther('1') },
  })
  pageKey = await generateKeyPair('Ed25519')
  hostKey = await generateKeyPair('Ed25519')
  // bob binds the page's peer (the page's key signs chain and wallet, as the Wallet view has it do); the stranger copies that record
  await registerAgent(devnet.walletClient(bob), { config: devnet.config, peer: { peerId: peerIdFromPrivateKey(pageKey).toString(), sign: (m) => pageKey.sign(m) }, precompile: false })
  const record = (await getAgent(devnet.walletClient(reader), { config: devnet.config, agent: bob.address }))!
  await transact(devnet.walletClient(stranger), 'registerAgent', {
    config: devnet.config,
    to: devnet.contracts.agentRegistry,
    data: encodeFunctionData({ abi: agentRegistryAbi, functionName: 'registerAgent', args: [record.nodeId, record.metadata] }),
  })
  page = await agentOf(pageKey, 'onnxruntime-web')
  host = await agentOf(hostKey, 'onnxruntime')
  await waitFor('both serving', () => (oracle.core.node(page.agentId)?.ready && oracle.core.node(host.agentId)?.ready ? true : undefined))
})

after(async () => {
  await page?.stop()
  await host?.stop()
  await oracle?.close()
  await devnet?.close()
})

test('peerWallets: a peer\'s wallet is the one whose binding verifies, not a stranger who named the same node id', async () => {
  const client = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })
  const wallets = createPeerWallets({ config: devnet.config, client, bindings: createWalletBindings({ config: devnet.config, client, logger: silentLogger }) })
  assert.equal(await wallets.walletOf(peerIdFromPrivateKey(pageKey).toString()), bob.address)
  assert.equal(await wallets.walletOf(peerIdFromPrivateKey(hostKey).toString()), undefined)
  assert.equal(await wallets.walletOf('not a peer id'), undefined)
})

test('served throughput is counted per agent and in total, the page\'s work is booked to its bound wallet, and the epoch\'s report pays it', async () => {
  await new Promise((r) => setTimeout(r, 1500))
  servedReport(pageKey, 40, 12, 1)
  servedReport(hostKey, 90, 12, 1)
  const s = await waitFor('both counted', async () => {
    const s = await snapshot()
    return s.nodes.length === 2 && s.nodes.find((n) => n.id === page.agentId)?.wallet ? s : undefined
  })
  const p = s.nodes.find((n) => n.id === page.agentId)!
  const h = s.nodes.find((n) => n.id === host.agentId)!
  assert.deepEqual({ kind: p.kind, tokens: p.tokens, steps: p.steps, sessions: p.sessions, wallet: p.wallet, peerId: p.peerId }, { kind: 'page', tokens: 40, steps: 12, sessions: 1, wallet: bob.address, peerId: peerIdFromPrivateKey(pageKey).toString() })
  assert.deepEqual({ kind: h.kind, tokens: h.tokens, wallet: h.wallet }, { kind: 'host', tokens: 90, wallet: null }, 'a host reports for itself: not credited by the Oracle')
  assert.ok(p.tokensPerSecond > 0 && p.reportedTokensPerSecond === 12.5)
  assert.equal(s.totalTokens, 130)
  assert.equal(s.totalTokensPerSecond, Math.round((p.tokensPerSecond + h.tokensPerSecond) * 100) / 100)

  // a lying page: a billion tokens since its last report are clamped to its capacity (50 tok/s × 32 headroom) over the time since
  servedReport(pageKey, 1_000_000_040, 1_000_000_012, 2)
  const lied = await waitFor('the lie counted', async () => {
    const n = (await snapshot()).nodes.find((x) => x.id === page.agentId)!
    return n.tokens > 40 ? n : undefined
  })
  assert.ok(lied.tokens < 40 + 1600 * 10, `booked ${lied.tokens}`)

  // booked to bob (bounded by what the Oracle observed), nothing to the stranger
  const epoch = oracle.rewards!.epoch()
  const totals = await waitFor('bob booked', async () => (await oracle.store.epochTotals(epoch)).find((t) => t.agent === bob.address.toLowerCase() && t.tokens >= 40))
  assert.ok(totals.tokens <= lied.tokens)
  assert.equal((await oracle.store.epochTotals(epoch)).some((t) => t.agent === stranger.address.toLowerCase()), false)
  // what the Wallet view reads: the work booked to the wallet this epoch, before the report
  const booked = bookedWorkSchema.parse(await (await fetch(new URL(`${BOOKED_PATH}?address=${bob.address}`, oracle.url))).json())
  assert.equal(booked.epoch, epoch)
  assert.equal(booked.epochs[0]?.epoch, epoch)
  assert.ok(booked.epochs[0]!.tokens >= 40)
  assert.equal((await fetch(new URL(`${BOOKED_PATH}?address=nope`, oracle.url))).status, 400)
  // the Oracle keeps bob active: an operator heartbeat for him through the agentHeartbeat precompile
  const beats = await waitFor('a heartbeat for bob', async () => {
    const logs = await getLogs(devnet.walletClient(reader), { address: devnet.contracts.agentRegistry, event: agentRegistryAbi.find((x) => x.type === 'event' && x.name === 'Heartbeat')! as never, args: { agent: bob.address } as never, fromBlock: 0n })
    return logs.length ? logs : undefined
  })
  assert.ok(beats.length >= 1)

  // Prometheus: per agent and the network total
  const metrics = await (await fetch(new URL('/metrics', oracle.url))).text()
  assert.match(metrics, new RegExp(`shardmesh_oracle_served_tokens_per_second\\{agent="${page.agentId}",kind="page",model="${MODEL}"\\} [1-9]`))
  assert.match(metrics, /shardmesh_oracle_network_served_tokens_per_second [1-9]/)
  assert.match(metrics, /shardmesh_oracle_served_tokens_total\{kind="host"\} 90\b/)

  // the epoch closes: the reporter reports bob's booked work (funding the pool), then distributes the epoch; bob claims
  await oracle.rewards!.tick()
  await devnet.mineToNextEpoch()
  await oracle.rewards!.tick()
  await oracle.rewards!.tick()
  assert.ok(oracle.rewards!.stats().reports >= 1, JSON.stringify(oracle.rewards!.stats()))
  await devnet.mineToNextEpoch()
  await oracle.rewards!.tick()
  const pending = await getPendingReward(devnet.walletClient(reader), { config: devnet.config, agent: bob.address })
  assert.ok(pending > 0n, `bob's pending reward ${pending}`)
  assert.equal(await getPendingReward(devnet.walletClient(reader), { config: devnet.config, agent: stranger.address }), 0n)
  const before = await getBalance(devnet.walletClient(reader), { address: bob.address })
  const claim = await claimReward(devnet.walletClient(bob), { config: devnet.config })
  assert.equal(claim.amount, pending)
  const afterClaim = await getBalance(devnet.walletClient(reader), { address: bob.address })
  assert.equal(afterClaim, before + pending - claim.receipt.gasUsed * claim.receipt.effectiveGasPrice)
})

test('an agent that leaves is no longer shown; the event stream carries the served snapshot', async () => {
  const res = await fetch(new URL('/api/v1/pipeline/events', oracle.url))
  const reader = res.body!.getReader()
  let text = ''
  while (!text.includes('event: network:served')) text += new TextDecoder().decode((await reader.read()).value)
  await reader.cancel()
  await host.stop()
  await waitFor('the host gone from the snapshot', async () => ((await snapshot()).nodes.some((n) => n.id === host.agentId) ? undefined : true))
})
