import type { IncomingMessage, ServerResponse } from 'node:http'
import type { z } from 'zod'
import type { Logger } from '../../../shared/logger.ts'
import {
  metricsBodySchema,
  readyBodySchema,
  registerBodySchema,
  type MetricsResponse,
  type PipelineEventData,
  type PipelineEventName,
  type ReadyResponse,
  type RegisterResponse,
  type Topology,
} from '../../../shared/oracle/plumiseSchemas.ts'
import { javascriptMessage, metricsMessage, readyMessage, recoverPlumiseSigner, registerMessage } from '../../../shared/oracle/plumiseSigning.ts'
import { UnknownModelError, UnknownNodeError, type OracleCore, type OracleCoreEvents } from '../createOracleCore.ts'
import type { OracleStore } from '../store/oracleStore.ts'
import { inferenceProofHash } from '../../../shared/chain/proofHash.ts'
import type { RateLimiter } from '../rateLimiter.ts'
import { WalletBindingUnavailableError } from '../rewards/walletBindings.ts'

/** Why a request was refused: the key of the refusal counters. */
export type RefusalReason =
  | 'not_found'
  | 'too_large'
  | 'bad_json'
  | 'invalid_body'
  | 'same_endpoints'
  | 'unknown_model'
  | 'unknown_node'
  | 'binding_unavailable'
  | 'stale_timestamp'
  | 'replayed_timestamp'
  | 'bad_signature'
  | 'signer_mismatch'
  | 'proof_mismatch'
  | 'rate_limited_ip'
  | 'rate_limited_address'
  | 'rate_limited_bandwidth'
  | 'too_many_subscribers'
  | 'internal'

/** A refusal: the status and message the client gets, the reason it is counted under. */
export class OracleHttpError extends Error {
  readonly status: number
  readonly reason: RefusalReason

  constructor(status: number, reason: RefusalReason, message: string) {
    super(message)
    this.status = status
    this.reason = reason
    this.name = 'OracleHttpError'
  }
}

/** The spec says every error of these routes is HTTP 400 with a message. */
const bad = (reason: RefusalReason, message: string) => new OracleHttpError(400, reason, message)

export type PlumiseRoutesInit = {
  core: OracleCore
  store: OracleStore
  logger: Logger
  /** Per verified address (so nobody drains another's bucket with unsigned junk). */
  addressLimiter: RateLimiter
  /** Accepted clock skew of signed timestamps, seconds. @default 60 */
  timestampWindowS?: number
}

export type PlumiseRoutes = {
  register(body: unknown): Promise<RegisterResponse>
  ready(body: unknown): Promise<ReadyResponse>
  reportMetrics(body: unknown): Promise<MetricsResponse>
  topology(query: URLSearchParams): Topology
  /** `GET /api/v1/pipeline/events?model=`: Server-Sent Events until the client goes away. */
  events(query: URLSearchParams, req: IncomingMessage, res: ServerResponse): void
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body)
  if (r.success) return r.data
  const issue = r.error.issues[0]!
  throw bad('invalid_body', `${issue.path.join('.') || 'body'}: ${issue.message}`)
}

/**
 * The Plumise Oracle API (spec/plumise.md §3) over the Oracle core: EIP-191 signatures over the
 * exact strings the Python agent signs (and JSON.stringify's, as the upstream Oracle checks),
 * timestamps within the window and strictly increasing per address and endpoint (persisted).
 */
