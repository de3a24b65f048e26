import type { z } from 'zod'
import {
  errorResponseSchema,
  metricsResponseSchema,
  pipelineEventSchemas,
  readyResponseSchema,
  registerResponseSchema,
  topologySchema,
  type InferenceProofBody,
  type MetricsResponse,
  type PipelineEvent,
  type PipelineEventName,
  type ReadyResponse,
  type RegisterResponse,
  type Topology,
} from './plumiseSchemas.ts'
import { metricsMessage, readyMessage, registerMessage, signPlumiseMessage, type PlumiseSigner } from './plumiseSigning.ts'

export type PlumiseOracleClientInit = {
  /** The Oracle, e.g. `http://localhost:3100` (ORACLE_API_URL). */
  baseUrl: string
  /** Signs the calls: a viem local account, or an address with a `personal_sign` function. */
  account: PlumiseSigner
  /** @default globalThis.fetch */
  fetch?: typeof fetch
  /** Clock, unix ms. @default Date.now */
  now?: () => number
}

export type RegisterParameters = {
  grpcEndpoint: string
  httpEndpoint: string
  model: string
  ramMb: number
  device: string
  vramMb: number
  benchmarkTokPerSec?: number
  /** shardmesh extensions (unsigned): the node's libp2p peer id and addresses. */
  peerId?: string
  multiaddrs?: string[]
  signal?: AbortSignal
}

export type ReportMetricsParameters = {
  /** Cumulative since the agent started; the Oracle takes deltas. */
  tokensProcessed: number
  avgLatencyMs: number
  uptimeSeconds: number
  requestCount: number
  proofs?: InferenceProofBody[]
  signal?: AbortSignal
}

export type PlumiseOracleClient = {
  readonly address: string
  register(params: RegisterParameters): Promise<RegisterResponse>
  ready(params: { model: string; signal?: AbortSignal }): Promise<ReadyResponse>
  topology(model: string, signal?: AbortSignal): Promise<Topology>
  reportMetrics(params: ReportMetricsParameters): Promise<MetricsResponse>
  /**
   * Follows the Oracle's live events for a model (all models when undefined) until `signal`
   * aborts or the stream ends; the first event is the current topology. Resolves when it ends.
   */
  subscribe(model: string | undefined, onEvent: (event: PipelineEvent) => void, signal?: AbortSignal): Promise<void>
}

/** The Oracle refused a call (its status and message), or answered something unexpected. */
export class OracleRequestError extends Error {
  readonly status: number

  constructor(status: number, message: string) {
    super(message)
    this.status = status
    this.name = 'OracleRequestError'
  }
}

/**
 * A client of the Plumise Oracle HTTP API, signing exactly as the upstream Python agent does.
 * Isomorphic (fetch and Web streams only). Timestamps are unix seconds, kept strictly
 * increasing per endpoint so that calls within one second are not refused as replays.
 */
