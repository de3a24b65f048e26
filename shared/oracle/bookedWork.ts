import { z } from 'zod'

/**
 * A wallet's work as the Oracle has booked it (hosts' own reports, pages' served work credited to
 * their bound wallet), per reward epoch, before it reaches the RewardPool in the epoch's report.
 */
export const BOOKED_PATH = '/api/v1/rewards/booked'

const count = z.number().min(0)

export const bookedWorkSchema = z.object({
  address: z.string(),
  /** The epoch bookings go to now (the RewardPool's current one). */
  epoch: z.number().int().min(0),
  /** Newest epoch first, at most 10. */
  epochs: z.array(z.object({ epoch: z.number().int().min(0), tokens: count, requests: count, uptimeSeconds: count, reports: count })),
})
export type BookedWork = z.infer<typeof bookedWorkSchema>
