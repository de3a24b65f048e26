import type { Logger } from '../logger.ts'
import type { FarmWallet } from './farmWallet.ts'

export type FarmPayouts = {
  /** The worker wallet's pending reward at the last poll, wei. */
  pendingOf(worker: number): bigint | undefined
  /** What the farm claimed for its workers and forwarded to the farm wallet since it started, wei. */
  claimedWei(): bigint
  /** Claims and forwards now (also on a timer). */
  sweep(): Promise<void>
  stop(): void
}

/**
 * The farm's payouts: polls each worker wallet's pending reward, and sweeps (claims it and forwards
 * it to the farm wallet) when some is pending, so the farm's earnings gather in one wallet.
 */
export function startFarmPayouts(init: { wallet: FarmWallet; workers: number[]; logger: Logger; pollMs?: number }): FarmPayouts {
  const pending = new Map<number, bigint>()
  let claimed = 0n
  let running: Promise<void> | undefined
  const sweep = () =>
    (running ??= (async () => {
      for (const w of init.workers) pending.set(w, await init.wallet.pending(w))
      const owed = init.workers.filter((w) => (pending.get(w) ?? 0n) > 0n)
      if (!owed.length) return
      const r = await init.wallet.sweep(owed)
      claimed += r.claimedWei
      for (const w of owed) pending.set(w, await init.wallet.pending(w))
    })()
      .catch((e: Error) => init.logger.warn({ err: e.message.split('\n')[0] }, 'farm payouts: checking or claiming rewards failed; retried at the next round'))
      .finally(() => (running = undefined)))
  void sweep()
  const timer = setInterval(() => void sweep(), init.pollMs ?? 60_000)
  timer.unref()
  return { pendingOf: (w) => pending.get(w), claimedWei: () => claimed, sweep, stop: () => clearInterval(timer) }
}
