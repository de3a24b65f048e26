import type { Address } from 'viem'
import { readContract } from 'viem/actions'
import { rewardPoolAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import type { ChainClient } from './transact.ts'

/** Wei the agent can claim now. */
export async function getPendingReward(client: ChainClient, p: { config: ChainConfig; agent: Address }): Promise<bigint> {
  return readContract(client, { address: p.config.contracts.rewardPool, abi: rewardPoolAbi, functionName: 'getPendingReward', args: [p.agent] })
}