export function createPlumiseRoutes(init: PlumiseRoutesInit): PlumiseRoutes {
  const { core, store, logger } = init
  const windowS = init.timestampWindowS ?? 60

  const servedModel = (model: string) => {
    const served = core.models().map((m) => m.name)
    if (!served.includes(model)) throw bad('unknown_model', new UnknownModelError(model, served).message)
  }

  /** Window, signature, per-address rate, replay guard: in that order, the cheap checks first. */
  async function authenticate(p: { scope: 'register' | 'ready' | 'metrics'; address: string; timestamp: number; signature: string; messages: string[] }) {
    const nowS = Math.floor(core.now() / 1000)
    if (Math.abs(nowS - p.timestamp) > windowS) {
      throw bad('stale_timestamp', `Timestamp ${p.timestamp} is ${nowS - p.timestamp} s from the oracle's clock (${nowS}); allowed ±${windowS} s`)
    }
    const r = await recoverPlumiseSigner({ messages: p.messages, signature: p.signature, expected: p.address })
    if (!r.ok) {
      if (r.reason === 'malformed') throw bad('bad_signature', 'Invalid signature: not a recoverable 65-byte secp256k1 signature')
      throw bad('signer_mismatch', `Invalid signature: the message was signed by ${r.recovered}, not ${p.address}`)
    }
    const address = p.address.toLowerCase()
    if (!init.addressLimiter.take(address)) throw new OracleHttpError(429, 'rate_limited_address', `Too many requests from ${p.address}; slow down`)
    if (!(await store.acceptTimestamp(address, p.scope, p.timestamp))) {
      const last = await store.lastTimestamp(address, p.scope)
      throw bad('replayed_timestamp', `Replay detected: timestamp must be strictly increasing (got ${p.timestamp}, last accepted ${last})`)
    }
    return address
  }

  return {
    async register(raw) {
      const body = parse(registerBodySchema, raw)
      if (body.grpcEndpoint === body.httpEndpoint) throw bad('same_endpoints', 'Pipeline nodes must have separate gRPC and HTTP endpoints')
      servedModel(body.model)
      const signed = {
        address: body.address,
        grpcEndpoint: body.grpcEndpoint,
        httpEndpoint: body.httpEndpoint,
        model: body.model,
        ramMb: body.ramMb,
        device: body.device,
        vramMb: body.vramMb,
        timestamp: body.timestamp,
      }
      const id = await authenticate({ scope: 'register', address: body.address, timestamp: body.timestamp, signature: body.signature, messages: [registerMessage(signed), javascriptMessage(signed)] })
      const joined = await core.join({
        id,
        kind: 'plumise',
        model: body.model,
        grpcEndpoint: body.grpcEndpoint,
        httpEndpoint: body.httpEndpoint,
        ramMb: body.ramMb,
        vramMb: body.vramMb,
        device: body.device,
        benchmarkTokPerSec: body.benchmarkTokPerSec,
        peerId: body.peerId,
        multiaddrs: body.multiaddrs,
      })
      const r = joined.range
      logger.info({ address: id, model: body.model, range: r, isNew: joined.isNew }, 'plumise node registered')
      return {
        success: true,
        message: r ? 'Pipeline node registered successfully' : 'Pipeline node registered; no layers assigned for now (standby): poll the topology',
        layerStart: r?.start ?? 0,
        layerEnd: r?.end ?? 0,
        totalLayers: joined.totalLayers,
      }
    },

    async ready(raw) {
      const body = parse(readyBodySchema, raw)
      servedModel(body.model)
      const signed = { address: body.address, model: body.model, timestamp: body.timestamp }
      const id = await authenticate({ scope: 'ready', address: body.address, timestamp: body.timestamp, signature: body.signature, messages: [readyMessage(signed), javascriptMessage(signed)] })
      if (core.node(id)?.model !== body.model) throw bad('unknown_node', `Pipeline node not found: ${body.address} is not registered for "${body.model}"`)
      await core.ready(id)
      return { success: true, message: 'Pipeline node marked as ready' }
    },

    async reportMetrics(raw) {
      const body = parse(metricsBodySchema, raw)
      const agent = body.wallet.toLowerCase()
      for (const [i, p] of (body.proofs ?? []).entries()) {
        if (p.agentAddress && p.agentAddress.toLowerCase() !== agent) throw bad('proof_mismatch', `proofs.${i}.agentAddress ${p.agentAddress} is not the reporting wallet ${body.wallet}`)
        if (p.proofHash && p.proofHash.toLowerCase() !== inferenceProofHash({ ...p, agent })) {
          throw bad('proof_mismatch', `proofs.${i}.proofHash is not keccak256(modelHash ‖ inputHash ‖ outputHash ‖ agent)`)
        }
      }
      const signed = { agent: body.wallet, processed_tokens: body.tokensProcessed, timestamp: body.timestamp }
      await authenticate({
        scope: 'metrics',
        address: body.wallet,
        timestamp: body.timestamp,
        signature: body.signature,
        messages: [metricsMessage(signed), javascriptMessage(signed, { sortKeys: true })],
      })
      // Only nodes are booked, within what the Oracle observed of them (createOracleCore's BookingBounds).
      const r = await core
        .recordMetrics({
          agent,
          tokensProcessed: body.tokensProcessed,
          requestCount: body.requestCount,
          avgLatencyMs: body.avgLatencyMs,
          uptimeSeconds: body.uptimeSeconds,
          proofs: body.proofs,
        })
        .catch((e: unknown) => {
          if (e instanceof UnknownNodeError) throw bad('unknown_node', e.message)
          if (e instanceof WalletBindingUnavailableError) throw new OracleHttpError(503, 'binding_unavailable', e.message)
          throw e
        })
      return { success: true, message: 'Metrics recorded successfully', shouldReset: r.shouldReset }
    },

    topology(query) {
      const model = query.get('model')
      if (!model) throw bad('invalid_body', 'Model parameter is required')
      servedModel(model)
      return core.topology(model)
    },

    events(query, req, res) {
      const model = query.get('model') ?? undefined
      if (model !== undefined) servedModel(model)
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' })
      // A write after the stream ended would emit 'error' on the response: events racing the close are dropped.
      const open = () => !res.writableEnded && !res.destroyed
      const send = <N extends PipelineEventName>(event: N, data: PipelineEventData<N>) => {
        if (open() && (model === undefined || data.model === model)) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
      }
      // Start in sync: the current topology of each model subscribed to.
      for (const m of model === undefined ? core.models().map((x) => x.name) : [model]) send('pipeline:topology', { ...core.topology(m), timestamp: core.now() })
      const handlers: { [K in keyof OracleCoreEvents]?: (...args: OracleCoreEvents[K]) => void } = {
        topology: (d) => send('pipeline:topology', d),
        nodeStatus: (d) => send('pipeline:nodeStatus', d),
        nodeJoined: (d) => send('pipeline:nodeJoined', d),
        nodeLeft: (d) => send('pipeline:nodeLeft', d),
      }
      core.events.on('topology', handlers.topology!)
      core.events.on('nodeStatus', handlers.nodeStatus!)
      core.events.on('nodeJoined', handlers.nodeJoined!)
      core.events.on('nodeLeft', handlers.nodeLeft!)
      // Comments keep proxies and NATs from closing an idle stream.
      const keepAlive = setInterval(() => open() && res.write(': keep-alive\n\n'), 15_000)
      keepAlive.unref()
      const stop = () => {
        clearInterval(keepAlive)
        core.events.off('topology', handlers.topology!)
        core.events.off('nodeStatus', handlers.nodeStatus!)
        core.events.off('nodeJoined', handlers.nodeJoined!)
        core.events.off('nodeLeft', handlers.nodeLeft!)
      }
      req.once('close', stop)
      res.once('close', stop)
      res.once('finish', stop)
      res.on('error', (err) => logger.warn({ err: err.message }, 'event stream error'))
    },
  }
}
