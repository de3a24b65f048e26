import { BaseError, decodeErrorResult, isHex, type Hash, type Hex } from 'viem'

/** A chain action failed: the transaction reverted (with `reason` when the chain gave one) or could not be sent. */
export class ChainActionError extends Error {
  /** The action, e.g. `submitProof`. */
  readonly action: string
  /** The revert reason (`require` message), when there is one. */
  readonly reason: string | undefined
  /** The mined transaction, when it reverted on chain rather than in gas estimation. */
  readonly hash: Hash | undefined
  constructor(action: string, detail: { reason?: string; hash?: Hash; message?: string; cause?: unknown }) {
    const why = detail.reason !== undefined ? `reverted: ${detail.reason}` : (detail.message ?? 'failed')
    super(`${action} ${why}${detail.hash ? ` (tx ${detail.hash})` : ''}`, { cause: detail.cause })
    this.name = 'ChainActionError'
    this.action = action
    this.reason = detail.reason
    this.hash = detail.hash
  }
}

/** The action needs something this chain does not offer (e.g. querying a proof without its transaction on Plumise). */
export class UnsupportedOnChainError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UnsupportedOnChainError'
  }
}

const ERROR_STRING = [{ type: 'error', name: 'Error', inputs: [{ name: 'message', type: 'string' }] }] as const

function decodeReason(data: unknown): string | undefined {
  if (typeof data !== 'string' || !isHex(data) || !data.startsWith('0x08c379a0')) return undefined
  try {
    return decodeErrorResult({ abi: ERROR_STRING, data: data as Hex }).args[0]
  } catch {
    return undefined
  }
}

/** The `require` message inside a viem (or JSON-RPC) error, wherever in the cause chain it sits. */
export function revertReasonOf(error: unknown): string | undefined {
  let found: string | undefined
  const visit = (e: unknown): void => {
    for (let cur = e, depth = 0; cur && typeof cur === 'object' && depth < 12 && found === undefined; depth++) {
      const o = cur as { reason?: unknown; data?: unknown; details?: unknown; shortMessage?: unknown; cause?: unknown }
      if (typeof o.reason === 'string' && o.reason) found = o.reason
      found ??= decodeReason(o.data) ?? decodeReason((o.data as { data?: unknown } | undefined)?.data)
      if (found === undefined && typeof o.details === 'string') found = /execution reverted:? (.+)/i.exec(o.details)?.[1]?.trim()
      cur = o.cause
    }
  }
  if (error instanceof BaseError) error.walk((e) => (visit(e), found !== undefined))
  visit(error)
  return found
}
