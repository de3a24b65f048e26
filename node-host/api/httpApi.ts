import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import { z } from 'zod'
import { renderChat } from '../../shared/model/chatTemplate.ts'
import { ShardInputError } from '../../shared/engine/shardSession.ts'
import { NoRouteError } from '../../shared/mesh/planRoute.ts'
import { EmptyPromptError, type TextGenerator, type TextRequest, type TextResult } from '../../shared/engine/textGenerator.ts'
import type { Logger } from '../logger.ts'
import { createFairQueue, SaturatedError } from './fairQueue.ts'
import type { HostMetrics } from '../metrics/hostMetrics.ts'
import { guardListener } from '../net/guardListener.ts'
import { BadRequestTargetError, parseRequestTarget } from '../net/requestTarget.ts'

/** The layer range this host serves (start = end when it holds none yet). */
export type HttpApiLayers = { start: number; end: number; total: number }

export type HttpApiInit = {
  /** Model name on the wire (folder name or Hub repository id). */
  model: string
  /** Agent address or peer id reported by /health. */
  address: string
  /** Layers this host serves. */
  layers: HttpApiLayers | (() => HttpApiLayers)
  /** Bearer token required on every route but /health (API_SECRET). */
  apiSecret?: string
  /** `tokenizer_config.json`, for the chat template. */
  tokenizerConfig?: Record<string, unknown>
  /** @default 1 MiB */
  maxBodyBytes?: number
  /** Generations running at once; past it a request waits in the fair queue, or gets 503 with `Retry-After` when there is none. @default 4 */
  maxConcurrentGenerations?: number
  /**
   * Requests that wait for a generation slot, all clients together, handed slots in turn per client
   * (remote address); past it (or past a client's share) 429 with `Retry-After`. 0: no queue, a
   * request past the slots gets 503 at once. @default 0
   */
  maxQueuedGenerations?: number
  /** Requests one client may have waiting. @default half of maxQueuedGenerations, at least 1 */
  maxQueuedPerClient?: number
  /**
   * Deadline of a generation request, waiting included: a request still waiting then gets 429 with
   * `Retry-After`; a generation still running is stopped (504, or an error event when streaming).
   * A request's `X-Deadline-Ms` header may shorten it. @default 300_000
   */
  requestDeadlineMs?: number
  /** `Retry-After` (s) of the 503 a generation gets when no route covers the model's layers. @default 5 */
  noRouteRetryAfterS?: number
}

export type HttpApiComponents = {
  logger: Logger
  /** The generator once the model is loaded; null while loading (requests get 503). */
  generator: () => TextGenerator | null
  /** The peers serving the model, for /api/v1/pipeline/status (absent: a single process). */
  topology?: () => Array<{ address: string; multiaddrs: string[]; layerStart: number; layerEnd: number; grpcEndpoint?: string; httpEndpoint?: string; ready?: boolean }>
  /** Prometheus metrics: served at `GET /metrics` (behind the bearer token like every route but /health) and fed by each generation. */
  metrics?: HostMetrics
}

class HttpError extends Error {
  readonly status: number
  /** Headers sent with the error answer (`Retry-After`, `Connection: close`). */
  readonly headers: Record<string, string>

  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.headers = headers
  }
}

// Plumise agent API: POST /api/v1/generate.
const plumiseGenerateSchema = z.object({
  inputs: z.string().min(1),
  parameters: z
    .object({
      max_new_tokens: z.number().int().min(1).max(4096).default(128),
      temperature: z.number().min(0).max(2).default(0.7),
      top_p: z.number().min(0).max(1).default(0.9),
      repetition_penalty: z.number().min(1).max(2).default(1.2),
      do_sample: z.boolean().default(true),
    })
    .strict()
    .default({ max_new_tokens: 128, temperature: 0.7, top_p: 0.9, repetition_penalty: 1.2, do_sample: true }),
  stream: z.boolean().default(false),
})

