import type { OracleCore } from '../createOracleCore.ts'
import type { VerifyLedger } from './verifyLedger.ts'

/**
 * What the ledger's verdicts do to an agent: its work of an epoch is withheld from the reward
 * report when one of its peers (its node's, a Plumise node's id being its wallet, or the one its
 * wallet binding names) has a confirmed failure in that epoch, and (`unsampled`) when none of them
 * had a committed step sampled and passed in it; a banned peer's nodes leave.
 */
export function verifyConsequences(init: { ledger: () => VerifyLedger; core: () => OracleCore | undefined; walletPeer?: (wallet: string) => Promise<string | undefined> }) {
  const peersOf = async (agent: string): Promise<string[]> => {
    const peers = (init.core()?.nodes() ?? []).filter((n) => n.id.toLowerCase() === agent.toLowerCase() && n.peerId).map((n) => n.peerId!)
    const bound = await init.walletPeer?.(agent).catch(() => undefined)
    return [...peers, ...(bound ? [bound] : [])]
  }
  return {
    async withheld(agent: string, epoch: number): Promise<boolean> {
      return (await peersOf(agent)).some((p) => init.ledger().withheld(p, epoch))
    },
    /** No step of the agent's peers was sampled (and passed) in the epoch: its work there is unverified. */
    async unsampled(agent: string, epoch: number): Promise<boolean> {
      return !(await peersOf(agent)).some((p) => init.ledger().sampled(p, epoch))
    },
    async ban(peerId: string): Promise<void> {
      const core = init.core()
      for (const n of core?.nodes() ?? []) if (n.peerId === peerId) await core!.leave(n.id, 'failed spot checks')
    },
  }
}
