import { z } from 'zod'
import { caseless, decimal, id, uint32 } from './orbanFieldSchemas.ts'

/** What the platform tells an agent it earned: per task, and each payout. */
export const orbanEarningsPayloads = {
  EARNINGS_RECORD: z.object({
    task_id: id,
    earnings: z.object({
      gpu_hours: decimal,
      rate_usd_per_hour: decimal,
      amount_usd: decimal,
      bonus_multiplier: decimal,
      final_amount_usd: decimal,
    }),
    status: caseless(['Pending', 'Confirmed', 'Paid']),
    /** A date ("2024-11-21") or a timestamp, as the platform wrote it. */
    estimated_payout_date: z.string().max(64),
  }),
  PAYOUT_NOTIFICATION: z.object({
    payout_id: id,
    period: z.object({ start: z.string().max(64), end: z.string().max(64) }),
    summary: z.object({
      total_tasks: uint32,
      total_gpu_hours: decimal,
      gross_amount_usd: decimal,
      platform_fee_usd: decimal,
      net_amount_usd: decimal,
    }),
    payment_method: z.string().max(256),
    payment_address: z.string().max(256),
    status: caseless(['Processing', 'Completed', 'Failed']),
  }),
} as const