const openAiCommon = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(1).max(4096).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  stream: z.boolean().nullish(),
  n: z.literal(1).nullish(),
  frequency_penalty: z.number().nullish(),
  presence_penalty: z.number().nullish(),
  user: z.string().nullish(),
}
const completionSchema = z.object({ ...openAiCommon, prompt: z.union([z.string(), z.array(z.string()).length(1)]) })
const chatSchema = z.object({
  ...openAiCommon,
  max_completion_tokens: z.number().int().min(1).max(4096).nullish(),
  messages: z
    .array(
      z.object({
        role: z.enum(['system', 'user', 'assistant', 'tool', 'developer']),
        content: z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() }))]),
      }),
    )
    .min(1),
})

/**
 * Reads a JSON body of at most `limit` bytes without holding more: a declared Content-Length over
 * it is refused before reading; a body that grows past it is drained unstored (so the client reads
 * the 413 rather than a reset) up to 16× the limit, and cut off there.
 */
async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () => new HttpError(413, `request body over ${limit} bytes`, { Connection: 'close' })
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > 16 * limit) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  let over = declared > limit
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) over = true
    // Leaving the loop destroys the request: the client may see a reset rather than the 413.
    if (size > 16 * limit) throw tooLarge()
    if (!over) chunks.push(chunk as Buffer)
  }
  if (over) throw tooLarge()
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'request body is not valid JSON')
  }
}

/** `application/json`, with or without parameters: anything else could be a cross-site `text/plain` form post. */
const isJson = (contentType: string | undefined) => /^application\/json\s*(;|$)/i.test(contentType?.trim() ?? '')

/** Connections that arrive on a loopback address: only a loopback name in `Host` is this machine (DNS rebinding sends the attacker's name). */
const LOOPBACK_ADDRESS = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/
const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i

/** Equal-length digests, compared in constant time: the time taken says nothing about the secret. */
const digest = (s: string) => createHash('sha256').update(s).digest()
const sameSecret = (given: string, expected: string) => timingSafeEqual(digest(given), digest(expected))

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body)
  if (!r.success) {
    const issue = r.error.issues[0]!
    throw new HttpError(400, `${issue.path.join('.') || 'body'}: ${issue.message}`)
  }
  return r.data
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

