import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { extname, join, normalize, sep } from 'node:path'
import type { AppConfig } from '../../shared/app/appConfig.ts'

export type AppServerInit = {
  /** The built app (see buildApp), or a promise of it: until it settles pages get a "building" answer. */
  dir: string | Promise<string>
  /** The Oracle's base URL: `/oracle/…` is forwarded there (topology, events, model files). */
  oracle: string
  /** Asked on each `GET /config.json`, so relays and models follow the network as it changes. */
  config: () => Promise<AppConfig>
  /** 0: any free port. */
  port: number
  /** @default '127.0.0.1' */
  host?: string
}

export type AppServer = { url: string; server: Server; close(): Promise<void> }

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
}

/** Hop-by-hop headers are not forwarded by a proxy (RFC 9110 §7.6.1). */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer', 'host'])

/**
 * Serves the built contributor app, its configuration (`GET /config.json`), and a same-origin
 * window on the Oracle's HTTP routes (`/oracle/…`, read-only: GET and HEAD, streamed, so Server-Sent
 * Events and Range reads pass through). The Oracle's Orban WebSocket is not proxied: the page
 * opens it on the Oracle itself (WebSockets need no CORS).
 */
export async function createAppServer(init: AppServerInit): Promise<AppServer> {
  let dir: string | undefined
  let buildError: Error | undefined
  Promise.resolve(init.dir).then(
    (d) => (dir = d),
    (e: Error) => (buildError = e),
  )
  const oracle = new URL(init.oracle)

  const proxy = (req: IncomingMessage, res: ServerResponse, path: string) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { Allow: 'GET, HEAD' }).end()
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HOP.has(k)))
    const upstream = request({ hostname: oracle.hostname, port: oracle.port, path, method: req.method, headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, Object.fromEntries(Object.entries(up.headers).filter(([k]) => !HOP.has(k))))
      up.pipe(res)
    })
    upstream.once('error', (e) => {
      if (res.headersSent) return void res.destroy()
      res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`the Oracle at ${init.oracle} is unreachable: ${e.message}`)
    })
    // A page that goes away ends its event stream upstream too.
    res.once('close', () => upstream.destroy())
    upstream.end()
  }

  const serveStatic = async (req: IncomingMessage, res: ServerResponse, root: string, path: string) => {
    const file = normalize(join(root, decodeURIComponent(path)))
    if (!file.startsWith(root + sep) && file !== root) return void res.writeHead(403).end()
    let target = file
    let info = await stat(target).catch(() => undefined)
    if (info?.isDirectory()) {
      target = join(target, 'index.html')
      info = await stat(target).catch(() => undefined)
    }
    // Views are client-side: unknown paths without an extension get the app.
    if (!info && !extname(path)) {
      target = join(root, 'index.html')
      info = await stat(target).catch(() => undefined)
    }
    if (!info?.isFile()) return void res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`not found: ${path}`)
    const immutable = path.startsWith('/assets/')
    res.writeHead(200, {
      'Content-Type': TYPES[extname(target)] ?? 'application/octet-stream',
      'Content-Length': info.size,
      'Cache-Control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    })
    if (req.method === 'HEAD') return void res.end()
    createReadStream(target).pipe(res)
  }

  const server = createServer((req, res) => {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://app')
    } catch {
      return void res.writeHead(400).end()
    }
    const path = url.pathname
    if (path === '/config.json') {
      init.config().then(
        (config) => {
          const body = JSON.stringify(config)
          res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) })
          res.end(body)
        },
        (e: Error) => res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`configuration unavailable: ${e.message}`),
      )
      return
    }
    if (path === '/oracle' || path.startsWith('/oracle/')) return proxy(req, res, path.slice('/oracle'.length) + url.search)
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { Allow: 'GET, HEAD' }).end()
    if (buildError) return void res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`the app failed to build: ${buildError.message}`)
    if (!dir) {
      return void res
        .writeHead(503, { 'Content-Type': 'text/html; charset=utf-8', 'Retry-After': '2' })
        .end('<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>shardmesh</title><p>The app is being built; this page reloads in a moment.</p>')
    }
    serveStatic(req, res, dir, path).catch(() => res.destroy())
  })
  const host = init.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as { port: number }
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    server,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
    },
  }
}
