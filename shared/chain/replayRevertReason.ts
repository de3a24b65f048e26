import type { Account, Address, Hex } from 'viem'
import { call } from 'viem/actions'
import { revertReasonOf } from './errors.ts'
import type { ChainClient } from './transact.ts'

export type ReplayRevertReasonParameters = {
  account: Account | Address
  to: Address
  data: Hex
  value?: bigint
  /** The block the transaction was mined in. */
  blockNumber: bigint
}

/**
 * Why a mined transaction reverted: it is replayed as a call at its block. A node that keeps no
 * state for past blocks (the local devnet runs anvil with --prune-history) refuses that call
 * without a revert; then it is replayed at the latest block, which for the refusals that matter
 * here (a duplicate proof, an unregistered agent) gives the same reason.
 */
export async function replayRevertReason(client: ChainClient, p: ReplayRevertReasonParameters): Promise<string | undefined> {
  const { account, to, data, value } = p
  try {
    await call(client, { account, to, data, value, blockNumber: p.blockNumber })
    return undefined
  } catch (e) {
    const reason = revertReasonOf(e)
    if (reason !== undefined) return reason
  }
  try {
    await call(client, { account, to, data, value })
    return undefined
  } catch (e) {
    return revertReasonOf(e)
  }
}
