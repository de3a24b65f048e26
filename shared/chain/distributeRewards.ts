import { encodeFunctionData, isAddressEqual, parseEventLogs, type Account, type Address, type Hash } from 'viem'
import { readContract } from 'viem/actions'
import { rewardPoolAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import { transact, type ChainClient } from './transact.ts'

export type DistributeRewardsParameters = {
  config: ChainConfig
  account?: Account | Address
  epoch: bigint
}

export type DistributeRewardsReturnType = { epoch: bigint; hash: Hash; totalReward: bigint; agentCount: bigint; gasUsed: bigint }

/** Splits an ended epoch's reward into the agents' pending rewards (anyone may send it). */
export async function distributeRewards(client: ChainClient, p: DistributeRewardsParameters): Promise<DistributeRewardsReturnType> {
  const data = encodeFunctionData({ abi: rewardPoolAbi, functionName: 'distributeRewards', args: [p.epoch] })
  const { hash, receipt } = await transact(client, 'distributeRewards', { config: p.config, account: p.account, to: p.config.contracts.rewardPool, data })
  const log = parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardsDistributed', logs: receipt.logs }).find((l) => isAddressEqual(l.address, p.config.contracts.rewardPool))
  return { epoch: p.epoch, hash, totalReward: log?.args.totalReward ?? 0n, agentCount: log?.args.agentCount ?? 0n, gasUsed: receipt.gasUsed }
}

/** Whether `epoch` can be distributed now: ended, not yet distributed, and funded. */
export async function isEpochDistributable(client: ChainClient, p: { config: ChainConfig; epoch: bigint }): Promise<boolean> {
  const pool = { address: p.config.contracts.rewardPool, abi: rewardPoolAbi } as const
  const [current, done, reward] = await Promise.all([
    readContract(client, { ...pool, functionName: 'getCurrentEpoch' }),
    readContract(client, { ...pool, functionName: 'epochDistributed', args: [p.epoch] }),
    readContract(client, { ...pool, functionName: 'epochRewards', args: [p.epoch] }),
  ])
  return p.epoch < current && !done && reward > 0n
}
