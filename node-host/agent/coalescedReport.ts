export type CoalescedReportInit = {
  /** Sends the report (what the periodic timer also sends). */
  report: () => void
  /** Fewest ms from any report to one this schedules: the extra reports stay a trickle. @default 2000 */
  minGapMs?: number
  /** How long a request waits for others to join it (sessions that end together send one report). @default 200 */
  settleMs?: number
}

export type CoalescedReport = {
  /** Something worth reporting happened (a served session ended): report soon, once for many. */
  request(): void
  /** A report went out on its own (the periodic one): it covers what a pending request was for. */
  reported(): void
  stop(): void
}

/**
 * An extra report soon after an event, beside a slow periodic one: requests are coalesced into
 * one report, sent `settleMs` after the first, and never sooner than `minGapMs` after the last
 * report of either kind, so a burst of events (or one per token) costs at most one report per gap.
 */
export function createCoalescedReport(init: CoalescedReportInit): CoalescedReport {
  const minGapMs = init.minGapMs ?? 2000
  const settleMs = init.settleMs ?? 200
  let last = -Infinity
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  return {
    request() {
      if (timer || stopped) return
      const now = performance.now()
      timer = setTimeout(() => {
        timer = undefined
        last = performance.now()
        init.report()
      }, Math.max(settleMs, last + minGapMs - now))
      timer.unref?.()
    },
    reported() {
      last = performance.now()
      clearTimeout(timer)
      timer = undefined
    },
    stop() {
      stopped = true
      clearTimeout(timer)
      timer = undefined
    },
  }
}
