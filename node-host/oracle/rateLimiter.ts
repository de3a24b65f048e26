export type RateLimiterInit = {
  /** Requests a key may make at once. */
  burst: number
  /** Tokens added back per second. */
  perSecond: number
  /** Clock, unix ms. @default Date.now */
  now?: () => number
  /** Keys remembered at most; past this, full buckets are forgotten first. @default 100_000 */
  maxKeys?: number
}

export type RateLimiter = {
  /**
   * Takes `cost` tokens (default 1) for `key`: false when its bucket holds fewer. A cost above the
   * burst is allowed from a full bucket and leaves it in debt, so one large item is never refused forever.
   */
  take(key: string, cost?: number): boolean
  readonly size: number
}

/** A token bucket per key (an IP, an address): bursts up to `burst`, `perSecond` sustained. */
export function createRateLimiter(init: RateLimiterInit): RateLimiter {
  const now = init.now ?? Date.now
  const maxKeys = init.maxKeys ?? 100_000
  const buckets = new Map<string, { tokens: number; at: number }>()
  const refill = (b: { tokens: number; at: number }, t: number) => {
    b.tokens = Math.min(init.burst, b.tokens + ((t - b.at) / 1000) * init.perSecond)
    b.at = t
  }
  const prune = (t: number) => {
    for (const [key, b] of buckets) {
      refill(b, t)
      if (b.tokens >= init.burst) buckets.delete(key)
    }
    // Still full of busy keys (a spread-out flood): forget the oldest; they start again with a full bucket.
    for (const key of buckets.keys()) {
      if (buckets.size < maxKeys) break
      buckets.delete(key)
    }
  }
  return {
    take(key, cost = 1) {
      const t = now()
      let b = buckets.get(key)
      if (!b) {
        if (buckets.size >= maxKeys) prune(t)
        b = { tokens: init.burst, at: t }
        buckets.set(key, b)
      } else {
        refill(b, t)
      }
      if (b.tokens < Math.min(cost, init.burst)) return false
      b.tokens -= cost
      return true
    },
    get size() {
      return buckets.size
    },
  }
}
