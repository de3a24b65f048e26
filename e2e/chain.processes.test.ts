import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decodeFunctionData, getAddress, isAddressEqual, keccak256, stringToHex, type Abi, type Address, type Hash, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { getBalance, getBlock, getBlockNumber, getContractEvents, getTransactionReceipt, readContract } from 'viem/actions'
import { agentRegistryAbi, precompileStandInAbi, rewardPoolAbi } from '../shared/chain/abis.ts'
import { ChainActionError } from '../shared/chain/errors.ts'
import { getAgent } from '../shared/chain/getAgent.ts'
import { isProofVerified } from '../shared/chain/isProofVerified.ts'
import { createInferenceProof } from '../shared/chain/proofHash.ts'
import { registerAgent, verifyAgentBinding } from '../shared/chain/registerAgent.ts'
import { reportContributions } from '../shared/chain/reportContributions.ts'
import { computeEpochRewards } from '../shared/chain/rewardFormula.ts'
import { createPlumiseOracleClient, OracleRequestError } from '../shared/oracle/plumiseOracleClient.ts'
import { startDevnet, type DevAccount, type Devnet } from '../node-host/chain/startDevnet.ts'
import { freePort } from '../node-host/net/freePort.ts'
import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'
import { loadFixture, type FixturePrompt } from '../testing/fixtures.ts'

// The chain wired end to end in real processes on loopback: a devnet in this process, an Oracle
// process with the reward reporter, two node hosts with wallets. The hosts register bound to their
// libp2p peers, the origin proves the generations it serves, the Oracle counts only proofs the
// chain vouches for, reports and distributes each epoch, and each host's balance moves by exactly
// its predicted share less the gas of its own transactions.

const MODEL = 'docs-llama-7m'
const FUND_WEI = 10n ** 18n + 12_345n

