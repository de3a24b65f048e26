import { isAddress } from 'viem'
import type { BookedWork } from '../../../shared/oracle/bookedWork.ts'
import type { OracleStore } from '../store/oracleStore.ts'

/** The work booked to a wallet in its latest epochs (GET /api/v1/rewards/booked?address=0x…); undefined for a malformed address. */
export async function bookedWorkOf(store: Pick<OracleStore, 'metricsTotals'>, address: string, epoch: number): Promise<BookedWork | undefined> {
  if (!isAddress(address, { strict: false })) return undefined
  const rows = (await store.metricsTotals(address.toLowerCase())).sort((a, b) => b.epoch - a.epoch).slice(0, 10)
  return {
    address: address.toLowerCase(),
    epoch,
    epochs: rows.map((r) => ({ epoch: r.epoch, tokens: r.tokens, requests: r.requests, uptimeSeconds: r.uptimeCredited ?? 0, reports: r.reports })),
  }
}
