import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, normalize } from 'node:path'

export type StaticServer = { url: string; requests: Array<{ path: string; range?: string }>; close(): Promise<void> }

/**
 * Serves a folder on 127.0.0.1 the way the Hugging Face Hub serves files: GET and HEAD,
 * `Range: bytes=a-b` answered with 206, 404 for missing files. `prefix` mimics `/<repo>/resolve/main`.
 */
export async function startStaticServer(root: string, prefix = ''): Promise<StaticServer> {
  const requests: StaticServer['requests'] = []
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    requests.push({ path: url.pathname, range: req.headers.range })
    if (!url.pathname.startsWith(`${prefix}/`)) return void res.writeHead(404).end()
    const rel = normalize(decodeURIComponent(url.pathname.slice(prefix.length + 1)))
    if (rel.startsWith('..')) return void res.writeHead(403).end()
    const file = join(root, rel)
    const info = await stat(file).catch(() => null)
    if (!info?.isFile()) return void res.writeHead(404).end()
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    if (m) {
      const start = Number(m[1])
      const end = Math.min(m[2] ? Number(m[2]) : info.size - 1, info.size - 1)
      if (start > end) return void res.writeHead(416, { 'Content-Range': `bytes */${info.size}` }).end()
      res.writeHead(206, { 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${info.size}`, 'Accept-Ranges': 'bytes' })
      if (req.method === 'HEAD') return void res.end()
      createReadStream(file, { start, end }).pipe(res)
      return
    }
    res.writeHead(200, { 'Content-Length': info.size, 'Accept-Ranges': 'bytes' })
    if (req.method === 'HEAD') return void res.end()
    createReadStream(file).pipe(res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
