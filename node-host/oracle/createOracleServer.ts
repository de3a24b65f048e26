import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { EvidenceRefusedError, type VerifyLedger } from './verify/verifyLedger.ts'
import { join } from 'node:path'
import { answerClientErrors, guardListener } from '../net/guardListener.ts'
import { BadRequestTargetError, decodePathSegment, parseRequestTarget, type RequestTarget } from '../net/requestTarget.ts'
import { serveFile } from '../net/serveFile.ts'
import type { Logger } from '../../shared/logger.ts'
import type { OracleCore } from './createOracleCore.ts'
import type { OracleStore } from './store/oracleStore.ts'
import { OracleHttpError, createPlumiseRoutes, type RefusalReason } from './plumise/plumiseRoutes.ts'
import { createRateLimiter } from './rateLimiter.ts'
import { SERVED_PATH } from '../../shared/oracle/servedThroughput.ts'
import { BOOKED_PATH } from '../../shared/oracle/bookedWork.ts'
import { bookedWorkOf } from './rewards/bookedWork.ts'
import type { ServedLedger } from './rewards/servedLedger.ts'
import { streamServed } from './rewards/servedStream.ts'

export type OracleServerInit = {
  core: OracleCore
  store: OracleStore
  /** 0: any free port. */
  port: number
  /** @default '127.0.0.1' */
  host?: string
  logger: Logger
  /** Largest request body, bytes (413 past it). @default 64 KiB */
  maxBodyBytes?: number
  /** Largest metrics report body: up to 1000 proofs ride along. @default 1 MiB */
  maxMetricsBodyBytes?: number
  /** Spot-check evidence and peers' records (POST /api/v1/verify/evidence and /sample, GET /api/v1/verify/status). */
  verify?: VerifyLedger
  /** Per client IP, every request. @default { burst: 120, perSecond: 20 } */
  ipRateLimit?: { burst: number; perSecond: number }
  /** Per verified signer address, signed calls. @default { burst: 20, perSecond: 2 } */
  addressRateLimit?: { burst: number; perSecond: number }
  /** Event streams open at once, in all and per IP. @default { total: 1000, perIp: 32 } */
  maxSubscribers?: { total: number; perIp: number }
  /** Take the client IP from X-Forwarded-For (only behind a proxy you run). @default false */
  trustProxy?: boolean
  /** Accepted clock skew of signed timestamps, seconds. @default 60 */
  timestampWindowS?: number
  /**
   * Bytes of model files per client IP: a token bucket (a read larger than the burst is let through
   * when the bucket is full and leaves it in debt). Several `npm start` hosts on one machine load the
   * 7M model (~30 MB each) well inside the default. @default { burstBytes: 1 GiB, bytesPerSecond: 64 MiB }
   */
  modelBandwidth?: { burstBytes: number; bytesPerSecond: number }
  /** Models served from local folders, by wire name: their files are offered at `/models/<name>/<file>` (Range requests) so hosts elsewhere can load them. */
  modelFolders?: ReadonlyMap<string, string>
  /** Prometheus text exposition for `GET /metrics` (absent: 404). */
  metrics?: () => Promise<{ contentType: string; body: string }>
  /** What the agents served (`GET /api/v1/network/served`, and `network:served` on the event stream). */
  served?: Pick<ServedLedger, 'events' | 'snapshot'>
  /** The reward epoch bookings go to now (`GET /api/v1/rewards/booked` answers only when given). */
  bookedEpoch?: () => number
}

/** The checkpoint files a host reads; nothing else in a model folder is served. */
const MODEL_FILE = /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|model\.safetensors|model\.safetensors\.index\.json|model-\d{5}-of-\d{5}\.safetensors)$/

export type OracleStats = {
  uptimeSeconds: number
  requests: number
  refused: { total: number; byReason: Partial<Record<RefusalReason, number>> }
  subscribers: number
  models: Array<{ name: string; numLayers: number; nodes: number; assigned: number; ready: number }>
}

export type OracleServer = {
  /** `http://host:port` */
  url: string
  /** The HTTP server: attach a WebSocket `upgrade` handler here (the Orban channel). */
  server: Server
  stats(): OracleStats
  close(): Promise<void>
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

/** Reads a JSON body up to `limit` bytes; past it, drains up to 16× (so the client reads the 413), then gives up. */
function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () => new OracleHttpError(413, 'too_large', `request body over ${limit} bytes`)
  if (Number(req.headers['content-length']) > 16 * limit) return Promise.reject(tooLarge())
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= limit) chunks.push(chunk)
      else if (size > 16 * limit) {
        req.pause()
        reject(tooLarge())
      }
    })
    req.once('error', reject)
    req.once('end', () => {
      if (size > limit) return reject(tooLarge())
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      } catch {
        reject(new OracleHttpError(400, 'bad_json', 'request body is not valid JSON'))
      }
    })
  })
}

/**
 * The Oracle's HTTP server: the Plumise Oracle API (register, ready, topology, metrics report,
 * and its events as Server-Sent Events), `/health` and `/api/v1/oracle/stats`. Every refusal
 * (oversize, malformed, unsigned, stale, replayed, flooding) is answered, counted and logged;
 * none stops the process.
 */
