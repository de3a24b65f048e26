import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { claimReward } from '../../shared/chain/claimReward.ts'
import { distributeRewards } from '../../shared/chain/distributeRewards.ts'
import { createInferenceProof, modelHashOf } from '../../shared/chain/proofHash.ts'
import { registerAgent } from '../../shared/chain/registerAgent.ts'
import { reportContributions } from '../../shared/chain/reportContributions.ts'
import { sendHeartbeat } from '../../shared/chain/sendHeartbeat.ts'
import { submitProof } from '../../shared/chain/submitProof.ts'
import { startDevnet, type DevAccount } from '../chain/startDevnet.ts'

export type ChainBenchRow = {
  /** What the transaction does. */
  operation: string
  /** Where it goes. */
  target: string
  gasUsed: number
}

export type ChainBenchReport = { bench: 'chain'; chainId: number; evm: string; rows: ChainBenchRow[]; deployGas: Record<string, number> }

/**
 * Gas of each chain operation a host or the oracle performs, measured on a fresh devnet (anvil,
 * the project's contracts, the precompile stand-ins). On Plumise the precompiles are native and
 * priced by the chain: their rows here are the stand-ins' cost.
 */
export async function runChainBench(opts: { log?: (line: string) => void } = {}): Promise<ChainBenchReport> {
  const log = opts.log ?? (() => {})
  const devnet = await startDevnet({ blockTime: 0, blocksPerEpoch: 10 })
  try {
    const { config } = devnet
    const [alice, bob, sponsor] = devnet.accounts.others as [DevAccount, DevAccount, DevAccount]
    const oracle = devnet.walletClient(devnet.accounts.oracle)
    const rows: ChainBenchRow[] = []
    const row = (operation: string, target: string, gas: bigint | undefined) => {
      rows.push({ operation, target, gasUsed: Number(gas ?? 0n) })
      log(`${operation}: ${gas} gas`)
    }

    const keys = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')]
    const precompile = { name: 'shardmesh-host', modelHash: modelHashOf('bigscience/bloom-560m'), capabilities: [modelHashOf('text-generation')] }
    const metadata = { model: 'bigscience/bloom-560m', http: 'http://127.0.0.1:31331' }
    for (const [i, who] of [alice, bob].entries()) {
      const key = keys[i]!
      const r = await registerAgent(devnet.walletClient(who), { config, peer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (m) => key.sign(m) }, metadata, precompile })
      if (i === 0) {
        row('register (peer-bound metadata, ~300 B)', 'AgentRegistry.registerAgent', r.gasUsed)
        row('register agent account (1 capability)', 'agentRegister 0x…21', r.precompileGasUsed)
      }
    }
    row('heartbeat', 'AgentRegistry.heartbeat', (await sendHeartbeat(devnet.walletClient(alice), { config })).receipt.gasUsed)
    row('heartbeat', 'agentHeartbeat 0x…22 (stand-in → registry)', (await sendHeartbeat(devnet.walletClient(alice), { config, via: 'precompile' })).receipt.gasUsed)
    row('heartbeat for an agent (operator)', 'agentHeartbeat 0x…22, 32-byte address', (await sendHeartbeat(oracle, { config, via: 'precompile', agent: bob.address })).receipt.gasUsed)
    const proof = createInferenceProof({ model: 'bigscience/bloom-560m', prompt: 'The capital of France is', output: ' Paris.', agentAddress: alice.address, tokenCount: 3 })
    row('proof', 'verifyInference 0x…20 (stand-in)', (await submitProof(devnet.walletClient(alice), { config, proof })).receipt.gasUsed)

    const epoch = await devnet.mineToNextEpoch()
    const contribution = { processedTokens: 1200n, uptimeSeconds: 600n, avgLatencyInv: 9800n, taskCount: 4n }
    const reported = await reportContributions(oracle, { config, fundWei: 10n ** 18n, contributions: [{ agent: alice.address, ...contribution }, { agent: bob.address, ...contribution }] })
    row('report (first of the epoch, 6 arguments)', 'RewardPool.reportContribution', reported.reports[0]!.gasUsed)
    row('report (second agent)', 'RewardPool.reportContribution', reported.reports[1]!.gasUsed)
    const again = await reportContributions(oracle, { config, contributions: [{ agent: alice.address, ...contribution }] })
    row('report (agent already in the epoch)', 'RewardPool.reportContribution', again.reports[0]!.gasUsed)
    const four = await reportContributions(oracle, { config: { ...config, reportContributionArity: 4 }, contributions: [{ agent: bob.address, ...contribution }] })
    row('report (4 arguments, genesis form)', 'RewardPool.reportContribution', four.reports[0]!.gasUsed)
    await devnet.mineToNextEpoch()
    row('distribute (2 agents)', 'RewardPool.distributeRewards', (await distributeRewards(oracle, { config, epoch })).gasUsed)
    row('claim', 'RewardPool.claimReward', (await claimReward(devnet.walletClient(alice), { config })).receipt.gasUsed)
    row('claim (sponsored)', 'claim 0x…23 → RewardPool.claimRewardFor', (await claimReward(devnet.walletClient(sponsor), { config, agent: bob.address, via: 'precompile' })).receipt.gasUsed)
    return { bench: 'chain', chainId: devnet.chainId, evm: 'anvil (contracts compiled for cancun)', rows, deployGas: Object.fromEntries(Object.entries(devnet.deployGas).map(([k, v]) => [k, Number(v)])) }
  } finally {
    await devnet.close()
  }
}

export function formatChainTable(report: ChainBenchReport): string {
  const head = ['operation', 'target', 'gas']
  const body = report.rows.map((r) => [r.operation, r.target, String(r.gasUsed)])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}
