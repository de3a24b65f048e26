import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2'
import { create, type MessageInitShape } from '@bufbuild/protobuf'
import type { ConnectRouter } from '@connectrpc/connect'
import { connectNodeAdapter } from '@connectrpc/connect-node'
import { createRng, sampleToken } from '../../shared/engine/sampling.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createTextStream } from '../../shared/engine/textStream.ts'
import type { TextTokenizer } from '../../shared/model/tokenizer.ts'
import { silentLogger, type Logger } from '../../shared/logger.ts'
import { ForwardResponseSchema, InferencePipeline, type ForwardRequest, type ForwardResponse, type TokenChunkSchema } from '../../proto/gen/inference_pb.js'
import { createPlumiseClient, HTTP2_WINDOW, PLUMISE_DEADLINES, type PlumiseClient } from './plumiseClient.ts'
import { plumiseGenerate } from './plumiseGenerate.ts'
import { resolvePlumiseParams } from './plumiseParams.ts'
import { decodePlumiseHidden, encodePlumiseHidden, PLUMISE_MAX_MESSAGE_BYTES } from './plumiseTensor.ts'
import { createPrefixKvCache, type PrefixKvCache } from './prefixKvCache.ts'

export type PlumiseServerInit = {
  /** The shard served now (undefined while none is loaded); it may change while the server runs. */
  shard: () => ShardSession | undefined
  /** Model name answered by Ping and GetLayerInfo. */
  model: string
  /** This agent's address answered by Ping. */
  address: string
  /**
   * The node after this one in the Plumise topology (`host:port` or `http://host:port`). Like
   * upstream, a middle node forwards there when a request's `next_node_endpoint` is set, and
   * never dials an endpoint named by the caller.
   */
  next?: () => string | undefined
  /** Endpoints after `next`, for the metadata of streams this node starts as a first node. */
  after?: () => string[]
  /** Token text for ForwardPassStream and `generated_text`; streams from a first node need it. */
  tokenizer?: TextTokenizer
  eosTokenIds: number[]
  /** Keep a KV cache per request id prefix. @default true */
  cache?: boolean
  port?: number
  /** @default '127.0.0.1' */
  host?: string
  logger?: Logger
}

/** A request this node cannot serve: answered as success=false with the message. */
export class PlumiseRequestError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PlumiseRequestError'
  }
}

type Chunk = MessageInitShape<typeof TokenChunkSchema>

const hash32 = (s: string) => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/**
 * The Plumise InferencePipeline on gRPC (HTTP/2, 256 MiB messages) for this host's layer range.
 * Every failure is a ForwardResponse with success=false and an error, never a gRPC status.
 */
