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
  finishReason: 'length' | 'eos' | 'stop'
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
  const { stages, inputIds, maxNewTokens } = params
  const sessionId = params.sessionId ?? `gen-${Date.now()}-${counter++}`
  const sampling = params.sampling ?? {}
  const rng = createRng(sampling.seed ?? 0)
  const eos = new Set(params.eosTokenIds ?? [])
  const out: number[] = []
  const decodeLogits: Float32Array[] = []
  let prefillLogits: Float32Array | undefined
  let finishReason: GenerateResult['finishReason'] = 'length'

  const step = async (tokens: number[], reset: boolean, allLogits = false): Promise<Float32Array> => {
    let input: ShardInput = { tokens }
    let result: ShardOutput | undefined
    for (const stage of stages) {
      params.signal?.throwIfAborted()
      result = await stage.forward(sessionId, input, allLogits ? { reset, allLogits } : { reset })
      if (result.hidden) input = { hidden: result.hidden }
    }
    if (!result?.logits) throw new Error('the last stage returned no logits: the stages do not end at the last layer')
    return result.logits
  }

  const t0 = performance.now()
  let decodeStart = 0
  try {
    // Every prompt position's logits only when they are kept; generation needs the last row only.
    let logits = await step(inputIds, true, params.keepLogits)
    const vocab = params.keepLogits ? logits.length / inputIds.length : logits.length
    if (params.keepLogits) prefillLogits = logits
    let row = logits.subarray(logits.length - vocab)
    const prefillMs = performance.now() - t0
    decodeStart = performance.now()
    for (let i = 0; i < maxNewTokens; i++) {
      if (params.keepLogits) decodeLogits.push(row.slice())
      const id = sampleToken(row, sampling, out, rng)
      out.push(id)
      if (params.onToken?.(id, i) === 'stop') {
        finishReason = 'stop'
        break
      }
      if (eos.has(id)) {
        finishReason = 'eos'
        break
      }
      if (i + 1 === maxNewTokens) break
      logits = await step([id], false)
      row = logits.subarray(logits.length - vocab)
    }
    const decodeSteps = Math.max(0, out.length - 1)
    return {
      outputIds: out,
      finishReason,
      prefillMs,
      decodeMsPerToken: decodeSteps ? (performance.now() - decodeStart) / decodeSteps : 0,
      prefillLogits,
      decodeLogits: params.keepLogits ? decodeLogits : undefined,
    }
  } finally {
    for (const s of stages) s.drop(sessionId)
  }
}
