import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join, normalize, sep } from 'node:path'
import type { Plugin } from 'vite'

type Next = (err?: unknown) => void

/** `bytes=a-b`, `bytes=a-` and `bytes=-n` of a file of `size` bytes; null when absent or unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'invalid' | null {
  if (!header) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (!m[1] && !m[2])) return 'invalid'
  const start = m[1] ? Number(m[1]) : Math.max(0, size - Number(m[2]))
  const end = m[1] && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1
  return start > end || start >= size ? 'invalid' : { start, end }
}

/** A connect handler serving `root` with GET, HEAD and single `Range` requests (206), 404 otherwise. */
export function folderHandler(root: string) {
  return async (req: IncomingMessage, res: ServerResponse, next: Next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next()
    const rel = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^[/\\]+/, '')
    if (rel.split(sep).includes('..')) return void res.writeHead(403).end()
    const file = join(root, rel)
    const info = await stat(file).catch(() => null)
    if (!info?.isFile()) return void res.writeHead(404).end()
    const range = parseRange(req.headers.range, info.size)
    if (range === 'invalid') return void res.writeHead(416, { 'Content-Range': `bytes */${info.size}` }).end()
    const { start, end } = range ?? { start: 0, end: info.size - 1 }
    const headers: Record<string, string | number> = { 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-store' }
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${info.size}`
    res.writeHead(range ? 206 : 200, headers)
    if (req.method === 'HEAD' || info.size === 0) return void res.end()
    createReadStream(file, { start, end }).pipe(res)
  }
}

/** Serves a local folder under `prefix` from the Vite dev and preview servers (same origin as the page). */
export function serveFolder(prefix: string, root: string): Plugin {
  return {
    name: 'shardmesh:serve-folder',
    configureServer(server) {
      server.middlewares.use(prefix, folderHandler(root))
    },
    configurePreviewServer(server) {
      server.middlewares.use(prefix, folderHandler(root))
    },
  }
}