export async function createPlumiseServer(init: PlumiseServerInit) {
  const log = init.logger ?? silentLogger
  const startedAt = Date.now()
  const caches = new WeakMap<ShardSession, PrefixKvCache>()
  const clients = new Map<string, PlumiseClient>()
  let anonymous = 0
  const counters = { requests: 0, tokens: 0, computeMs: 0 }

  const cacheOf = (shard: ShardSession) => {
    let c = caches.get(shard)
    if (!c) caches.set(shard, (c = createPrefixKvCache({ shard, enabled: init.cache ?? true })))
    return c
  }
  const clientOf = (endpoint: string) => {
    let c = clients.get(endpoint)
    if (!c) clients.set(endpoint, (c = createPlumiseClient(endpoint)))
    return c
  }
  const current = () => {
    const s = init.shard()
    if (!s) throw new PlumiseRequestError('this node serves no layers yet')
    return s
  }

  /** ForwardPass: this node's layers, then the LM head (last node) or the next node (middle). */
  async function forward(req: ForwardRequest, signal: AbortSignal): Promise<MessageInitShape<typeof ForwardResponseSchema>> {
    const shard = current()
    const { spec, range } = shard
    const H = spec.hiddenSize
    if (range.start === 0) throw new PlumiseRequestError(`this node holds layers [0, ${range.end}) with the embeddings: it starts generations and takes no hidden states`)
    const isLast = range.end === spec.numLayers
    if (req.metadata?.isLast && !isLast) throw new PlumiseRequestError(`is_last is set but this node serves layers [${range.start}, ${range.end}) of ${spec.numLayers}`)
    const { values, dtype } = decodePlumiseHidden(req, H)
    const seq = values.length / H
    if (req.attentionMask.length) checkMask(req, seq)
    if (req.pastTokenIds.some((t) => t < 0 || t >= spec.vocabSize)) throw new PlumiseRequestError(`past_token_ids outside the vocabulary [0, ${spec.vocabSize})`)
    // A request without an id cannot be continued: computed in full under a private id, not kept.
    const requestId = req.requestId || `anonymous-${++anonymous}`
    const t0 = performance.now()
    const cache = cacheOf(shard)
    const out = await cache.run(requestId, { hidden: values }).finally(() => !req.requestId && cache.forget(requestId))
    counters.computeMs += performance.now() - t0
    counters.requests++
    counters.tokens += out.computed
    if (isLast) {
      const { sampling } = resolvePlumiseParams(req.params)
      const token = sampleToken(out.lastLogits!, sampling, req.pastTokenIds, createRng(hash32(req.requestId)))
      const isEos = init.eosTokenIds.includes(token)
      return { requestId: req.requestId, success: true, nextTokenId: token, isEos, numTokens: isEos ? 0 : 1, generatedText: isEos ? '' : (init.tokenizer?.decode([token]) ?? '') }
    }
    const tensor = encodePlumiseHidden(out.hidden!, H, dtype)
    if (!req.metadata?.nextNodeEndpoint) return { requestId: req.requestId, success: true, ...tensor }
    const next = init.next?.()
    if (!next) throw new PlumiseRequestError('next_node_endpoint is set but this node knows no next node')
    // Same metadata, as upstream; past_token_ids go on too (upstream drops them, losing the repetition penalty's scope).
    const res = await clientOf(next)
      .forwardPass({ ...req, ...tensor }, { timeoutMs: PLUMISE_DEADLINES.forwardFromMiddle, signal })
      .catch((e: Error) => {
        throw new PlumiseRequestError(`next node ${next}: ${e.message}`)
      })
    return res
  }

  function checkMask(req: ForwardRequest, seq: number): void {
    // Upstream reads the mask as float32; only "attend to everything" is meaningful for one unpadded sequence.
    const shape = req.attentionMaskShape.map(Number)
    const n = shape.reduce((a, b) => a * b, 1)
    if (n !== seq || req.attentionMask.length !== seq * 4) throw new PlumiseRequestError(`attention_mask of shape [${shape.join(', ')}] and ${req.attentionMask.length} bytes does not cover ${seq} positions as float32`)
    const mask = new Float32Array(new Uint8Array(req.attentionMask).buffer)
    if (mask.some((m) => m !== 1)) throw new PlumiseRequestError('attention masks other than all ones are not supported (one unpadded sequence per request)')
  }

  const failure = (req: ForwardRequest, e: unknown, t0: number): ForwardResponse => {
    const message = e instanceof Error ? e.message : String(e)
    log.warn({ requestId: req.requestId, err: message }, 'ForwardPass refused')
    return create(ForwardResponseSchema, { requestId: req.requestId, success: false, error: message, latencyMs: performance.now() - t0 })
  }

  async function* stream(req: ForwardRequest, signal: AbortSignal): AsyncGenerator<Chunk> {
    const requestId = req.requestId
    let shard: ShardSession
    try {
      shard = current()
    } catch (e) {
      return yield { requestId, isFinished: true, finishReason: `error: ${(e as Error).message}` }
    }
    if (shard.range.start !== 0) {
      // A later node makes one token per call: stream it as a one-token answer.
      const t0 = performance.now()
      const res = await forward(req, signal).then((r) => create(ForwardResponseSchema, r), (e: unknown) => failure(req, e, t0))
      if (!res.success) return yield { requestId, isFinished: true, finishReason: `error: ${res.error}` }
      // Same shape as a first node's stream: token chunks, then one finishing chunk with the reason.
      if (!res.isEos) yield { requestId, tokenId: res.nextTokenId, tokenText: res.generatedText }
      return yield { requestId, isFinished: true, finishReason: res.isEos ? 'eos' : 'length' }
    }
    // A first node runs the whole generation from the prompt and streams every token.
    const prompt = req.metadata?.originalPrompt ?? ''
    if (!init.tokenizer) return yield { requestId, isFinished: true, finishReason: 'error: this node has no tokenizer' }
    if (!prompt) return yield { requestId, isFinished: true, finishReason: 'error: metadata.original_prompt is empty' }
    const isAlsoLast = shard.range.end === shard.spec.numLayers
    const next = init.next?.()
    if (!isAlsoLast && !next) return yield { requestId, isFinished: true, finishReason: 'error: this node knows no next node' }
    const text = createTextStream(init.tokenizer)
    const queue: Chunk[] = []
    let wake: (() => void) | undefined
    let done: { finishReason: string } | undefined
    void plumiseGenerate({
      first: cacheOf(shard),
      hiddenSize: shard.spec.hiddenSize,
      route: isAlsoLast ? undefined : { client: clientOf(next!), endpoints: init.after?.() ?? [] },
      inputIds: init.tokenizer.encode(prompt),
      params: req.params,
      eosTokenIds: init.eosTokenIds,
      dtype: (['float32', 'float16', 'bfloat16'] as const).find((d) => d === req.dtype) ?? 'float32',
      requestId: requestId || undefined,
      originalPrompt: prompt,
      requesterAddress: req.metadata?.requesterAddress,
      signal,
      onToken: (id) => {
        queue.push({ requestId, tokenId: id, tokenText: text.push(id) })
        wake?.()
      },
    }).then(
      (r) => (done = { finishReason: r.finishReason }),
      (e: Error) => (done = { finishReason: `error: ${e.message}` }),
    ).finally(() => wake?.())
    for (;;) {
      while (queue.length) yield queue.shift()!
      if (done) break
      await new Promise<void>((resolve) => (wake = resolve))
      wake = undefined
    }
    yield { requestId, tokenText: text.flush(), isFinished: true, finishReason: done.finishReason }
  }

  const routes = (router: ConnectRouter) =>
    router.service(InferencePipeline, {
      async forwardPass(req, ctx) {
        const t0 = performance.now()
        try {
          const res = create(ForwardResponseSchema, await forward(req, ctx.signal))
          // A forwarded answer keeps the downstream latency; our own answers report ours.
          if (!res.latencyMs) res.latencyMs = performance.now() - t0
          return res
        } catch (e) {
          return failure(req, e, t0)
        }
      },
      forwardPassStream: (req, ctx) => stream(req, ctx.signal),
      getLayerInfo() {
        const s = init.shard()
        return { modelName: init.model, layerStart: s?.range.start ?? 0, layerEnd: s?.range.end ?? 0, totalLayers: s?.spec.numLayers ?? 0, device: s?.device ?? '', isReady: !!s }
      },
      ping() {
        const s = init.shard()
        return { agentAddress: init.address, modelName: init.model, layerStart: s?.range.start ?? 0, layerEnd: s?.range.end ?? 0, isReady: !!s, uptimeSeconds: BigInt(Math.floor((Date.now() - startedAt) / 1000)) }
      },
    })

  const handler = connectNodeAdapter({ routes, grpc: true, grpcWeb: false, connect: false, readMaxBytes: PLUMISE_MAX_MESSAGE_BYTES, writeMaxBytes: PLUMISE_MAX_MESSAGE_BYTES })
  // Default HTTP/2 windows (64 KiB) cost a round trip per 64 KiB of hidden state: open them wide.
  const server: Http2Server = createServer({ settings: { initialWindowSize: HTTP2_WINDOW } }, handler)
  // close() waits for open HTTP/2 sessions; callers' pooled connections would hold it forever.
  const sessions = new Set<ServerHttp2Session>()
  server.on('session', (s) => {
    sessions.add(s)
    s.setLocalWindowSize(HTTP2_WINDOW)
    s.once('close', () => sessions.delete(s))
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(init.port ?? 0, init.host ?? '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const host = init.host ?? '127.0.0.1'
  log.info({ endpoint: `http://${host}:${port}` }, 'Plumise gRPC server listening')
  return {
    port,
    /** What to register with a Plumise Oracle as `grpcEndpoint`. */
    endpoint: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    counters: () => ({ ...counters }),
    cacheStats: () => {
      const s = init.shard()
      return s ? cacheOf(s).stats() : { hits: 0, misses: 0, entries: 0 }
    },
    async close(): Promise<void> {
      for (const c of clients.values()) c.close()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sessions) s.destroy()
      await closed
    },
  }
}

export type PlumiseServer = Awaited<ReturnType<typeof createPlumiseServer>>
