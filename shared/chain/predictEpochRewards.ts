import type { Address } from 'viem'
import { readContract } from 'viem/actions'
import { rewardPoolAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import { computeEpochRewards } from './rewardFormula.ts'
import type { ChainClient } from './transact.ts'

/** Each agent's share of `epoch` as the pool will split it, from the pool's own records and weights. */
export async function predictEpochRewards(client: ChainClient, p: { config: ChainConfig; epoch: bigint }): Promise<Map<Address, bigint>> {
  const pool = { address: p.config.contracts.rewardPool, abi: rewardPoolAbi } as const
  const [totalReward, agents, tokenWeight, taskWeight, uptimeWeight, latencyWeight] = await Promise.all([
    readContract(client, { ...pool, functionName: 'epochRewards', args: [p.epoch] }),
    readContract(client, { ...pool, functionName: 'getEpochAgents', args: [p.epoch] }),
    readContract(client, { ...pool, functionName: 'tokenWeight' }),
    readContract(client, { ...pool, functionName: 'taskWeight' }),
    readContract(client, { ...pool, functionName: 'uptimeWeight' }),
    readContract(client, { ...pool, functionName: 'latencyWeight' }),
  ])
  const reports = await Promise.all(
    agents.map(async (agent) => ({ agent, ...(await readContract(client, { ...pool, functionName: 'getEpochContribution', args: [p.epoch, agent] })) })),
  )
  return computeEpochRewards({ totalReward, reports, weights: { tokenWeight, taskWeight, uptimeWeight, latencyWeight } })
}
