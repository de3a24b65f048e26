import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createPublicClient, encodeFunctionData, http } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { agentRegistryAbi } from '../../../shared/chain/abis.ts'
import { createAgentMetadata } from '../../../shared/chain/agentBinding.ts'
import { getAgent } from '../../../shared/chain/getAgent.ts'
import { registerAgent } from '../../../shared/chain/registerAgent.ts'
import { transact } from '../../../shared/chain/transact.ts'
import { silentLogger } from '../../../shared/logger.ts'
import { createOrbanAgent, type OrbanAgent } from '../../../shared/orban/createOrbanAgent.ts'
import { createPlumiseOracleClient, OracleRequestError } from '../../../shared/oracle/plumiseOracleClient.ts'
import { startDevnet, type DevAccount, type Devnet } from '../../chain/startDevnet.ts'
import { freePort } from '../../net/freePort.ts'
import { createOracle, type Oracle } from '../createOracle.ts'
import { readModelInfo } from '../modelInfo.ts'
import { createWalletBindings, WalletBindingUnavailableError } from './walletBindings.ts'

// The peer → wallet binding checked where it pays: a real devnet, a real Oracle with its reward
// reporter, a node host connected over the Orban channel with its libp2p key. A stranger who
// registers the host's node id on chain (the registry cannot check Ed25519, so it lets anyone name
// any node id) is credited nothing: its reports are refused and nothing is booked to it.

const MODEL = 'docs-llama-7m'
const HOUR = 3_600_000
let devnet: Devnet
let oracle: Oracle
let alice: DevAccount, stranger: DevAccount, forger: DevAccount, reader: DevAccount
let hostKey: PrivateKey
let host: OrbanAgent

async function waitFor<T>(what: string, fn: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const v = fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

before(async () => {
  devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  ;[alice, stranger, forger, reader] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount, DevAccount]
  oracle = await createOracle({
    db: ':memory:',
    models: [await readModelInfo(undefined)],
    port: 0,
    logger: silentLogger,
    chain: { chain: { config: devnet.config, rpcUrl: devnet.rpcUrl, chain: devnet.chain, devnet: devnet.file }, account: privateKeyToAccount(devnet.accounts.oracle.privateKey), pollMs: HOUR },
  })
  // the node host: its Orban link carries its libp2p key and peer id; it serves the range it is given
  hostKey = await generateKeyPair('Ed25519')
  host = await createOrbanAgent({
    url: oracle.url,
    key: hostKey.raw,
    heartbeatIntervalMs: 100,
    registration: {
      hardware: { gpus: [], cpu: { model: 'test', cores: 2, threads: 2 }, memory_gb: 8, storage_available_gb: 10 },
      capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 1, fp16_support: false, int8_support: false },
      location: { country: '', region: '', latency_to_platform_ms: 0 },
      availability: { hours_per_day: 24, reliability_score: 1 },
      mesh: { peer_id: peerIdFromPrivateKey(hostKey).toString(), multiaddrs: [], model: MODEL, device: 'cpu', memory_mb: 4096, benchmark_tok_per_sec: 100 },
    },
    onTask: (_task, controller) => {
      setTimeout(() => controller.progress({ progress: 1, stage: 'serving' }), 10)
      return { accept: true }
    },
  })
  await waitFor('the host serving', () => (oracle.core.node(host.agentId)?.ready ? true : undefined))
  // alice is the host's wallet: her registration carries the host key's signature over (chain, wallet)
  await registerAgent(devnet.walletClient(alice), { config: devnet.config, peer: { peerId: peerIdFromPrivateKey(hostKey).toString(), sign: (m) => hostKey.sign(m) }, precompile: false })
})
after(async () => {
  await host?.stop()
  await oracle?.close()
  await devnet?.close()
})

const report = (who: DevAccount, tokensProcessed: number) =>
  createPlumiseOracleClient({ baseUrl: oracle.url, account: privateKeyToAccount(who.privateKey) }).reportMetrics({ tokensProcessed, requestCount: 1, avgLatencyMs: 20, uptimeSeconds: 600 })

