import type { TextTokenizer } from '../model/tokenizer.ts'
import { generate, type GenerateParameters, type GenerateResult, type ShardStage } from './generate.ts'
import type { SamplingParams } from './sampling.ts'
import { createTextStream } from './textStream.ts'

export type TextRequest = {
  prompt: string
  maxNewTokens: number
  sampling?: SamplingParams
  /** Generation ends before the first occurrence of any of these; they are not returned. */
  stop?: string[]
  /** Receives the text as it is generated (never past a stop sequence). */
  onText?: (piece: string) => void
  /**
   * Told of each forward step as the origin sees it: positions computed (the prompt for the
   * prefill, then 1) and the time from the previous token (or the start) to this one.
   */
  onStep?: (step: { prefill: boolean; positions: number; ms: number }) => void
  signal?: AbortSignal
}

export type TextResult = {
  text: string
  outputIds: number[]
  promptTokens: number
  finishReason: 'length' | 'eos' | 'stop'
  latencyMs: number
}

export type GeneratorMetrics = {
  totalTokensProcessed: number
  totalRequests: number
  totalLatencyMs: number
}

/** Text in, text out over a pipeline of shard stages: the origin side of a generation. */
export type TextGenerator = {
  readonly tokenizer: TextTokenizer
  generateText(request: TextRequest): Promise<TextResult>
  metrics(): GeneratorMetrics
}

/** A prompt that encodes to no tokens (an empty string): the caller's mistake, not the generator's. */
export class EmptyPromptError extends RangeError {
  constructor() {
    super('the prompt encodes to no tokens')
    this.name = 'EmptyPromptError'
  }
}

/** Runs token ids through a pipeline: in-process stages, or a route of peers. */
export type GenerationRunner = (params: Omit<GenerateParameters, 'stages'>) => Promise<Pick<GenerateResult, 'outputIds' | 'finishReason'>>

/** A runner over shard stages in this process. */
export const stagesRunner = (stages: () => ShardStage[]): GenerationRunner => (params) => generate({ ...params, stages: stages() })

export type CreateTextGeneratorParameters = {
  tokenizer: TextTokenizer
  run: GenerationRunner
  eosTokenIds: number[]
  /** Told of every finished generation (proofs of work are made from it); what it throws is ignored. */
  onGenerated?: (request: TextRequest, result: TextResult) => void
}

export function createTextGenerator(params: CreateTextGeneratorParameters): TextGenerator {
  const { tokenizer } = params
  const totals: GeneratorMetrics = { totalTokensProcessed: 0, totalRequests: 0, totalLatencyMs: 0 }
  return {
    tokenizer,
    metrics: () => ({ ...totals }),
    async generateText(req) {
      const t0 = performance.now()
      const inputIds = tokenizer.encode(req.prompt)
      if (inputIds.length === 0) throw new EmptyPromptError()
      const stops = (req.stop ?? []).filter((s) => s.length > 0)
      const holdBack = stops.length ? Math.max(...stops.map((s) => s.length)) - 1 : 0
      const stream = createTextStream(tokenizer)
      let sent = 0
      let cut: number | null = null
      let stepAt = t0
      let firstStep = true
      const emit = (upTo: number) => {
        if (upTo > sent) req.onText?.(stream.text().slice(sent, upTo))
        sent = Math.max(sent, upTo)
      }
      const result = await params.run({
        inputIds,
        maxNewTokens: req.maxNewTokens,
        sampling: req.sampling,
        eosTokenIds: params.eosTokenIds,
        signal: req.signal,
        onToken: (id) => {
          if (req.onStep) {
            const t = performance.now()
            req.onStep({ prefill: firstStep, positions: firstStep ? inputIds.length : 1, ms: t - stepAt })
            stepAt = t
            firstStep = false
          }
          stream.push(id)
          const text = stream.text()
          for (const s of stops) {
            const at = text.indexOf(s, Math.max(0, sent - s.length))
            if (at >= 0 && (cut === null || at < cut)) cut = at
          }
          if (cut !== null) {
            emit(cut)
            return 'stop'
          }
          // Hold back what could still become a stop sequence, and a half-decoded character.
          const safe = text.endsWith('\uFFFD') ? text.length - 1 : text.length
          emit(Math.max(0, safe - holdBack))
          return undefined
        },
      })
      const full = stream.text()
      const text = cut !== null ? full.slice(0, cut) : full
      emit(text.length)
      const latencyMs = performance.now() - t0
      totals.totalRequests++
      totals.totalTokensProcessed += inputIds.length + result.outputIds.length
      totals.totalLatencyMs += latencyMs
      const done: TextResult = { text, outputIds: result.outputIds, promptTokens: inputIds.length, finishReason: result.finishReason, latencyMs }
      try {
        params.onGenerated?.(req, done)
      } catch {
        // an observer never fails the generation
      }
      return done
    },
  }
}