function startSse(res: ServerResponse): (data: unknown) => void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' })
  // Tokens that race the client's leaving are dropped (a write after the end would emit 'error').
  return (data) => void (!res.writableEnded && !res.destroyed && res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`))
}

let idCounter = 0
const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}${(idCounter++).toString(36)}`
const openAiFinish = (r: TextResult) => (r.finishReason === 'length' ? 'length' : 'stop')

/**
 * The agent's HTTP API: Plumise (`/health`, `/api/v1/generate` with Server-Sent Events,
 * `/api/v1/pipeline/status`, `/api/v1/metrics`) and OpenAI (`/v1/models`, `/v1/completions`,
 * `/v1/chat/completions`, streaming and not).
 */
export function createHttpApi(init: HttpApiInit, components: HttpApiComponents): RequestListener {
  const { logger } = components
  const started = Date.now()
  const limit = init.maxBodyBytes ?? 1 << 20
  const maxGenerations = init.maxConcurrentGenerations ?? 4
  const maxQueued = init.maxQueuedGenerations ?? 0
  const deadlineMs = init.requestDeadlineMs ?? 300_000
  const queue = createFairQueue({ slots: maxGenerations, maxQueued, maxQueuedPerClient: init.maxQueuedPerClient ?? Math.max(1, Math.floor(maxQueued / 2)) })
  let generating = 0
  const uptime = () => Math.floor((Date.now() - started) / 1000)
  const layers = () => (typeof init.layers === 'function' ? init.layers() : init.layers)
  const isFull = () => layers().start === 0 && layers().end === layers().total
  const ready = () => {
    const g = components.generator()
    if (!g) throw new HttpError(503, 'model is loading')
    return g
  }

  const health = () => ({
    status: components.generator() ? 'ok' : 'loading',
    model: init.model,
    mode: isFull() ? 'single' : 'pipeline',
    address: init.address,
    uptime: uptime(),
    layers: layers(),
  })

  const metrics = () => {
    const m = components.generator()?.metrics() ?? { totalTokensProcessed: 0, totalRequests: 0, totalLatencyMs: 0 }
    return {
      total_tokens_processed: m.totalTokensProcessed,
      total_requests: m.totalRequests,
      total_latency_ms: Math.round(m.totalLatencyMs),
      avg_latency_ms: m.totalRequests ? Math.round(m.totalLatencyMs / m.totalRequests) : 0,
      uptime_seconds: uptime(),
      tokens_per_second: m.totalLatencyMs ? m.totalTokensProcessed / (m.totalLatencyMs / 1000) : 0,
    }
  }

  /** Runs a request; streams through `onText` when given; aborts when the client goes away or `signal` (the deadline) fires. */
  const run = async (req: IncomingMessage, request: Omit<TextRequest, 'signal'>, api: 'plumise' | 'openai', signal: AbortSignal) => {
    const abort = new AbortController()
    req.once('close', () => abort.abort(new Error('client closed the connection')))
    const m = components.metrics
    try {
      const r = await ready().generateText({ ...request, signal: AbortSignal.any([abort.signal, signal]), onStep: m && ((step) => m.recordStep(step)) })
      m?.recordGeneration(api, { promptTokens: r.promptTokens, completionTokens: r.outputIds.length, ok: true })
      return r
    } catch (e) {
      m?.recordGeneration(api, { promptTokens: 0, completionTokens: 0, ok: false })
      throw e
    }
  }

  /**
   * Holds one of the generation slots for `work` (taken once the body is read and valid, so slow
   * uploads hold none); when all are taken, 503 with `Retry-After` before anything is sent.
   */
  const withSlot = async (req: IncomingMessage, res: ServerResponse, work: (signal: AbortSignal) => Promise<void>) => {
    // A client may ask for a shorter deadline than the API's (`X-Deadline-Ms`), never a longer one.
    const asked = Number(req.headers['x-deadline-ms'])
    const ms = Number.isFinite(asked) && asked > 0 ? Math.min(asked, deadlineMs) : deadlineMs
    // A timer cleared when the request ends: AbortSignal.timeout inside AbortSignal.any kept each
    // request's signal chain alive for the whole deadline (5 min) after the request had ended.
    const expiry = new AbortController()
    const timer = setTimeout(() => expiry.abort(new DOMException(`the ${ms} ms deadline passed`, 'TimeoutError')), ms)
    timer.unref()
    const deadline = expiry.signal
    const left = new AbortController()
    res.once('close', () => res.writableFinished || left.abort(new Error('client closed the connection')))
    const signal = AbortSignal.any([deadline, left.signal])
    let release: () => void
    try {
      if (maxQueued === 0) {
        if (generating >= maxGenerations) throw new HttpError(503, `busy: ${generating} generations running; retry later`, { 'Retry-After': '1' })
        release = () => undefined
      } else {
        try {
          release = await queue.acquire(req.socket.remoteAddress ?? '', signal)
        } catch (e) {
          if (deadline.aborted) throw new SaturatedError(`saturated: no generation slot within the ${ms} ms deadline; retry later`, queue.retryAfterS())
          throw e
        }
      }
      generating++
      components.metrics?.setActiveGenerations(generating)
      try {
        await work(signal)
      } catch (e) {
        if (deadline.aborted) throw new HttpError(504, `the ${ms} ms deadline passed before the generation ended`)
        throw e
      } finally {
        generating--
        components.metrics?.setActiveGenerations(generating)
        release()
      }
    } finally {
      clearTimeout(timer)
    }
  }

  async function plumiseGenerate(req: IncomingMessage, res: ServerResponse) {
    const body = parse(plumiseGenerateSchema, await readJson(req, limit))
    const p = body.parameters
    const request = {
      prompt: body.inputs,
      maxNewTokens: p.max_new_tokens,
      sampling: { temperature: p.temperature, topP: p.top_p, repetitionPenalty: p.repetition_penalty, doSample: p.do_sample, seed: Math.floor(Math.random() * 2 ** 31) },
    }
    return withSlot(req, res, async (signal) => {
      if (!body.stream) {
        const r = await run(req, request, 'plumise', signal)
        return sendJson(res, 200, { generated_text: r.text, num_tokens: r.outputIds.length, latency_ms: Math.round(r.latencyMs) })
      }
      ready()
      const send = startSse(res)
      try {
        await run(req, { ...request, onText: (token) => send({ token }) }, 'plumise', signal)
        send('[DONE]')
      } catch (e) {
        send({ error: (e as Error).message })
      }
      res.end()
    })
  }

  async function openAi(req: IncomingMessage, res: ServerResponse, kind: 'completion' | 'chat') {
    const raw = await readJson(req, limit)
    const body = kind === 'chat' ? parse(chatSchema, raw) : parse(completionSchema, raw)
    if (body.model && body.model !== init.model) throw new HttpError(404, `model "${body.model}" is not served here; this host serves "${init.model}"`)
    let prompt: string
    if ('messages' in body) {
      const messages = body.messages.map((m) => ({ role: m.role, content: typeof m.content === 'string' ? m.content : m.content.map((c) => c.text).join('') }))
      prompt = renderChat(messages, init.tokenizerConfig ?? {})
    } else {
      prompt = Array.isArray(body.prompt) ? body.prompt[0]! : body.prompt
    }
    const maxTokens = ('max_completion_tokens' in body ? body.max_completion_tokens : null) ?? body.max_tokens ?? (kind === 'chat' ? 256 : 16)
    const request = {
      prompt,
      maxNewTokens: maxTokens,
      sampling: { temperature: body.temperature ?? 1, topP: body.top_p ?? 1, seed: body.seed ?? Math.floor(Math.random() * 2 ** 31) },
      stop: body.stop == null ? undefined : Array.isArray(body.stop) ? body.stop : [body.stop],
    }
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl')
    const created = Math.floor(Date.now() / 1000)
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion'
    const usage = (r: TextResult) => ({ prompt_tokens: r.promptTokens, completion_tokens: r.outputIds.length, total_tokens: r.promptTokens + r.outputIds.length })
    return withSlot(req, res, async (signal) => {
      if (!body.stream) {
        const r = await run(req, request, 'openai', signal)
        const choice = kind === 'chat'
          ? { index: 0, message: { role: 'assistant', content: r.text }, finish_reason: openAiFinish(r), logprobs: null }
          : { index: 0, text: r.text, finish_reason: openAiFinish(r), logprobs: null }
        return sendJson(res, 200, { id, object, created, model: init.model, choices: [choice], usage: usage(r) })
      }
      ready()
      const send = startSse(res)
      const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion'
      const chunk = (payload: Record<string, unknown>, finish: string | null) =>
        send({ id, object: chunkObject, created, model: init.model, choices: [{ index: 0, ...payload, finish_reason: finish, logprobs: null }] })
      if (kind === 'chat') chunk({ delta: { role: 'assistant', content: '' } }, null)
      try {
        const r = await run(req, { ...request, onText: (text) => chunk(kind === 'chat' ? { delta: { content: text } } : { text }, null) }, 'openai', signal)
        chunk(kind === 'chat' ? { delta: {} } : { text: '' }, openAiFinish(r))
        send('[DONE]')
      } catch (e) {
        send({ error: { message: (e as Error).message, type: 'server_error' } })
      }
      res.end()
    })
  }

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void> | void> = {
    'GET /health': (_req, res) => sendJson(res, 200, health()),
    'POST /api/v1/generate': plumiseGenerate,
    'GET /api/v1/pipeline/status': (_req, res) => {
      const nodes = components.topology?.()
      const topology = nodes && {
        model: init.model,
        totalLayers: layers().total,
        nodes: [...nodes]
          .sort((a, b) => a.layerStart - b.layerStart)
          .map((n, i) => ({ address: n.address, grpcEndpoint: n.grpcEndpoint ?? '', httpEndpoint: n.httpEndpoint ?? '', multiaddrs: n.multiaddrs, layerStart: n.layerStart, layerEnd: n.layerEnd, pipelineOrder: i, ready: n.ready ?? true })),
      }
      sendJson(res, 200, { model: init.model, address: init.address, assignment: { ...layers(), is_full: isFull() }, topology: topology ?? null })
    },
    'GET /api/v1/metrics': (_req, res) => sendJson(res, 200, metrics()),
    'GET /metrics': async (_req, res) => {
      if (!components.metrics) throw new HttpError(404, 'no Prometheus metrics on this API')
      const { contentType, body } = await components.metrics.render()
      res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) })
      res.end(body)
    },
    'GET /v1/models': (_req, res) =>
      sendJson(res, 200, { object: 'list', data: [{ id: init.model, object: 'model', created: Math.floor(started / 1000), owned_by: 'shardmesh' }] }),
    'POST /v1/completions': (req, res) => openAi(req, res, 'completion'),
    'POST /v1/chat/completions': (req, res) => openAi(req, res, 'chat'),
  }

  return guardListener((req, res) => {
    let path: string
    try {
      path = parseRequestTarget(req.url).pathname
    } catch (e) {
      if (!(e instanceof BadRequestTargetError)) throw e
      logger.warn({ target: String(req.url).slice(0, 200) }, 'request refused: malformed target')
      return sendJson(res, 400, { error: e.message })
    }
    const route = Object.hasOwn(routes, `${req.method} ${path}`) ? routes[`${req.method} ${path}`] : undefined
    const isOpenAi = path.startsWith('/v1/')
    const fail = (status: number, message: string) => {
      if (res.headersSent) return void res.end()
      sendJson(res, status, isOpenAi ? { error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error' } } : { error: message })
    }
    if (!route) return fail(404, `no route ${req.method} ${path}`)
    if (req.socket.localAddress && LOOPBACK_ADDRESS.test(req.socket.localAddress) && req.headers.host !== undefined && !LOOPBACK_HOST.test(req.headers.host)) {
      logger.warn({ path, host: req.headers.host.slice(0, 200) }, 'request refused: a loopback connection naming another host (DNS rebinding?)')
      return fail(421, 'this API answers only to localhost, 127.0.0.1 or [::1] on a loopback connection')
    }
    if (init.apiSecret && path !== '/health') {
      const auth = req.headers.authorization
      if (!auth) return fail(401, 'missing bearer token')
      if (!sameSecret(auth, `Bearer ${init.apiSecret}`)) return fail(403, 'wrong bearer token')
    }
    if (req.method === 'POST' && !isJson(req.headers['content-type'])) return fail(415, 'request bodies must be Content-Type: application/json')
    Promise.resolve()
      .then(() => route(req, res))
      .catch((e: unknown) => {
        // An empty prompt or one past the model's positions is the client's mistake.
        // No route (the last copy of some layers lost, its repair not done in the wait): the client retries soon.
        if (e instanceof NoRouteError && !res.headersSent) res.setHeader('Retry-After', String(init.noRouteRetryAfterS ?? 5))
        // Saturated (the queue full, or no slot by the deadline): the client retries later.
        if (e instanceof SaturatedError && !res.headersSent) res.setHeader('Retry-After', String(e.retryAfterS))
        const status = e instanceof SaturatedError ? 429 : e instanceof HttpError ? e.status : e instanceof EmptyPromptError || e instanceof ShardInputError ? 400 : e instanceof NoRouteError ? 503 : 500
        if (status >= 500 && status !== 503 && status !== 504) logger.error({ err: e, path }, 'request failed')
        else logger.warn({ path, status, message: (e as Error).message }, 'request refused')
        if (e instanceof HttpError && !res.headersSent) for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v)
        fail(status, (e as Error).message)
      })
  }, logger)
}
