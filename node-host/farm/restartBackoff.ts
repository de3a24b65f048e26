/** The wait before a worker's next launch after `failures` failures in a row: 1, 2, 4 … 60 s. */
export function restartBackoffMs(failures: number): number {
  if (failures <= 0) return 0
  return Math.min(60_000, 1000 * 2 ** (failures - 1))
}

/** Failures in a row from which a worker is reported as crash-looping (log and status), still retried at the backoff's pace. */
export const CRASH_LOOP_FAILURES = 4
