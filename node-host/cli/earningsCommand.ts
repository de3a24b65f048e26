import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { z } from 'zod'
import { openEarningsStore, type EarningsSummary } from '../agent/earningsStore.ts'
import { parseOptions } from './usageError.ts'

export const EARNINGS_USAGE = `usage: shardmesh earnings [--data-dir <folder>] [--json]
       What the Oracle booked for this host (EARNINGS_RECORD, PAYOUT_NOTIFICATION), as its agent saved it in
       <data-dir>/earnings.json (default $SHARDMESH_HOME, ~/.shardmesh: the folder of the host's identity.key):
       per task, per day, totals (all, today, not yet paid) and payouts.`

const optionsSchema = z.object({
  dataDir: z.string().default(process.env.SHARDMESH_HOME ?? join(homedir(), '.shardmesh')),
  json: z.boolean().default(false),
})
export type EarningsOptions = z.infer<typeof optionsSchema>

export function parseEarningsArgs(argv: string[]): EarningsOptions {
  const { values } = parseArgs({ args: argv, options: { 'data-dir': { type: 'string' }, json: { type: 'boolean' } }, strict: true })
  return parseOptions(optionsSchema, { dataDir: values['data-dir'], json: values.json })
}

/** The earnings file of a data folder. */
export const earningsFile = (dataDir: string) => join(dataDir, 'earnings.json')

const usd = (x: number) => `$${x.toFixed(6)}`

/** The report as text: a table per task, one per day, then the totals. */
export function formatEarnings(s: EarningsSummary): string {
  const lines: string[] = []
  if (!s.history.length) lines.push('no earnings recorded yet')
  else {
    lines.push('per task:', `  ${'task'.padEnd(38)} ${'day'.padEnd(10)} ${'gpu hours'.padStart(10)} ${'rate/h'.padStart(10)} ${'usd'.padStart(12)}  status`)
    for (const r of s.history) {
      lines.push(`  ${r.task_id.padEnd(38)} ${r.recorded_at.slice(0, 10)} ${r.gpu_hours.toFixed(4).padStart(10)} ${r.rate_usd_per_hour.toFixed(4).padStart(10)} ${usd(r.final_amount_usd).padStart(12)}  ${r.status}`)
    }
    lines.push('per day:')
    for (const d of s.byDay) lines.push(`  ${d.day}  ${String(d.tasks).padStart(4)} tasks ${d.gpuHours.toFixed(4).padStart(10)} gpu hours ${usd(d.usd).padStart(12)}`)
  }
  if (s.payouts.length) {
    lines.push('payouts:')
    for (const p of s.payouts) lines.push(`  ${p.payout_id}  ${p.period.start}..${p.period.end}  net ${usd(p.net_amount_usd)}  ${p.status}`)
  }
  lines.push(`total ${usd(s.totalUsd)}  today ${usd(s.todayUsd)}  pending ${usd(s.pendingUsd)}`)
  return lines.join('\n')
}

export async function runEarnings(opts: EarningsOptions, out: (text: string) => void = (t) => process.stdout.write(t)): Promise<void> {
  const store = await openEarningsStore(earningsFile(opts.dataDir))
  const summary = store.summary()
  out(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatEarnings(summary)}\n`)
}
