import { randomUUID } from 'node:crypto'
import { createRng, sampleToken } from '../../shared/engine/sampling.ts'
import type { PlumiseClient } from './plumiseClient.ts'
import { resolvePlumiseParams, type PlumiseParams } from './plumiseParams.ts'
import { encodePlumiseHidden, type PlumiseDtype } from './plumiseTensor.ts'
import type { PrefixKvCache } from './prefixKvCache.ts'

/** A downstream node answered success=false (or could not be reached). */
export class PlumisePipelineError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PlumisePipelineError'
  }
}

export type PlumiseGenerateParameters = {
  /** The first node's layers (from 0), run through a prefix cache. */
  first: PrefixKvCache
  hiddenSize: number
  /** The next node and the endpoints after it, as upstream's topology orders them; empty when `first` holds every layer. */
  route: { client: PlumiseClient; endpoints: string[] } | undefined
  inputIds: number[]
  params?: PlumiseParams
  eosTokenIds: number[]
  /** The dtype the next node computes in (upstream: bfloat16). @default 'float32' */
  dtype?: PlumiseDtype
  /** Upstream names steps `<uuid hex>_s<step>`. @default a random uuid */
  requestId?: string
  requesterAddress?: string
  originalPrompt?: string
  onToken?: (id: number, index: number) => void
  signal?: AbortSignal
}

/**
 * What an upstream first node does per generation: every step it runs the whole sequence
 * through its layers (positions from 0) and calls ForwardPass on the next node, which answers
 * the next token after the nested calls return. Steps share a request id prefix, so nodes that
 * cache by it (ours) compute only the new positions.
 */
export async function plumiseGenerate(p: PlumiseGenerateParameters): Promise<{ ids: number[]; finishReason: 'eos' | 'length' }> {
  const { maxNewTokens, sampling } = resolvePlumiseParams(p.params)
  const uuid = p.requestId ?? randomUUID().replaceAll('-', '')
  const eos = new Set(p.eosTokenIds)
  const ids: number[] = []
  const rng = createRng(0)
  for (let step = 0; step < maxNewTokens; step++) {
    p.signal?.throwIfAborted()
    const requestId = `${uuid}_s${step}`
    const out = await p.first.run(requestId, { tokens: [...p.inputIds, ...ids] })
    let token: number
    let isEos: boolean
    if (!p.route) {
      token = sampleToken(out.lastLogits!, sampling, ids, rng)
      isEos = eos.has(token)
    } else {
      const { client, endpoints } = p.route
      const res = await client.forwardPass(
        {
          requestId,
          ...encodePlumiseHidden(out.hidden!, p.hiddenSize, p.dtype ?? 'float32'),
          params: { ...p.params, maxNewTokens },
          metadata: {
            totalNodes: endpoints.length + 2,
            nodeIndex: 1,
            isLast: endpoints.length === 0,
            nextNodeEndpoint: endpoints[0] ?? '',
            requesterAddress: p.requesterAddress ?? '',
            originalPrompt: p.originalPrompt ?? '',
          },
          pastTokenIds: ids,
        },
        { signal: p.signal },
      ).catch((e: Error) => {
        throw new PlumisePipelineError(`${client.endpoint}: ${e.message}`)
      })
      if (!res.success) throw new PlumisePipelineError(`${client.endpoint}: ${res.error}`)
      token = res.nextTokenId
      isEos = res.isEos
    }
    if (isEos) return { ids, finishReason: 'eos' }
    ids.push(token)
    p.onToken?.(token, step)
  }
  return { ids, finishReason: 'length' }
}
