import { z } from 'zod'

const KEY = 'shardmesh.score'
/** A week: long enough to skip the benchmark on reloads, short enough to follow a new browser or driver. */
const MAX_AGE_MS = 7 * 86_400_000
const entrySchema = z.object({ tokensPerSecond: z.number().positive(), device: z.string(), at: z.number(), userAgent: z.string() })

/**
 * The benchmark score this browser measured last for a backend, kept in localStorage: a reload
 * (which resumes contributing) then registers at once instead of running the reference model again.
 */
export function loadCachedScore(backend: string): { tokensPerSecond: number; device: string } | undefined {
  try {
    const parsed = entrySchema.safeParse(JSON.parse(localStorage.getItem(`${KEY}.${backend}`) ?? 'null'))
    if (!parsed.success || parsed.data.userAgent !== navigator.userAgent || Date.now() - parsed.data.at > MAX_AGE_MS) return undefined
    return { tokensPerSecond: parsed.data.tokensPerSecond, device: parsed.data.device }
  } catch {
    return undefined
  }
}

export function saveCachedScore(backend: string, score: { tokensPerSecond: number; device: string }): void {
  try {
    localStorage.setItem(`${KEY}.${backend}`, JSON.stringify({ ...score, at: Date.now(), userAgent: navigator.userAgent }))
  } catch {
    // Storage off: measured again next time.
  }
}
