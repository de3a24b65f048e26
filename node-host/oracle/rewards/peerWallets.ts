import { getAbiItem, getAddress, type Address } from 'viem'
import { getLogs } from 'viem/actions'
import { agentRegistryAbi } from '../../../shared/chain/abis.ts'
import { nodeIdFromPeerId } from '../../../shared/chain/agentBinding.ts'
import type { ChainConfig } from '../../../shared/chain/chainConfig.ts'
import type { ChainClient } from '../../../shared/chain/transact.ts'
import { WalletBindingUnavailableError, type WalletBindings } from './walletBindings.ts'

export type PeerWalletsInit = {
  config: ChainConfig
  client: ChainClient
  /** Checks a wallet's binding (its registry record and the peer key's signature). */
  bindings: WalletBindings
  /** First block searched for registrations. @default 0n */
  fromBlock?: bigint
  /** How long a found wallet is trusted before it is looked up again. @default 300_000 */
  ttlMs?: number
  /** How long "no wallet" is answered from memory (a registration may be on its way). @default 10_000 */
  missTtlMs?: number
  /** Peers remembered at most. @default 10_000 */
  maxEntries?: number
  /** @default Date.now */
  now?: () => number
}

export type PeerWallets = {
  /**
   * The wallet a libp2p peer is bound to on chain: the newest AgentRegistered for the peer's node id
   * whose binding verifies (walletBindings: the peer's key signed the wallet). Undefined when none.
   * Throws WalletBindingUnavailableError when the chain cannot be read.
   */
  walletOf(peerId: string): Promise<Address | undefined>
}

const registered = getAbiItem({ abi: agentRegistryAbi, name: 'AgentRegistered' })

/**
 * The other direction of walletBindings: from a peer to its wallet, for agents that do not report
 * for themselves (a page holds no key that signs reports). The registry is indexed by wallet, so
 * the wallet is found from the AgentRegistered events naming the peer's node id; anyone may name
 * any node id there, so each candidate's binding is checked before it is believed.
 */
export function createPeerWallets(init: PeerWalletsInit): PeerWallets {
  const now = init.now ?? Date.now
  const ttlMs = init.ttlMs ?? 300_000
  const missTtlMs = init.missTtlMs ?? 10_000
  const maxEntries = init.maxEntries ?? 10_000
  const cache = new Map<string, { wallet: Address | undefined; until: number }>()
  const inflight = new Map<string, Promise<Address | undefined>>()

  async function lookup(peerId: string): Promise<Address | undefined> {
    let nodeId
    try {
      nodeId = nodeIdFromPeerId(peerId)
    } catch {
      return undefined
    }
    let logs
    try {
      logs = await getLogs(init.client, { address: init.config.contracts.agentRegistry, event: registered, args: { nodeId }, fromBlock: init.fromBlock ?? 0n, toBlock: 'latest' })
    } catch (e) {
      throw new WalletBindingUnavailableError(peerId, e)
    }
    const candidates = [...new Set(logs.reverse().flatMap((l) => (l.args.agent ? [getAddress(l.args.agent)] : [])))]
    for (const wallet of candidates) if ((await init.bindings.peerOf(wallet)) === peerId) return wallet
    return undefined
  }

  return {
    walletOf(peerId) {
      const hit = cache.get(peerId)
      if (hit && hit.until > now()) return Promise.resolve(hit.wallet)
      let pending = inflight.get(peerId)
      if (!pending) {
        pending = lookup(peerId)
          .then((wallet) => {
            cache.delete(peerId)
            cache.set(peerId, { wallet, until: now() + (wallet ? ttlMs : missTtlMs) })
            if (cache.size > maxEntries) cache.delete(cache.keys().next().value!)
            return wallet
          })
          .finally(() => inflight.delete(peerId))
        inflight.set(peerId, pending)
      }
      return pending
    },
  }
}
