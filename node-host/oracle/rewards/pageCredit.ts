import type { Address } from 'viem'
import type { Logger } from '../../../shared/logger.ts'
import type { OrbanPayload } from '../../../shared/orban/orbanMessages.ts'
import { UnknownNodeError, type MetricsResult, type OracleCore } from '../createOracleCore.ts'
import type { PeerWallets } from './peerWallets.ts'
import type { ServedBooking } from './servedLedger.ts'
import { WalletBindingUnavailableError } from './walletBindings.ts'

export type PageCreditInit = {
  core: Pick<OracleCore, 'recordMetrics'>
  wallets: PeerWallets
  /**
   * An operator heartbeat for the wallet on chain (the agentHeartbeat precompile, sent by the
   * pool's oracle): the pool pays registered agents with a recent heartbeat only, and a page sends
   * no transactions of its own while it serves.
   */
  heartbeat?: (wallet: Address) => Promise<unknown>
  /** Least time between two heartbeats for one wallet (the registry's timeout is 300 s). @default 120_000 */
  heartbeatEveryMs?: number
  logger: Logger
  /** @default Date.now */
  now?: () => number
}

export type PageCredit = {
  /**
   * Books what the ledger accepted of the page's report to the wallet its peer is bound to, through
   * the core's metrics booking (the same bounds as a host's own report: what the Oracle observed of
   * the node). Returns the wallet and the booking; undefined when the peer has no bound wallet.
   */
  credit(agent: { agentId: string; peerId: string | null }, booking: ServedBooking): Promise<{ wallet: Address; result: MetricsResult } | undefined>
}

/** Agents that cannot sign reports of their own: browser tabs (the Orban registration names onnxruntime-web). */
export function creditedByOracle(registration: Pick<OrbanPayload<'AGENT_REGISTER'>, 'capabilities'>): boolean {
  return registration.capabilities.supported_frameworks.includes('onnxruntime-web')
}

/**
 * The Oracle credits a page's served work to the wallet the page bound to its peer on chain
 * (AgentRegistry: the wallet's own transaction, the peer key's signature in the metadata): no
 * prompt or signature from the page while it serves. The page's counters are the ledger's accepted
 * totals, booked like a host's cumulative report, so the reward reporter pays them in the epoch's
 * report; a heartbeat keeps the wallet active in the pool's eyes.
 */
export function createPageCredit(init: PageCreditInit): PageCredit {
  const now = init.now ?? Date.now
  const heartbeatEveryMs = init.heartbeatEveryMs ?? 120_000
  const lastBeat = new Map<string, number>()
  /** One booking at a time per agent: cumulative counters must reach the core in order. */
  const queues = new Map<string, Promise<unknown>>()

  async function book(agent: { agentId: string; peerId: string | null }, booking: ServedBooking) {
    if (!agent.peerId) return undefined
    let wallet: Address | undefined
    try {
      wallet = await init.wallets.walletOf(agent.peerId)
    } catch (e) {
      if (!(e instanceof WalletBindingUnavailableError)) throw e
      init.logger.warn({ agentId: agent.agentId, err: e.message }, 'credit: the chain cannot be read; the page\'s work is booked at its next report')
      return undefined
    }
    if (!wallet) return undefined
    let result: MetricsResult
    try {
      result = await init.core.recordMetrics({
        agent: wallet.toLowerCase(),
        tokensProcessed: booking.totals.tokens,
        requestCount: booking.totals.sessions,
        avgLatencyMs: 0,
        uptimeSeconds: Math.floor(booking.totals.seconds),
      })
    } catch (e) {
      // Its node left in between (or the binding changed): nothing to book against.
      if (e instanceof UnknownNodeError || e instanceof WalletBindingUnavailableError) {
        init.logger.warn({ agentId: agent.agentId, wallet, err: e.message }, 'credit: the page\'s work could not be booked to its wallet')
        return undefined
      }
      throw e
    }
    const t = now()
    if (init.heartbeat && (result.booked.tokens > 0 || result.booked.uptimeSeconds > 0) && t - (lastBeat.get(wallet) ?? -Infinity) >= heartbeatEveryMs) {
      lastBeat.set(wallet, t)
      if (lastBeat.size > 10_000) lastBeat.delete(lastBeat.keys().next().value!)
      await init.heartbeat(wallet).catch((e: Error) => {
        lastBeat.delete(wallet)
        init.logger.warn({ wallet, err: e.message }, 'credit: the operator heartbeat for the page\'s wallet failed; retried at its next report')
      })
    }
    init.logger.debug({ agentId: agent.agentId, wallet, booked: result.booked, epoch: result.epoch }, 'credit: page work booked to its wallet')
    return { wallet, result }
  }

  return {
    credit(agent, booking) {
      const previous = queues.get(agent.agentId) ?? Promise.resolve()
      const run = previous.catch(() => undefined).then(() => book(agent, booking))
      queues.set(agent.agentId, run)
      void run.finally(() => queues.get(agent.agentId) === run && queues.delete(agent.agentId)).catch(() => undefined)
      return run
    },
  }
}