test("a stranger who registers the host's node id on chain is credited nothing; the host's wallet is", async () => {
  const aliceRecord = (await getAgent(devnet.walletClient(reader), { config: devnet.config, agent: alice.address }))!
  // the stranger names the host's node id with alice's metadata copied verbatim (the peer's signature is over alice's wallet)
  await transact(devnet.walletClient(stranger), 'registerAgent', {
    config: devnet.config,
    to: devnet.contracts.agentRegistry,
    data: encodeFunctionData({ abi: agentRegistryAbi, functionName: 'registerAgent', args: [aliceRecord.nodeId, aliceRecord.metadata] }),
  })
  // the forger names it with a signature by another key
  const other = await generateKeyPair('Ed25519')
  const forged = await createAgentMetadata({ chainId: devnet.chainId, wallet: forger.address, peer: { peerId: peerIdFromPrivateKey(hostKey).toString(), sign: (m) => other.sign(m) } })
  await transact(devnet.walletClient(forger), 'registerAgent', {
    config: devnet.config,
    to: devnet.contracts.agentRegistry,
    data: encodeFunctionData({ abi: agentRegistryAbi, functionName: 'registerAgent', args: [aliceRecord.nodeId, forged] }),
  })
  assert.equal((await getAgent(devnet.walletClient(reader), { config: devnet.config, agent: stranger.address }))!.nodeId, aliceRecord.nodeId)

  for (const who of [stranger, forger]) {
    await assert.rejects(report(who, 1_000_000), (e: unknown) => e instanceof OracleRequestError && e.status === 400 && /is not a node of this oracle/.test(e.message))
    assert.deepEqual(await oracle.store.metricsTotals(who.address.toLowerCase()), [])
    assert.equal(await oracle.store.agentCounters(who.address.toLowerCase()), undefined)
  }

  // alice's report is booked against the host's node (within what the Oracle saw it serve)
  await new Promise((r) => setTimeout(r, 300))
  const r = await report(alice, 1_000_000)
  assert.equal(r.success, true)
  const [totals] = await oracle.store.metricsTotals(alice.address.toLowerCase())
  assert.equal(totals!.reports, 1)
  assert.ok(totals!.tokens > 0 && totals!.tokens < 1_000_000, `booked ${totals!.tokens}: some, bounded by the serving time seen`)
  assert.ok(totals!.uptimeCredited! > 0 && totals!.uptimeCredited! < 60, `uptime ${totals!.uptimeCredited}`)
})

test('bindings: a verified one names its peer, others none; an unreachable chain is an error, not a "no"', async () => {
  const client = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })
  const bindings = createWalletBindings({ config: devnet.config, client, logger: silentLogger })
  assert.equal(await bindings.peerOf(alice.address), peerIdFromPrivateKey(hostKey).toString())
  assert.equal(await bindings.peerOf(stranger.address), undefined)
  assert.equal(await bindings.peerOf(reader.address), undefined, 'not registered')
  assert.equal(await bindings.peerOf('not a wallet'), undefined)
  const closed = `http://127.0.0.1:${await freePort()}`
  const offline = createWalletBindings({ config: devnet.config, client: createPublicClient({ chain: devnet.chain, transport: http(closed, { retryCount: 0 }) }), logger: silentLogger })
  await assert.rejects(offline.peerOf(alice.address), WalletBindingUnavailableError)
})

test('an Oracle that cannot read the chain answers a bound wallet 503 (retry later), never books it unchecked', async () => {
  const closed = `http://127.0.0.1:${await freePort()}`
  const blind = await createOracle({
    db: ':memory:',
    models: [await readModelInfo(undefined)],
    port: 0,
    logger: silentLogger,
    chain: { chain: { config: devnet.config, rpcUrl: closed, chain: devnet.chain, devnet: devnet.file }, account: privateKeyToAccount(devnet.accounts.oracle.privateKey), pollMs: HOUR },
  })
  try {
    const client = createPlumiseOracleClient({ baseUrl: blind.url, account: privateKeyToAccount(alice.privateKey) })
    await assert.rejects(client.reportMetrics({ tokensProcessed: 5, requestCount: 1, avgLatencyMs: 20, uptimeSeconds: 60 }), (e: unknown) => e instanceof OracleRequestError && e.status === 503 && /retry later/.test(e.message))
    assert.deepEqual(await blind.store.metricsTotals(alice.address.toLowerCase()), [])
  } finally {
    await blind.close()
  }
})
