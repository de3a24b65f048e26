import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { z } from 'zod'
import type { OrbanMessageOf } from '../../shared/orban/orbanMessages.ts'

/**
 * What the Oracle booked for this agent (EARNINGS_RECORD, PAYOUT_NOTIFICATION), kept in a JSON
 * file under the host's data folder (upstream keeps its earnings the same way), so totals survive
 * restarts. A record re-sent for the same task replaces the earlier one (its status moves from
 * Pending to Confirmed to Paid). Writes go to a temporary file renamed over the old one: a crash
 * mid-write leaves the previous file whole.
 */

const recordSchema = z.object({
  task_id: z.string(),
  gpu_hours: z.number(),
  rate_usd_per_hour: z.number(),
  amount_usd: z.number(),
  bonus_multiplier: z.number(),
  final_amount_usd: z.number(),
  status: z.enum(['Pending', 'Confirmed', 'Paid']),
  estimated_payout_date: z.string(),
  /** When this agent received it (RFC 3339). */
  recorded_at: z.string(),
})
const payoutSchema = z.object({
  payout_id: z.string(),
  period: z.object({ start: z.string(), end: z.string() }),
  total_tasks: z.number(),
  total_gpu_hours: z.number(),
  gross_amount_usd: z.number(),
  platform_fee_usd: z.number(),
  net_amount_usd: z.number(),
  payment_method: z.string(),
  payment_address: z.string(),
  status: z.string(),
  recorded_at: z.string(),
})
const fileSchema = z.object({ version: z.literal(1), records: z.array(recordSchema), payouts: z.array(payoutSchema) })

export type EarningsEntry = z.infer<typeof recordSchema>
export type PayoutEntry = z.infer<typeof payoutSchema>

export type EarningsSummary = {
  /** All booked earnings, USD. */
  totalUsd: number
  /** Booked today (UTC), USD. */
  todayUsd: number
  /** Not yet paid (Pending or Confirmed), USD. */
  pendingUsd: number
  /** Per UTC day, oldest first. */
  byDay: Array<{ day: string; tasks: number; gpuHours: number; usd: number }>
  /** Every record, oldest first. */
  history: EarningsEntry[]
  payouts: PayoutEntry[]
}

/** The earnings file exists but is not one this store wrote. */
export class EarningsFileError extends Error {
  constructor(path: string, reason: string) {
    super(`earnings file ${path} is unreadable: ${reason}`)
    this.name = 'EarningsFileError'
  }
}

export type EarningsStore = {
  readonly path: string
  addRecord(record: OrbanMessageOf<'EARNINGS_RECORD'>): Promise<void>
  addPayout(payout: OrbanMessageOf<'PAYOUT_NOTIFICATION'>): Promise<void>
  summary(now?: Date): EarningsSummary
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6

/** Opens (or starts) the store at `path`; a file that does not parse throws EarningsFileError rather than being overwritten. */
export async function openEarningsStore(path: string): Promise<EarningsStore> {
  let data: z.infer<typeof fileSchema> = { version: 1, records: [], payouts: [] }
  try {
    const text = await readFile(path, 'utf8')
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch (e) {
      throw new EarningsFileError(path, (e as Error).message)
    }
    const parsed = fileSchema.safeParse(raw)
    if (!parsed.success) throw new EarningsFileError(path, parsed.error.issues[0]?.message ?? 'invalid')
    data = parsed.data
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  // Writes one at a time, in order.
  let writing: Promise<void> = Promise.resolve()
  const save = () => {
    const text = JSON.stringify(data, null, 1)
    writing = writing.then(async () => {
      await mkdir(dirname(path), { recursive: true })
      const tmp = `${path}.${process.pid}.tmp`
      await writeFile(tmp, text, { mode: 0o600 })
      await rename(tmp, path)
    })
    return writing
  }

  return {
    path,
    addRecord(r) {
      const entry: EarningsEntry = {
        task_id: r.task_id,
        gpu_hours: r.earnings.gpu_hours,
        rate_usd_per_hour: r.earnings.rate_usd_per_hour,
        amount_usd: r.earnings.amount_usd,
        bonus_multiplier: r.earnings.bonus_multiplier,
        final_amount_usd: r.earnings.final_amount_usd,
        status: r.status,
        estimated_payout_date: r.estimated_payout_date,
        recorded_at: new Date().toISOString(),
      }
      const at = data.records.findIndex((x) => x.task_id === r.task_id)
      if (at >= 0) data.records[at] = { ...entry, recorded_at: data.records[at]!.recorded_at }
      else data.records.push(entry)
      return save()
    },
    addPayout(p) {
      const entry: PayoutEntry = {
        payout_id: p.payout_id,
        period: p.period,
        total_tasks: p.summary.total_tasks,
        total_gpu_hours: p.summary.total_gpu_hours,
        gross_amount_usd: p.summary.gross_amount_usd,
        platform_fee_usd: p.summary.platform_fee_usd,
        net_amount_usd: p.summary.net_amount_usd,
        payment_method: p.payment_method,
        payment_address: p.payment_address,
        status: p.status,
        recorded_at: new Date().toISOString(),
      }
      const at = data.payouts.findIndex((x) => x.payout_id === p.payout_id)
      if (at >= 0) data.payouts[at] = entry
      else data.payouts.push(entry)
      return save()
    },
    summary(now = new Date()) {
      const today = now.toISOString().slice(0, 10)
      const days = new Map<string, { day: string; tasks: number; gpuHours: number; usd: number }>()
      for (const r of data.records) {
        const day = r.recorded_at.slice(0, 10)
        const d = days.get(day) ?? { day, tasks: 0, gpuHours: 0, usd: 0 }
        d.tasks++
        d.gpuHours = round6(d.gpuHours + r.gpu_hours)
        d.usd = round6(d.usd + r.final_amount_usd)
        days.set(day, d)
      }
      const sum = (rs: EarningsEntry[]) => round6(rs.reduce((a, r) => a + r.final_amount_usd, 0))
      return {
        totalUsd: sum(data.records),
        todayUsd: sum(data.records.filter((r) => r.recorded_at.startsWith(today))),
        pendingUsd: sum(data.records.filter((r) => r.status !== 'Paid')),
        byDay: [...days.values()].sort((a, b) => (a.day < b.day ? -1 : 1)),
        history: [...data.records],
        payouts: [...data.payouts],
      }
    },
  }
}
