import { encodeFunctionData, isAddressEqual, parseEventLogs, type Account, type Address, type Hash, type TransactionReceipt } from 'viem'
import { parseAccount } from 'viem/accounts'
import { rewardPoolAbi } from './abis.ts'
import type { ChainConfig } from './chainConfig.ts'
import { ChainActionError } from './errors.ts'
import { getPendingReward } from './getPendingReward.ts'
import { encodeClaim } from './precompiles.ts'
import { transact, type ChainClient } from './transact.ts'

export type ClaimRewardParameters = {
  config: ChainConfig
  /** Who sends (and pays gas); defaults to the client's account. */
  account?: Account | Address
  /** Whose reward: another agent makes it a sponsored claim (the value still goes to that agent). @default the sender */
  agent?: Address
  /** `contract`: RewardPool.claimReward / claimRewardFor; `precompile`: the claim precompile 0x…23. @default 'contract' */
  via?: 'contract' | 'precompile'
}

export type ClaimRewardReturnType = {
  hash: Hash
  receipt: TransactionReceipt
  agent: Address
  /** Wei paid to the agent, from the pool's RewardClaimed event (undefined if the chain logged none). */
  amount: bigint | undefined
}

/** Claims the agent's pending reward. */
export async function claimReward(client: ChainClient, p: ClaimRewardParameters): Promise<ClaimRewardReturnType> {
  const sender = p.account ?? client.account
  if (!sender) throw new ChainActionError('claimReward', { message: 'needs an account: the client has none and none was passed' })
  const self = parseAccount(sender).address
  const agent = p.agent ?? self
  const sponsored = !isAddressEqual(agent, self)
  const [to, data] =
    (p.via ?? 'contract') === 'precompile'
      ? [p.config.precompiles.claimReward, encodeClaim(sponsored ? agent : undefined)]
      : [
          p.config.contracts.rewardPool,
          sponsored
            ? encodeFunctionData({ abi: rewardPoolAbi, functionName: 'claimRewardFor', args: [agent] })
            : encodeFunctionData({ abi: rewardPoolAbi, functionName: 'claimReward' }),
        ]
  const { hash, receipt } = await transact(client, sponsored ? 'claimRewardFor' : 'claimReward', { config: p.config, account: sender, to, data })
  const claimed = parseEventLogs({ abi: rewardPoolAbi, eventName: 'RewardClaimed', logs: receipt.logs }).find(
    (l) => isAddressEqual(l.address, p.config.contracts.rewardPool) && isAddressEqual(l.args.agent, agent),
  )
  return { hash, receipt, agent, amount: claimed?.args.amount }
}

/**
 * Claims when the pending reward reaches `thresholdWei` (hosts: `CLAIM_THRESHOLD_WEI`, 1e18 by
 * default, as upstream: at or above). Returns null when below or when there is nothing.
 */
export async function claimIfAbove(client: ChainClient, p: ClaimRewardParameters & { thresholdWei: bigint }): Promise<ClaimRewardReturnType | null> {
  const sender = p.account ?? client.account
  if (!sender) throw new ChainActionError('claimReward', { message: 'needs an account: the client has none and none was passed' })
  const pending = await getPendingReward(client, { config: p.config, agent: p.agent ?? parseAccount(sender).address })
  if (pending === 0n || pending < p.thresholdWei) return null
  return claimReward(client, p)
}
