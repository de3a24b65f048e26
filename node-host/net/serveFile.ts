import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * Answers GET or HEAD for one file the way the Hugging Face Hub does: `Range: bytes=a-b` (or
 * `a-`) with 206 and Content-Range, 416 past the end, 404 when it is not a file. Returns false
 * (nothing sent) for other methods.
 */
export async function serveFile(req: IncomingMessage, res: ServerResponse, file: string): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false
  const info = await stat(file).catch(() => null)
  if (!info?.isFile()) return void res.writeHead(404).end(), true
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
  if (m) {
    const start = Number(m[1])
    const end = Math.min(m[2] ? Number(m[2]) : info.size - 1, info.size - 1)
    if (start > end) return void res.writeHead(416, { 'Content-Range': `bytes */${info.size}` }).end(), true
    res.writeHead(206, { 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${info.size}`, 'Accept-Ranges': 'bytes' })
    if (req.method === 'HEAD') return void res.end(), true
    createReadStream(file, { start, end }).pipe(res)
    return true
  }
  res.writeHead(200, { 'Content-Length': info.size, 'Accept-Ranges': 'bytes' })
  if (req.method === 'HEAD') return void res.end(), true
  createReadStream(file).pipe(res)
  return true
}
