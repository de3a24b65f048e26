import type { SamplingParams } from '../../shared/engine/sampling.ts'

/** The fields of the wire's GenerationParams (0 or absent: upstream's default). */
export type PlumiseParams = { maxNewTokens?: number; temperature?: number; topP?: number; repetitionPenalty?: number; doSample?: boolean }

/** Upstream's defaults, used wherever a field is 0 (it reads `x or default`). */
export const PLUMISE_DEFAULTS = { maxNewTokens: 128, temperature: 0.7, topP: 0.9, repetitionPenalty: 1.2 } as const

/** GenerationParams from the wire as sampling parameters, zeros replaced by upstream's defaults. */
export function resolvePlumiseParams(p: PlumiseParams | undefined): { maxNewTokens: number; sampling: SamplingParams } {
  return {
    maxNewTokens: p?.maxNewTokens || PLUMISE_DEFAULTS.maxNewTokens,
    sampling: {
      temperature: p?.temperature || PLUMISE_DEFAULTS.temperature,
      topP: p?.topP || PLUMISE_DEFAULTS.topP,
      repetitionPenalty: p?.repetitionPenalty || PLUMISE_DEFAULTS.repetitionPenalty,
      doSample: p?.doSample ?? false,
    },
  }
}
