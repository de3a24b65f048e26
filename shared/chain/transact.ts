import type { Account, Address, Chain, Client, Hash, Hex, TransactionReceipt, Transport } from 'viem'
import { sendTransaction, waitForTransactionReceipt } from 'viem/actions'
import type { ChainConfig } from './chainConfig.ts'
import { ChainActionError, revertReasonOf } from './errors.ts'
import { replayRevertReason } from './replayRevertReason.ts'

/** Any viem client that can sign or send: a wallet client in Node, wagmi's connector client in the page. */
export type ChainClient = Client<Transport, Chain | undefined, Account | undefined>

export type TransactParameters = {
  config: ChainConfig
  /** The sender; defaults to the client's account. */
  account?: Account | Address
  to: Address
  data: Hex
  value?: bigint
  /** Gas limit; estimated when left out. */
  gas?: bigint
}

export type TransactResult = { hash: Hash; receipt: TransactionReceipt }

/**
 * Sends one transaction and waits for its receipt (legacy type where the chain wants it). A revert,
 * in estimation or on chain, becomes a `ChainActionError` carrying the `require` message.
 */
export async function transact(client: ChainClient, action: string, p: TransactParameters): Promise<TransactResult> {
  const account = p.account ?? client.account
  if (!account) throw new ChainActionError(action, { message: 'needs an account: the client has none and none was passed' })
  let hash: Hash
  try {
    hash = await sendTransaction(client, {
      account,
      chain: client.chain ?? null,
      to: p.to,
      data: p.data,
      value: p.value,
      gas: p.gas,
      ...(p.config.legacyTransactions ? { type: 'legacy' as const } : {}),
    } as Parameters<typeof sendTransaction>[1])
  } catch (e) {
    const reason = revertReasonOf(e)
    throw new ChainActionError(action, { reason, message: reason === undefined ? (e as Error).message.split('\n')[0] : undefined, cause: e })
  }
  const receipt = await waitForTransactionReceipt(client, { hash })
  if (receipt.status !== 'success') {
    // mined but reverted (an explicit gas limit skips estimation): replay it to learn why
    const reason = await replayRevertReason(client, { account, to: p.to, data: p.data, value: p.value, blockNumber: receipt.blockNumber })
    throw new ChainActionError(action, { reason, hash, message: 'reverted on chain' })
  }
  return { hash, receipt }
}
