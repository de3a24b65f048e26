/** Why a generation ended: its token budget, an end-of-sequence token, or the caller (a stop sequence). */
export type FinishReason = 'length' | 'eos' | 'stop'

/** A token as a step gave it: sampled here from logits, or by the last hop of a mesh route. */
export type LoopToken = { id: number; isEos: boolean }

/** Prefill and decode times of one generation, across the replays of a mesh generation. */
export type GenerationClock = {
  /** The first token is in (later calls do nothing): the prefill ends and decoding starts. */
  firstToken(): void
  /** Time to the first token, and the mean time per token after it. */
  timings(tokens: number): { prefillMs: number; decodeMsPerToken: number }
}

export function createGenerationClock(): GenerationClock {
  const t0 = performance.now()
  let prefillMs = 0
  let decodeStart: number | undefined
  return {
    firstToken() {
      if (decodeStart !== undefined) return
      decodeStart = performance.now()
      prefillMs = decodeStart - t0
    },
    timings(tokens) {
      const decodeSteps = Math.max(0, tokens - 1)
      return { prefillMs, decodeMsPerToken: decodeSteps && decodeStart !== undefined ? (performance.now() - decodeStart) / decodeSteps : 0 }
    },
  }
}

export type GenerationLoopParameters<R, T extends LoopToken> = {
  inputIds: number[]
  /** Tokens generated so far, appended to in place: a replay (a mesh failover) goes on from them. */
  outputIds: number[]
  maxNewTokens: number
  /**
   * Runs the pipeline: the prefill (the prompt, then the tokens generated so far) when `prefill`,
   * else the one newest token. Its result holds the next token (logits, or the token itself).
   */
  step(tokens: number[], prefill: boolean): Promise<R>
  /** The token a step's result gives; `outputIds` does not hold it yet (sampling penalties read it). */
  next(result: R): T
  /** Each new token; `'stop'` ends the generation there (stop sequences). */
  onToken?(token: T, index: number): void | 'stop'
  clock: GenerationClock
}

/**
 * The generation loop both routes share, in process ({@link generate}) and over the mesh: prefill,
 * then one token per step until the caller stops, an end-of-sequence token, or the budget.
 */
export async function runGenerationLoop<R, T extends LoopToken>(params: GenerationLoopParameters<R, T>): Promise<FinishReason> {
  const out = params.outputIds
  let result = await params.step([...params.inputIds, ...out], true)
  for (;;) {
    params.clock.firstToken()
    if (out.length >= params.maxNewTokens) return 'length'
    const token = params.next(result)
    out.push(token.id)
    if (params.onToken?.(token, out.length - 1) === 'stop') return 'stop'
    if (token.isEos) return 'eos'
    if (out.length >= params.maxNewTokens) return 'length'
    result = await params.step([token.id], false)
  }
}