export async function createOracleServer(init: OracleServerInit): Promise<OracleServer> {
  const { core, logger } = init
  const started = Date.now()
  const limit = init.maxBodyBytes ?? 64 * 1024
  const metricsLimit = init.maxMetricsBodyBytes ?? 1 << 20
  const ipLimiter = createRateLimiter(init.ipRateLimit ?? { burst: 120, perSecond: 20 })
  const addressLimiter = createRateLimiter(init.addressRateLimit ?? { burst: 20, perSecond: 2 })
  const maxSubs = init.maxSubscribers ?? { total: 1000, perIp: 32 }
  const bandwidth = init.modelBandwidth ?? { burstBytes: 1 << 30, bytesPerSecond: 64 << 20 }
  const modelBandwidth = createRateLimiter({ burst: bandwidth.burstBytes, perSecond: bandwidth.bytesPerSecond })
  const routes = createPlumiseRoutes({ core, store: init.store, logger, addressLimiter, timestampWindowS: init.timestampWindowS })

  let requests = 0
  const refused = new Map<RefusalReason, number>()
  const subscribers = new Map<string, number>()
  let subscriberCount = 0
  // Floods are logged once per client and reason a minute, not once per request.
  const lastFloodLog = new Map<string, number>()

  const clientIp = (req: IncomingMessage) => {
    const forwarded = init.trustProxy ? String(req.headers['x-forwarded-for'] ?? '').split(',')[0]!.trim() : ''
    return forwarded || req.socket.remoteAddress || 'unknown'
  }

  const refuse = (res: ServerResponse, e: OracleHttpError, ctx: { ip: string; path: string }) => {
    refused.set(e.reason, (refused.get(e.reason) ?? 0) + 1)
    if (e.status === 429) {
      const key = `${ctx.ip} ${e.reason}`
      const t = Date.now()
      if ((lastFloodLog.get(key) ?? 0) < t - 60_000) {
        lastFloodLog.set(key, t)
        if (lastFloodLog.size > 10_000) lastFloodLog.clear()
        logger.warn({ ...ctx, reason: e.reason, status: e.status }, 'rate limited (further refusals of this client logged once a minute)')
      }
    } else {
      logger.warn({ ...ctx, reason: e.reason, status: e.status, message: e.message }, 'request refused')
    }
    if (res.headersSent) return void res.end()
    // The rest of an oversize body is not read: close the connection after the answer.
    if (e.status === 413) res.setHeader('Connection', 'close')
    json(res, e.status, { success: false, statusCode: e.status, message: e.message })
  }

  const stats = (): OracleStats => ({
    uptimeSeconds: Math.floor((Date.now() - started) / 1000),
    requests,
    refused: { total: [...refused.values()].reduce((a, b) => a + b, 0), byReason: Object.fromEntries(refused) },
    subscribers: subscriberCount,
    models: core.models().map((m) => {
      const nodes = core.nodes(m.name)
      return { name: m.name, numLayers: m.numLayers, nodes: nodes.length, assigned: nodes.filter((n) => n.range).length, ready: nodes.filter((n) => n.ready).length }
    }),
  })

  const subscribe = (ip: string, query: URLSearchParams, req: IncomingMessage, res: ServerResponse) => {
    if (subscriberCount >= maxSubs.total) throw new OracleHttpError(503, 'too_many_subscribers', 'too many event subscribers; poll the topology instead')
    if ((subscribers.get(ip) ?? 0) >= maxSubs.perIp) throw new OracleHttpError(429, 'too_many_subscribers', `too many event streams from ${ip}`)
    routes.events(query, req, res)
    if (init.served) streamServed(init.served, res)
    subscriberCount++
    subscribers.set(ip, (subscribers.get(ip) ?? 0) + 1)
    res.once('close', () => {
      subscriberCount--
      const n = (subscribers.get(ip) ?? 1) - 1
      if (n > 0) subscribers.set(ip, n)
      else subscribers.delete(ip)
    })
  }

  type Handler = (req: IncomingMessage, res: ServerResponse, query: URLSearchParams, ip: string) => Promise<void> | void
  const table: Record<string, Handler> = {
    'GET /health': (_req, res) =>
      json(res, 200, { status: 'ok', models: core.models().map((m) => m.name), nodes: core.nodes().length, uptime: Math.floor((Date.now() - started) / 1000) }),
    'GET /api/v1/oracle/stats': (_req, res) => json(res, 200, stats()),
    'GET /metrics': async (_req, res) => {
      if (!init.metrics) throw new OracleHttpError(404, 'not_found', 'no Prometheus metrics on this server')
      const { contentType, body } = await init.metrics()
      res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) })
      res.end(body)
    },
    'POST /api/v1/pipeline/register': async (req, res) => json(res, 200, await routes.register(await readJson(req, limit))),
    'POST /api/v1/pipeline/ready': async (req, res) => json(res, 200, await routes.ready(await readJson(req, limit))),
    'GET /api/v1/pipeline/topology': (_req, res, query) => json(res, 200, routes.topology(query)),
    'GET /api/v1/pipeline/events': (req, res, query, ip) => subscribe(ip, query, req, res),
    [`GET ${BOOKED_PATH}`]: async (_req, res, query) => {
      if (!init.bookedEpoch) throw new OracleHttpError(404, 'not_found', 'this Oracle books no rewards (no chain)')
      const booked = await bookedWorkOf(init.store, query.get('address') ?? '', init.bookedEpoch())
      if (!booked) throw new OracleHttpError(400, 'invalid_body', 'address must be a 0x wallet address')
      json(res, 200, booked)
    },
    [`GET ${SERVED_PATH}`]: (_req, res) => {
      if (!init.served) throw new OracleHttpError(404, 'not_found', 'this server counts no served throughput')
      json(res, 200, init.served.snapshot())
    },
    'POST /api/v1/metrics/report': async (req, res) => json(res, 200, await routes.reportMetrics(await readJson(req, metricsLimit))),
    'POST /api/v1/verify/evidence': async (req, res) => {
      if (!init.verify) throw new OracleHttpError(404, 'not_found', 'this Oracle keeps no spot-check evidence')
      const body = await readJson(req, 32 << 20)
      try {
        json(res, 200, await init.verify.report(body))
      } catch (e) {
        if (e instanceof EvidenceRefusedError) throw new OracleHttpError(400, 'invalid_body', e.message)
        throw e
      }
    },
    'POST /api/v1/verify/sample': async (req, res) => {
      if (!init.verify) throw new OracleHttpError(404, 'not_found', 'this Oracle keeps no spot-check evidence')
      const body = await readJson(req, 32 << 20)
      try {
        json(res, 200, await init.verify.sample(body))
      } catch (e) {
        if (e instanceof EvidenceRefusedError) throw new OracleHttpError(400, 'invalid_body', e.message)
        throw e
      }
    },
    'GET /api/v1/verify/status': (_req, res, query) => {
      if (!init.verify) throw new OracleHttpError(404, 'not_found', 'this Oracle keeps no spot-check evidence')
      const peerId = query.get('peerId') ?? ''
      if (!peerId || peerId.length > 128) throw new OracleHttpError(400, 'invalid_body', 'peerId is required')
      json(res, 200, init.verify.status(peerId))
    },
  }

  const serveModelFile = async (req: IncomingMessage, res: ServerResponse, path: string, ip: string) => {
    const m = /^\/models\/([^/]+)\/([^/]+)$/.exec(path)
    const folder = m ? init.modelFolders?.get(decodePathSegment(m[1]!)) : undefined
    const file = m ? decodePathSegment(m[2]!) : ''
    if (!folder || !MODEL_FILE.test(file)) throw new OracleHttpError(404, 'not_found', `no model file ${path}`)
    await serveFile(req, res, join(folder, file), {
      admit: (bytes) => {
        if (!modelBandwidth.take(ip, bytes)) throw new OracleHttpError(429, 'rate_limited_bandwidth', 'model file bandwidth budget of this client spent; retry later')
      },
    })
  }

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    requests++
    const ip = clientIp(req)
    let target: RequestTarget
    try {
      target = parseRequestTarget(req.url)
    } catch {
      return refuse(res, new OracleHttpError(400, 'invalid_body', 'malformed request URL'), { ip, path: String(req.url).slice(0, 200) })
    }
    const path = target.pathname
    // Model files: many Range reads per shard, so outside the per-IP request budget (inside a byte budget instead).
    const isModelRead = path.startsWith('/models/') && (req.method === 'GET' || req.method === 'HEAD')
    const handler = table[`${req.method} ${path}`]
    return Promise.resolve()
      .then(() => {
        if (isModelRead) return serveModelFile(req, res, path, ip)
        if (!ipLimiter.take(ip)) throw new OracleHttpError(429, 'rate_limited_ip', 'Too many requests; slow down')
        if (!handler) throw new OracleHttpError(404, 'not_found', `no route ${req.method} ${path}`)
        return handler(req, res, target.searchParams, ip)
      })
      .catch((e: unknown) => {
        if (e instanceof OracleHttpError) return refuse(res, e, { ip, path })
        if (e instanceof BadRequestTargetError) return refuse(res, new OracleHttpError(400, 'invalid_body', e.message), { ip, path })
        logger.error({ err: e, path, ip }, 'request failed')
        refuse(res, new OracleHttpError(500, 'internal', 'internal error'), { ip, path })
      })
  }
  const server = createServer(guardListener(listener, logger))
  // Slow senders cannot hold connections open forever (event streams are responses, not requests).
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  answerClientErrors(server, logger, () => refused.set('invalid_body', (refused.get('invalid_body') ?? 0) + 1))

  const host = init.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (err) => logger.error({ err }, 'oracle HTTP server error'))
  const { port } = server.address() as { port: number }
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`

  return {
    url,
    server,
    stats,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      // Event streams never end on their own.
      server.closeAllConnections()
      await closed
    },
  }
}
