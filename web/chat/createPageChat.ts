import type { AppConfig } from '../../shared/app/appConfig.ts'
import { createTextStream } from '../../shared/engine/textStream.ts'
import { httpModelSource } from '../../shared/model/modelSource.ts'
import { parseModelConfig } from '../../shared/model/modelSpec.ts'
import { loadTokenizer, type TextTokenizer } from '../../shared/model/tokenizer.ts'
import { sharedPageMesh } from '../mesh/sharedPageMesh.ts'

export type ChatSettings = { temperature: number; topP: number; maxTokens: number }

/** One hop of the route a generation took: which peer, which layers, its mean ms per decode step (from the token frames' timings). */
export type RouteHop = { peerId: string; start: number; end: number; ms: number | null; computeMs: number | null; self: boolean }

export type ChatReply = {
  text: string
  tokenIds: number[]
  promptIds: number[]
  route: RouteHop[]
  failovers: number
  /** Wall time from sending to the last token, ms. */
  ms: number
  /** Decode tokens/s: tokens after the first over the time after the first. */
  tokensPerSecond: number | null
  finishReason: 'length' | 'eos' | 'stop'
}

export type PageChat = {
  /** Streams a completion of `prompt`, this page as the origin: tokens come back over libp2p. */
  complete(prompt: string, settings: ChatSettings, onText: (text: string, tokenId: number) => void, signal?: AbortSignal): Promise<ChatReply>
}

/**
 * The page as an origin, without React: tokenizes here, plans a route over the peers the page
 * knows (hosts and pages from the Oracle's topology), runs the generation over the mesh and streams
 * the decoded text.
 */
export function createPageChat(config: AppConfig, model: string): PageChat {
  let prepared: Promise<{ tokenizer: TextTokenizer; eos: number[] }> | undefined
  const prepare = () => {
    prepared ??= (async () => {
      const url = config.models.find((m) => m.name === model)?.url
      if (!url) throw new Error(`the network does not serve "${model}"`)
      const source = httpModelSource({ baseUrl: new URL(url, location.href).href, name: model })
      const [tokenizer, spec] = await Promise.all([loadTokenizer(source), source.readText('config.json').then(parseModelConfig)])
      return { tokenizer, eos: spec.eosTokenIds }
    })()
    prepared.catch(() => (prepared = undefined))
    return prepared
  }
  return {
    async complete(prompt, settings, onText, signal) {
      const [{ tokenizer, eos }, mesh] = await Promise.all([prepare(), sharedPageMesh(config, model)])
      const inputIds = tokenizer.encode(prompt)
      const stream = createTextStream(tokenizer)
      const t0 = performance.now()
      let tFirst: number | undefined
      // Per hop: summed total and compute ms over decode steps (the prefill is not a per-token cost).
      const hopMs = new Map<string, { total: number; compute: number; n: number }>()
      // The mesh peer's origin runner: it asks the peers again first when what is known has no
      // route (a page that just joined, a moved range), and before each re-plan after a failure.
      const r = await mesh.generate({
        inputIds,
        maxNewTokens: settings.maxTokens,
        sampling: { temperature: settings.temperature, topP: settings.topP, seed: Math.floor(Math.random() * 2 ** 31) },
        eosTokenIds: eos,
        signal,
        onToken: (id, index, timings) => {
          tFirst ??= performance.now()
          if (index > 0)
            for (const t of timings) {
              const h = hopMs.get(t.peerId) ?? { total: 0, compute: 0, n: 0 }
              hopMs.set(t.peerId, { total: h.total + t.totalMs, compute: h.compute + t.computeMs, n: h.n + 1 })
            }
          if (!eos.includes(id)) onText(stream.push(id), id)
        },
      })
      const tEnd = performance.now()
      onText(stream.flush(), -1)
      const peers = new Map(mesh.table.peers().map((p) => [p.peerId, p]))
      const lastRoute = r.routes.at(-1) ?? []
      const route = lastRoute.map((peerId): RouteHop => {
        const p = peers.get(peerId)
        const h = hopMs.get(peerId)
        return { peerId, start: p?.start ?? -1, end: p?.end ?? -1, ms: h ? h.total / h.n : null, computeMs: h ? h.compute / h.n : null, self: peerId === mesh.peerId }
      })
      const after = r.outputIds.length - 1
      return {
        text: stream.text(),
        tokenIds: r.outputIds,
        promptIds: inputIds,
        route,
        failovers: r.failovers,
        ms: tEnd - t0,
        tokensPerSecond: tFirst !== undefined && after > 0 ? (after * 1000) / Math.max(1, tEnd - tFirst) : null,
        finishReason: r.finishReason,
      }
    },
  }
}
