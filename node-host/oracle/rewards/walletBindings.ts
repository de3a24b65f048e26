import { getAddress, isAddress } from 'viem'
import { AgentBindingError, verifyAgentBinding } from '../../../shared/chain/agentBinding.ts'
import type { ChainConfig } from '../../../shared/chain/chainConfig.ts'
import { getAgent } from '../../../shared/chain/getAgent.ts'
import type { ChainClient } from '../../../shared/chain/transact.ts'
import type { Logger } from '../../../shared/logger.ts'

export type WalletBindingsInit = {
  config: ChainConfig
  /** Reads the AgentRegistry. */
  client: ChainClient
  logger: Logger
  /** How long a verified binding is trusted before it is read again. @default 300_000 */
  ttlMs?: number
  /** How long a wallet without a valid binding is answered from memory (a registration may be on its way). @default 5_000 */
  missTtlMs?: number
  /** Wallets remembered at most (oldest forgotten first). @default 10_000 */
  maxEntries?: number
  /** Clock, unix ms. @default Date.now */
  now?: () => number
}

export type WalletBindings = {
  /**
   * The libp2p peer id `wallet` is bound to: its registry record names the peer (nodeId and
   * metadata) and the peer's key signed (chain id, wallet) under the binding's domain prefix.
   * Undefined when it is not registered or the binding does not verify (a stranger who registered
   * another host's node id gets here). Throws WalletBindingUnavailableError when the chain cannot be read.
   */
  peerOf(wallet: string): Promise<string | undefined>
}

/** The chain could not be read: the wallet's binding is unknown for now (retry later). */
export class WalletBindingUnavailableError extends Error {
  readonly wallet: string

  constructor(wallet: string, cause: unknown) {
    super(`cannot check the on-chain binding of ${wallet} now (the chain is unreachable); retry later`, { cause })
    this.wallet = wallet
    this.name = 'WalletBindingUnavailableError'
  }
}

/**
 * Where the Oracle checks that a wallet speaks for a libp2p peer before it credits the wallet with
 * that peer's work. The registry cannot check it itself (Plumise has no Ed25519 precompile, so any
 * wallet may register any node id): the binding signature is what counts, and it is checked here.
 */
export function createWalletBindings(init: WalletBindingsInit): WalletBindings {
  const now = init.now ?? Date.now
  const ttlMs = init.ttlMs ?? 300_000
  const missTtlMs = init.missTtlMs ?? 5_000
  const maxEntries = init.maxEntries ?? 10_000
  /** Lowercase wallet → the answer and until when it holds (a Map keeps insertion order: oldest first). */
  const cache = new Map<string, { peerId: string | undefined; until: number }>()
  const remember = (wallet: string, peerId: string | undefined, until: number) => {
    cache.delete(wallet)
    cache.set(wallet, { peerId, until })
    if (cache.size > maxEntries) cache.delete(cache.keys().next().value!)
  }

  return {
    async peerOf(raw) {
      const wallet = raw.toLowerCase()
      if (!isAddress(wallet, { strict: false })) return undefined
      const hit = cache.get(wallet)
      if (hit && hit.until > now()) return hit.peerId
      let record
      try {
        record = await getAgent(init.client, { config: init.config, agent: getAddress(wallet) })
      } catch (e) {
        throw new WalletBindingUnavailableError(wallet, e)
      }
      if (!record) {
        remember(wallet, undefined, now() + missTtlMs)
        return undefined
      }
      try {
        const binding = await verifyAgentBinding({ chainId: init.config.chainId, agent: record })
        remember(wallet, binding.peerId, now() + ttlMs)
        return binding.peerId
      } catch (e) {
        if (!(e instanceof AgentBindingError)) throw e
        if (!hit || hit.peerId !== undefined) init.logger.warn({ wallet, nodeId: record.nodeId, reason: e.message }, 'oracle: the wallet\'s on-chain registration does not bind it to a peer; its reports for a peer are not booked')
        remember(wallet, undefined, now() + missTtlMs)
        return undefined
      }
    },
  }
}