export function createPlumiseOracleClient(init: PlumiseOracleClientInit): PlumiseOracleClient {
  const base = init.baseUrl.replace(/\/+$/, '')
  const doFetch = init.fetch ?? globalThis.fetch.bind(globalThis)
  const now = init.now ?? Date.now
  const address = init.account.address
  const last = new Map<string, number>()
  const timestamp = (scope: string) => {
    const t = Math.max(Math.floor(now() / 1000), (last.get(scope) ?? 0) + 1)
    last.set(scope, t)
    return t
  }

  async function call<T>(schema: z.ZodType<T>, path: string, init: RequestInit): Promise<T> {
    const res = await doFetch(`${base}${path}`, { ...init, headers: { Accept: 'application/json', ...(init.body ? { 'Content-Type': 'application/json' } : {}) } })
    const text = await res.text()
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      throw new OracleRequestError(res.status, `${path}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`)
    }
    if (!res.ok) {
      const err = errorResponseSchema.safeParse(body)
      throw new OracleRequestError(res.status, `${path}: HTTP ${res.status}: ${err.success ? err.data.message : text.slice(0, 200)}`)
    }
    const parsed = schema.safeParse(body)
    if (!parsed.success) throw new OracleRequestError(res.status, `${path}: unexpected answer: ${parsed.error.issues[0]!.path.join('.')}: ${parsed.error.issues[0]!.message}`)
    return parsed.data
  }
  const post = <T>(schema: z.ZodType<T>, path: string, body: unknown, signal?: AbortSignal) => call(schema, path, { method: 'POST', body: JSON.stringify(body), signal })

  return {
    address,
    async register(p) {
      const signed = { address, grpcEndpoint: p.grpcEndpoint, httpEndpoint: p.httpEndpoint, model: p.model, ramMb: p.ramMb, device: p.device, vramMb: p.vramMb, timestamp: timestamp('register') }
      const signature = await signPlumiseMessage(init.account, registerMessage(signed))
      const extra = { benchmarkTokPerSec: p.benchmarkTokPerSec, peerId: p.peerId, multiaddrs: p.multiaddrs }
      return post(registerResponseSchema, '/api/v1/pipeline/register', { ...signed, signature, ...extra }, p.signal)
    },
    async ready(p) {
      const signed = { address, model: p.model, timestamp: timestamp('ready') }
      const signature = await signPlumiseMessage(init.account, readyMessage(signed))
      return post(readyResponseSchema, '/api/v1/pipeline/ready', { ...signed, signature }, p.signal)
    },
    topology(model, signal) {
      return call(topologySchema, `/api/v1/pipeline/topology?model=${encodeURIComponent(model)}`, { method: 'GET', signal })
    },
    async reportMetrics(p) {
      const ts = timestamp('metrics')
      const signature = await signPlumiseMessage(init.account, metricsMessage({ agent: address, processed_tokens: p.tokensProcessed, timestamp: ts }))
      const body = { wallet: address, tokensProcessed: p.tokensProcessed, avgLatencyMs: p.avgLatencyMs, uptimeSeconds: p.uptimeSeconds, requestCount: p.requestCount, timestamp: ts, signature, proofs: p.proofs }
      return post(metricsResponseSchema, '/api/v1/metrics/report', body, p.signal)
    },
    async subscribe(model, onEvent, signal) {
      const query = model === undefined ? '' : `?model=${encodeURIComponent(model)}`
      let res: Response
      try {
        res = await doFetch(`${base}/api/v1/pipeline/events${query}`, { headers: { Accept: 'text/event-stream' }, signal })
      } catch (e) {
        if (signal?.aborted) return
        throw e
      }
      if (!res.ok || !res.body) {
        const text = await res.text()
        throw new OracleRequestError(res.status, `/api/v1/pipeline/events: HTTP ${res.status}: ${text.slice(0, 200)}`)
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      let buffer = ''
      const dispatch = (block: string) => {
        let event = 'message'
        const data: string[] = []
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue
          const colon = line.indexOf(':')
          const field = colon < 0 ? line : line.slice(0, colon)
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
          if (field === 'event') event = value
          else if (field === 'data') data.push(value)
        }
        if (!data.length || !(event in pipelineEventSchemas)) return
        const name = event as PipelineEventName
        const parsed = pipelineEventSchemas[name].safeParse(JSON.parse(data.join('\n')))
        if (!parsed.success) throw new OracleRequestError(200, `event ${name}: unexpected data: ${parsed.error.issues[0]!.message}`)
        onEvent({ event: name, data: parsed.data } as PipelineEvent)
      }
      try {
        for (;;) {
          const { value, done } = await reader.read()
          if (done) return
          buffer = (buffer + value).replace(/\r\n?/g, '\n')
          let end: number
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            dispatch(buffer.slice(0, end))
            buffer = buffer.slice(end + 2)
          }
        }
      } catch (e) {
        if (signal?.aborted) return
        throw e
      } finally {
        reader.releaseLock()
      }
    },
  }
}