describe('chain: hosts and the Oracle on a devnet, from registration to claimed rewards', { timeout: 240_000 }, () => {
  const procs: CliProcess[] = []
  let dir: string
  let devnet: Devnet
  let startBlock: bigint
  let origin: DevAccount, shard: DevAccount, forger: DevAccount, stranger: DevAccount
  let oracleUrl: string
  let api: string
  let prompts: FixturePrompt[]
  const peerIds = new Map<Address, string>()
  const t0 = Date.now()
  const allLogs = () => procs.map((p) => p.log.join('')).join('\n---\n')
  const reader = () => devnet.walletClient(stranger)
  const events = <N extends 'ContributionReported' | 'RewardsDistributed' | 'RewardClaimed'>(eventName: N, toBlock?: bigint) =>
    getContractEvents(reader(), { address: devnet.contracts.rewardPool, abi: rewardPoolAbi, eventName, fromBlock: startBlock, toBlock })

  before(async () => {
    prompts = (await loadFixture(MODEL)).prompts.slice(0, 2)
    dir = await mkdtemp(join(tmpdir(), 'shardmesh-chain-'))
    const devnetFile = join(dir, 'devnet.json')
    devnet = await startDevnet({ blocksPerEpoch: 10, blockTime: 1, out: devnetFile })
    ;[origin, shard, forger, stranger] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount, DevAccount]
    startBlock = await getBlockNumber(reader(), { cacheTime: 0 })
    const chainEnv = { SHARDMESH_DEVNET_FILE: devnetFile, PLUMISE_CHAIN_ID: String(devnet.chainId) }

    const oraclePort = await freePort()
    oracleUrl = `http://127.0.0.1:${oraclePort}`
    procs.push(
      spawnCli(['oracle', '--port', String(oraclePort), '--db', join(dir, 'oracle.db'), '--silence-s', '60', '--chain-poll-s', '0.5', '--epoch-fund-wei', String(FUND_WEI)], {
        ...chainEnv,
        ORACLE_PRIVATE_KEY: devnet.accounts.oracle.privateKey,
      }),
    )
    await waitFor('the oracle', async () => ((await fetch(`${oracleUrl}/health`)).ok ? true : undefined), 30_000, allLogs)

    const apiPort = await freePort()
    api = `http://127.0.0.1:${apiPort}`
    for (const [i, who] of [origin, shard].entries()) {
      const args = ['start', '--oracle', oracleUrl, '--device', 'cpu', '--memory-mb', '9', '--heartbeat-s', '1', '--listen', '/ip4/127.0.0.1/tcp/0', '--identity', join(dir, `host-${i}.key`)]
      if (who === origin) args.push('--api-port', String(apiPort))
      // auto-claim whatever is pending after each report (every second)
      procs.push(spawnCli(args, { ...chainEnv, PLUMISE_PRIVATE_KEY: who.privateKey, REPORT_INTERVAL: '1', CLAIM_THRESHOLD_WEI: '1', CHAIN_HEARTBEAT_INTERVAL: '5' }))
    }
    for (const [i, who] of [origin, shard].entries()) {
      const proc = procs[1 + i]!
      peerIds.set(who.address, await waitFor(`host ${i}'s peer id`, async () => proc.log.join('').match(/"peerId":"(12D3Koo\w+)"/)?.[1], 30_000, allLogs))
    }
    await waitFor('the origin serving', async () => ((await fetch(`${api}/health`).then((r) => r.json())).status === 'ok' ? true : undefined), 120_000, allLogs)
    await waitFor(
      'every layer ready',
      async () => {
        const t = (await fetch(`${oracleUrl}/api/v1/pipeline/topology?model=${MODEL}`).then((r) => r.json())) as { totalLayers: number; nodes: Array<{ layerStart: number; layerEnd: number; ready: boolean }> }
        const covered = Array.from({ length: t.totalLayers }, (_, l) => t.nodes.some((n) => n.ready && n.layerStart <= l && l < n.layerEnd)).every(Boolean)
        return t.totalLayers > 0 && covered ? true : undefined
      },
      120_000,
      allLogs,
    )
  })
  after(async () => {
    for (const p of procs) p.child.kill('SIGKILL')
    await devnet?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  test('hosts register on chain bound to their libp2p peers', async () => {
    for (const who of [origin, shard]) {
      const record = await waitFor('registration', async () => (await getAgent(reader(), { config: devnet.config, agent: who.address })) ?? undefined, 30_000, allLogs)
      const binding = await verifyAgentBinding({ chainId: devnet.chainId, agent: record })
      assert.equal(binding.peerId, peerIds.get(who.address))
    }
  })

  test('the origin proves each generation on chain; the Oracle counts those; a wallet that is no node, or a stranger, cannot report', async () => {
    const generations = []
    for (const p of prompts) {
      const r = await fetch(`${api}/api/v1/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: p.prompt, parameters: { max_new_tokens: p.new_tokens, do_sample: false, repetition_penalty: 1 } }) })
      const body = (await r.json()) as { generated_text: string; num_tokens: number }
      assert.ok(body.num_tokens > 0 && p.greedy_text.startsWith(body.generated_text), 'the reference greedy text (up to an end-of-sequence token)')
      generations.push(createInferenceProof({ model: MODEL, prompt: p.prompt, output: body.generated_text, agentAddress: origin.address, tokenCount: body.num_tokens }))
    }
    // proven in the background: the chain's record of each is the real prompt, text and token count
    for (const proof of generations) await waitFor('the proof on chain', async () => ((await isProofVerified(reader(), { config: devnet.config, proof })) ? true : undefined), 30_000, allLogs)
    const verified = await getContractEvents(reader(), { address: devnet.precompiles.verifyInference, abi: precompileStandInAbi, eventName: 'InferenceVerified', args: { agent: origin.address }, fromBlock: startBlock })
    assert.deepEqual(verified.map((l) => l.args.proofHash), generations.map((g) => g.proofHash))
    const originTx = verified[0]!.transactionHash

    // a forger registered on chain (bound to a peer of its own that serves nothing) reports a proof never
    // submitted and the origin's proof with the origin's transaction: it is no node of the Oracle, so refused
    const key = await generateKeyPair('Ed25519')
    await registerAgent(devnet.walletClient(forger), { config: devnet.config, peer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (m) => key.sign(m) }, precompile: false })
    const client = createPlumiseOracleClient({ baseUrl: oracleUrl, account: privateKeyToAccount(forger.privateKey) })
    const never = createInferenceProof({ model: MODEL, prompt: 'never', output: 'submitted', agentAddress: forger.address, tokenCount: 50 })
    const stolen = generations[0]!
    const wire = (p: typeof never, txHash?: Hash) => ({ modelHash: p.modelHash, inputHash: p.inputHash, outputHash: p.outputHash, tokenCount: p.tokenCount, txHash })
    await assert.rejects(
      client.reportMetrics({ tokensProcessed: 0, requestCount: 0, avgLatencyMs: 0, uptimeSeconds: 30, proofs: [wire(never), wire(stolen, originTx), wire(never, keccak256(stringToHex('no such tx')))] }),
      (e: unknown) => e instanceof OracleRequestError && e.status === 400 && /is not a node of this oracle/.test(e.message),
    )
    // naming another agent in the proof is refused outright
    await assert.rejects(client.reportMetrics({ tokensProcessed: 0, requestCount: 0, avgLatencyMs: 0, uptimeSeconds: 31, proofs: [{ ...wire(stolen, originTx), agentAddress: origin.address } as never] }), (e: unknown) => e instanceof OracleRequestError && e.status === 400 && /not the reporting wallet/.test(e.message))

    // the pool takes contributions from the oracle's account only
    await assert.rejects(
      reportContributions(devnet.walletClient(stranger), { config: devnet.config, contributions: [{ agent: stranger.address, processedTokens: 10n ** 6n, uptimeSeconds: 1n, avgLatencyInv: 1n }] }),
      (e: unknown) => e instanceof ChainActionError && e.reason === 'RewardPool: caller is not the oracle',
    )

    // the Oracle reports each closed epoch: the origin's tasks are its two proven generations, the forger's none
    const sums = async () => {
      const out = new Map<Address, { taskCount: bigint; processedTokens: bigint; reports: number }>()
      for (const l of await events('ContributionReported')) {
        const s = out.get(l.args.agent!) ?? { taskCount: 0n, processedTokens: 0n, reports: 0 }
        out.set(l.args.agent!, { taskCount: s.taskCount + l.args.taskCount!, processedTokens: s.processedTokens + l.args.processedTokens!, reports: s.reports + 1 })
      }
      return out
    }
    const reported = await waitFor(
      'the epochs with the generations and the forged report reported',
      async () => {
        const s = await sums()
        return s.get(origin.address)?.taskCount === 2n && (s.get(shard.address)?.processedTokens ?? 0n) > 0n ? s : undefined
      },
      90_000,
      allLogs,
    )
    assert.equal(reported.get(forger.address), undefined, 'the forger is credited nothing')
    assert.ok(reported.get(origin.address)!.processedTokens > 0n)

    // and it stored why: the origin's proofs verified through their transactions, the forger's refused
    const db = new DatabaseSync(join(dir, 'oracle.db'), { readOnly: true })
    try {
      const rows = db.prepare('SELECT agent, proof_hash AS proofHash, tx_hash AS txHash, verdict FROM proofs ORDER BY id').all() as Array<{ agent: string; proofHash: string; txHash: string | null; verdict: string | null }>
      const of = (who: DevAccount) => rows.filter((r) => r.agent === who.address.toLowerCase())
      assert.deepEqual(of(origin).map((r) => [r.proofHash, r.verdict]), generations.map((g) => [g.proofHash, 'verified']))
      assert.ok(of(origin).every((r) => r.txHash))
      assert.deepEqual(of(forger), [], "nothing of the forger's report was booked")
    } finally {
      db.close()
    }
  })

  test("each host's balance rises by exactly its predicted share, less the gas of its own transactions", async (t) => {
    // every epoch the Oracle reported is distributed and both hosts have claimed
    const blockB = await waitFor(
      'distribution and claims',
      async () => {
        const block = await getBlockNumber(reader(), { cacheTime: 0 })
        const reportedEpochs = new Set((await events('ContributionReported', block)).map((l) => l.args.epoch!))
        const distributed = new Set((await events('RewardsDistributed', block)).map((l) => l.args.epoch!))
        const claimed = (await events('RewardClaimed', block)).map((l) => l.args.agent!)
        const withTasks = (await events('ContributionReported', block)).find((l) => isAddressEqual(l.args.agent!, origin.address) && l.args.taskCount! > 0n)!.args.epoch!
        const ok = distributed.has(withTasks) && [origin, shard].every((h) => claimed.some((a) => isAddressEqual(a, h.address)))
        return ok && reportedEpochs.size > 0 ? block : undefined
      },
      90_000,
      allLogs,
    )

    // the prediction: each distributed epoch split by the formula over the contributions reported in it
    const reports = await events('ContributionReported', blockB)
    const predicted = new Map<Address, bigint>()
    for (const d of await events('RewardsDistributed', blockB)) {
      const epoch = d.args.epoch!
      const inEpoch = reports.filter((r) => r.args.epoch === epoch).map((r) => ({ ...(r.args as Required<typeof r.args>) }))
      for (const [agent, share] of computeEpochRewards({ totalReward: d.args.totalReward!, reports: inEpoch })) predicted.set(agent, (predicted.get(agent) ?? 0n) + share)
    }
    const claims = await events('RewardClaimed', blockB)

    // the hosts' own transactions, with their gas, by kind
    const gasByKind = new Map<string, bigint[]>()
    const fees = new Map<Address, bigint>()
    const kindOf = (to: Address | null | undefined, input: Hex) => {
      const call = (abi: Abi) => {
        try {
          return decodeFunctionData({ abi, data: input }).functionName
        } catch {
          return input === '0x' ? 'fund' : 'other'
        }
      }
      if (!to) return 'create'
      if (isAddressEqual(to, devnet.contracts.agentRegistry)) return call(agentRegistryAbi)
      if (isAddressEqual(to, devnet.contracts.rewardPool)) return call(rewardPoolAbi)
      return Object.entries(devnet.precompiles).find(([, a]) => isAddressEqual(a, to))?.[0] ?? 'other'
    }
    for (let n = startBlock + 1n; n <= blockB; n++) {
      const block = await getBlock(reader(), { blockNumber: n, includeTransactions: true })
      for (const tx of block.transactions) {
        const receipt = await getTransactionReceipt(reader(), { hash: tx.hash })
        const from = getAddress(tx.from)
        fees.set(from, (fees.get(from) ?? 0n) + receipt.gasUsed * receipt.effectiveGasPrice)
        const kind = `${isAddressEqual(from, devnet.accounts.oracle.address) ? 'oracle' : 'agent'} ${kindOf(tx.to, tx.input)}`
        gasByKind.set(kind, [...(gasByKind.get(kind) ?? []), receipt.gasUsed])
      }
    }

    for (const host of [origin, shard]) {
      const share = predicted.get(host.address) ?? 0n
      const claimed = claims.filter((c) => isAddressEqual(c.args.agent!, host.address)).reduce((s, c) => s + c.args.amount!, 0n)
      const pending = await readContract(reader(), { address: devnet.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'getPendingReward', args: [host.address], blockNumber: blockB })
      assert.ok(claimed > 0n, `${host.address} claimed`)
      assert.equal(claimed + pending, share, 'claimed and pending are exactly the predicted share')
      const [b0, b1] = await Promise.all([getBalance(reader(), { address: host.address, blockNumber: startBlock }), getBalance(reader(), { address: host.address, blockNumber: blockB })])
      assert.equal(b1 - b0, claimed - fees.get(host.address)!, 'the balance moved by the claims less the gas paid')
      t.diagnostic(`${host === origin ? 'origin' : 'shard'} host: share ${share} wei, claimed ${claimed}, gas paid ${fees.get(host.address)} wei`)
    }
    assert.ok(await readContract(reader(), { address: devnet.contracts.agentRegistry, abi: agentRegistryAbi, functionName: 'isActive', args: [shard.address] }))
    for (const [kind, gas] of [...gasByKind].sort()) t.diagnostic(`gas ${kind}: ${gas.length} tx, ${gas.length ? gas.reduce((a, b) => a + b, 0n) / BigInt(gas.length) : 0n} avg`)
    t.diagnostic(`whole run ${((Date.now() - t0) / 1000).toFixed(1)} s, ${blockB - startBlock} blocks`)
  })
})
