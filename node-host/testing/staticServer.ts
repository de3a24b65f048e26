import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, normalize } from 'node:path'
import { serveFile } from '../net/serveFile.ts'

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
    await serveFile(req, res, join(root, rel))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
