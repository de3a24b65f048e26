import type { Address, Hash } from 'viem'
import { getBlockNumber, getContractEvents, readContract } from 'viem/actions'
import { rewardPoolAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import { predictEpochRewards } from './predictEpochRewards.ts'
import type { ChainClient } from './transact.ts'

export type EpochInfo = {
  epoch: bigint
  blockNumber: bigint
  /** The first block of the next epoch; undefined where the pool does not expose its schedule (Plumise's genesis pool). */
  endBlock: bigint | undefined
  blocksPerEpoch: bigint | undefined
}

/** The pool's current epoch and the block it ends at (epochs are block based: (block - deployBlock) / BLOCKS_PER_EPOCH). */
export async function getEpochInfo(client: ChainClient, p: { config: ChainConfig }): Promise<EpochInfo> {
  const pool = { address: p.config.contracts.rewardPool, abi: rewardPoolAbi } as const
  const [epoch, blockNumber] = await Promise.all([readContract(client, { ...pool, functionName: 'getCurrentEpoch' }), getBlockNumber(client, { cacheTime: 0 })])
  // the schedule getters are the project's pool's; a pool without them still has an epoch
  const schedule = await Promise.all([readContract(client, { ...pool, functionName: 'deployBlock' }), readContract(client, { ...pool, functionName: 'BLOCKS_PER_EPOCH' })]).catch(() => undefined)
  if (!schedule) return { epoch, blockNumber, endBlock: undefined, blocksPerEpoch: undefined }
  const [deployBlock, blocksPerEpoch] = schedule
  return { epoch, blockNumber, endBlock: deployBlock + (epoch + 1n) * blocksPerEpoch, blocksPerEpoch }
}

export type EpochRecord = {
  epoch: bigint
  /** Whether the pool has split this epoch. */
  distributed: boolean
  /** The epoch's whole reward (wei). */
  totalReward: bigint
  /** This agent's share as the pool splits it (wei), from the pool's records and weights. */
  share: bigint
}

export type ClaimRecord = { hash: Hash; blockNumber: bigint; amount: bigint }

export type RewardHistory = { epochs: EpochRecord[]; claims: ClaimRecord[] }

/**
 * An agent's past epochs (every epoch the Oracle reported work for it, newest first) and its
 * claims, from the pool's events. `fromBlock` bounds the log query (public RPCs cap log ranges).
 */
export async function getRewardHistory(client: ChainClient, p: { config: ChainConfig; agent: Address; fromBlock?: bigint }): Promise<RewardHistory> {
  const pool = { address: p.config.contracts.rewardPool, abi: rewardPoolAbi } as const
  const fromBlock = p.fromBlock ?? (await readContract(client, { ...pool, functionName: 'deployBlock' }).catch(() => 0n))
  const [reports, claimed] = await Promise.all([
    getContractEvents(client, { ...pool, eventName: 'ContributionReported', args: { agent: p.agent }, fromBlock, toBlock: 'latest' }),
    getContractEvents(client, { ...pool, eventName: 'RewardClaimed', args: { agent: p.agent }, fromBlock, toBlock: 'latest' }),
  ])
  const epochNumbers = [...new Set(reports.map((r) => r.args.epoch).filter((e): e is bigint => e !== undefined))].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0))
  const epochs = await Promise.all(
    epochNumbers.map(async (epoch): Promise<EpochRecord> => {
      const [distributed, totalReward, shares] = await Promise.all([
        readContract(client, { ...pool, functionName: 'epochDistributed', args: [epoch] }),
        readContract(client, { ...pool, functionName: 'epochRewards', args: [epoch] }),
        predictEpochRewards(client, { config: p.config, epoch }),
      ])
      const share = [...shares].find(([a]) => a.toLowerCase() === p.agent.toLowerCase())?.[1] ?? 0n
      return { epoch, distributed, totalReward, share }
    }),
  )
  const claims = claimed.map((l) => ({ hash: l.transactionHash, blockNumber: l.blockNumber, amount: l.args.amount ?? 0n })).reverse()
  return { epochs, claims }
}
