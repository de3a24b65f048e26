import { createGenerationClock, runGenerationLoop, type FinishReason } from './generationLoop.ts'
import { createRng, sampleToken, type SamplingParams } from './sampling.ts'
import type { ShardInput, ShardOutput } from './shardSession.ts'

/** One hop of a pipeline: a local shard session, or (in the mesh) a remote peer. */
export type ShardStage = {
  forward(sessionId: string, input: ShardInput, opts?: { reset?: boolean; allLogits?: boolean }): Promise<ShardOutput>
  drop(sessionId: string): void
}

export type GenerateParameters = {
  /** Shards covering `[0, L)` in order. */
  stages: ShardStage[]
  inputIds: number[]
  maxNewTokens: number
  sampling?: SamplingParams
  /** Generation stops after one of these. */
  eosTokenIds?: number[]
  sessionId?: string
  /** Keep every row of logits (prefill and each decode step). */
  keepLogits?: boolean
  /** Called with each new token; return `'stop'` to end generation there (stop sequences). */
  onToken?: (id: number, index: number) => void | 'stop'
  signal?: AbortSignal
}

export type GenerateResult = {
  outputIds: number[]
  finishReason: FinishReason
  prefillMs: number
  /** Mean over decode steps (tokens after the first). */
  decodeMsPerToken: number
  /** `[T, vocab]` when keepLogits. */
  prefillLogits?: Float32Array
  /** One `[vocab]` row per generated token when keepLogits. */
  decodeLogits?: Float32Array[]
}

let counter = 0

/** Runs prefill, then one position per step through every stage, with each stage's KV cache. */
export async function generate(params: GenerateParameters): Promise<GenerateResult> {
  const { stages, inputIds } = params
  const sessionId = params.sessionId ?? `gen-${Date.now()}-${counter++}`
  const sampling = params.sampling ?? {}
  const rng = createRng(sampling.seed ?? 0)
  const eos = new Set(params.eosTokenIds ?? [])
  const out: number[] = []
  const decodeLogits: Float32Array[] = []
  let prefillLogits: Float32Array | undefined
  let vocab = 0
  const clock = createGenerationClock()

  const step = async (tokens: number[], prefill: boolean): Promise<Float32Array> => {
    // Every prompt position's logits only when they are kept; generation needs the last row only.
    const allLogits = prefill && params.keepLogits
    let input: ShardInput = { tokens }
    let result: ShardOutput | undefined
    for (const stage of stages) {
      params.signal?.throwIfAborted()
      result = await stage.forward(sessionId, input, allLogits ? { reset: prefill, allLogits } : { reset: prefill })
      if (result.hidden) input = { hidden: result.hidden }
    }
    if (!result?.logits) throw new Error('the last stage returned no logits: the stages do not end at the last layer')
    if (prefill) {
      vocab = allLogits ? result.logits.length / tokens.length : result.logits.length
      if (allLogits) prefillLogits = result.logits
    }
    return result.logits.subarray(result.logits.length - vocab)
  }

  try {
    const finishReason = await runGenerationLoop({
      inputIds,
      outputIds: out,
      maxNewTokens: params.maxNewTokens,
      step,
      next: (row) => {
        if (params.keepLogits) decodeLogits.push(row.slice())
        const id = sampleToken(row, sampling, out, rng)
        return { id, isEos: eos.has(id) }
      },
      onToken: params.onToken && ((token, index) => params.onToken!(token.id, index)),
      clock,
    })
    return { outputIds: out, finishReason, ...clock.timings(out.length), prefillLogits, decodeLogits: params.keepLogits ? decodeLogits : undefined }
  } finally {
    for (const s of stages) s.drop(sessionId)
  }
}
