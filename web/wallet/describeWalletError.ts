import { BaseError, UserRejectedRequestError } from 'viem'
import { revertReasonOf } from '../../shared/chain/errors.ts'

/** An error from the wallet or the chain, in words a person can act on. */
export function describeWalletError(e: unknown): string {
  if (e instanceof BaseError) {
    const rejected = e.walk((c) => c instanceof UserRejectedRequestError || (c as { code?: unknown }).code === 4001)
    if (rejected) return 'You rejected the request in your wallet. Nothing was sent; you can try again.'
  }
  const reason = revertReasonOf(e)
  if (reason !== undefined) return `The chain refused it: ${reason}.`
  const msg = e instanceof BaseError ? e.shortMessage : e instanceof Error ? e.message : String(e)
  return `It failed: ${msg.split('\n')[0]}`
}
