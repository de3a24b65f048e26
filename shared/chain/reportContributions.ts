import { encodeFunctionData, isAddressEqual, parseEventLogs, type Account, type Address, type Hash } from 'viem'
import { rewardPoolAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import { distributeRewards, isEpochDistributable, type DistributeRewardsReturnType } from './distributeRewards.ts'
import type { ContributionFigures } from './rewardFormula.ts'
import { transact, type ChainClient } from './transact.ts'

export type ContributionReport = { agent: Address } & Pick<ContributionFigures, 'processedTokens' | 'uptimeSeconds' | 'avgLatencyInv'> &
  Partial<Pick<ContributionFigures, 'taskCount' | 'responseScore'>>

export type ReportContributionsParameters = {
  config: ChainConfig
  /** The oracle's account (the pool rejects anyone else). */
  account?: Account | Address
  /** One report per agent, sent in this order (the order the split follows). */
  contributions: readonly ContributionReport[]
  /**
   * Wei sent to the pool first, crediting the current epoch's reward. The devnet's stand-in for
   * Plumise's block rewards, which fund the pool there on their own. @default 0n
   */
  fundWei?: bigint
  /** Earlier epochs to distribute when they have ended (those not yet distributable are returned in `pendingEpochs`). */
  distributeEpochs?: readonly bigint[]
}

export type ReportContributionsReturnType = {
  fundHash: Hash | undefined
  /** The epoch the funding counted for (distribute it too: if no agent scored in it, its reward rolls over). */
  fundEpoch: bigint | undefined
  /** Per report: its transaction, gas and the epoch it counted for (from ContributionReported). */
  reports: { agent: Address; hash: Hash; epoch: bigint; gasUsed: bigint }[]
  /** The epoch of the last report (distribute it once it has ended). */
  epoch: bigint | undefined
  distributed: DistributeRewardsReturnType[]
  /** Of `distributeEpochs`, those that could not be distributed yet (not ended, or unfunded). */
  pendingEpochs: bigint[]
}

/**
 * The oracle's epoch step: fund (devnet), report each agent's contribution (the 4- or 6-argument
 * reportContribution, per the chain), then distribute the given ended epochs.
 */
export async function reportContributions(client: ChainClient, p: ReportContributionsParameters): Promise<ReportContributionsReturnType> {
  const { config } = p
  const pool = config.contracts.rewardPool
  const out: ReportContributionsReturnType = { fundHash: undefined, fundEpoch: undefined, reports: [], epoch: undefined, distributed: [], pendingEpochs: [] }
  if (p.fundWei && p.fundWei > 0n) {
    const { hash, receipt } = await transact(client, 'fundRewardPool', { config, account: p.account, to: pool, data: '0x', value: p.fundWei })
    out.fundHash = hash
    out.fundEpoch = parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardReceived', logs: receipt.logs }).find((l) => isAddressEqual(l.address, pool))?.args.epoch
  }
  for (const c of p.contributions) {
    const data =
      config.reportContributionArity === 4
        ? encodeFunctionData({ abi: rewardPoolAbi, functionName: 'reportContribution', args: [c.agent, c.taskCount ?? 0n, c.uptimeSeconds, c.responseScore ?? 0n] })
        : encodeFunctionData({
            abi: rewardPoolAbi,
            functionName: 'reportContribution',
            args: [c.agent, c.taskCount ?? 0n, c.uptimeSeconds, c.responseScore ?? 0n, c.processedTokens, c.avgLatencyInv],
          })
    const { hash, receipt } = await transact(client, 'reportContribution', { config, account: p.account, to: pool, data })
    const log = parseEventLogs({ abi: rewardPoolAbi, eventName: 'ContributionReported', logs: receipt.logs }).find((l) => isAddressEqual(l.address, pool))
    const epoch = log?.args.epoch ?? 0n
    out.reports.push({ agent: c.agent, hash, epoch, gasUsed: receipt.gasUsed })
    out.epoch = epoch
  }
  for (const epoch of p.distributeEpochs ?? []) {
    if (await isEpochDistributable(client, { config, epoch })) out.distributed.push(await distributeRewards(client, { config, account: p.account, epoch }))
    else out.pendingEpochs.push(epoch)
  }
  return out
}
