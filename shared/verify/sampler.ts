export type SamplerInit = {
  /** Share of a trusted peer's steps checked. @default 0.03 */
  rate?: number
  /** Share checked while a peer has fewer than `trustedAfter` passed checks, or after it failed one. @default 0.2 */
  newPeerRate?: number
  /** Passed checks after which a peer is checked at `rate`. @default 20 */
  trustedAfter?: number
  /** Uniform [0, 1) numbers; seeded in tests. @default Math.random */
  random?: () => number
}

/**
 * Which steps get checked: each committed step independently with its peer's rate, decided at the
 * origin after the hop committed to it, so a hop cannot tell a checked step from another while it
 * computes. With rate r the first check of a cheater that cheats on every step comes after a
 * geometric number of steps: mean 1/r, and within ⌈ln(1−q)/ln(1−r)⌉ steps with probability q
 * (r = 5 %: mean 20, 95 % within 59).
 */
export function createSampler(init: SamplerInit = {}) {
  const rate = init.rate ?? 0.03
  const newRate = init.newPeerRate ?? 0.2
  const trustedAfter = init.trustedAfter ?? 20
  const random = init.random ?? Math.random
  const passes = new Map<string, number>()
  const failures = new Set<string>()
  const rateOf = (peerId: string) => (failures.has(peerId) || (passes.get(peerId) ?? 0) < trustedAfter ? Math.max(rate, newRate) : rate)
  return {
    rateOf,
    /** Whether to check this step of `peerId`. */
    pick: (peerId: string) => random() < rateOf(peerId),
    passed(peerId: string) {
      passes.set(peerId, (passes.get(peerId) ?? 0) + 1)
    },
    failed(peerId: string) {
      failures.add(peerId)
    },
  }
}

export type Sampler = ReturnType<typeof createSampler>

/** Steps within which the first check comes with probability `q`, at rate `r`. */
export const stepsToFirstCheck = (r: number, q: number) => Math.ceil(Math.log(1 - q) / Math.log(1 - r))
