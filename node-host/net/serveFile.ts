import { open } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join, resolve, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { answerError } from './guardListener.ts'
import { parseRange } from './parseRange.ts'
import { decodePathSegment, type BadRequestTargetError } from './requestTarget.ts'

export type ServeFileOptions = {
  /** Called with the body bytes about to be sent (0 for HEAD), before anything is written: throw to refuse (e.g. past a bandwidth budget). */
  admit?: (bytes: number) => void
  /** Extra response headers on 200 and 206 (e.g. `Cache-Control`). */
  headers?: Record<string, string>
}

/** A request for a path outside the served folder (`..`, encoded separators). */
export class PathTraversalError extends Error {
  readonly status = 403

  constructor() {
    super('path outside the served folder')
    this.name = 'PathTraversalError'
  }
}

/**
 * Answers GET or HEAD for one file the way the Hugging Face Hub does: a single satisfiable `Range`
 * gets 206 and Content-Range; ranges none of which can be satisfied get 416 with
 * `Content-Range: bytes *\/size`; no, malformed or multiple ranges get the whole file with 200
 * (see {@link parseRange}); not a file is 404. Error answers are JSON with a message. Returns
 * false (nothing sent) for other methods. The file is opened before anything is answered, so a
 * file that vanishes is a 404, not a stream error after the headers; a read error later ends the
 * response and is rethrown for the caller to log (a client leaving early is not an error).
 */
export async function serveFile(req: IncomingMessage, res: ServerResponse, file: string, opts: ServeFileOptions = {}): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false
  const handle = await open(file, 'r').catch(() => null)
  const info = await handle?.stat().catch(() => null)
  if (!handle || !info?.isFile()) {
    await handle?.close()
    answerError(res, 404, 'no such file')
    return true
  }
  let streaming = false
  try {
    const range = parseRange(req.headers.range, info.size)
    if (range === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${info.size}`)
      answerError(res, 416, `range not satisfiable for a file of ${info.size} bytes`)
      return true
    }
    const { start, end } = range ?? { start: 0, end: info.size - 1 }
    const length = end - start + 1
    opts.admit?.(req.method === 'HEAD' ? 0 : length)
    res.writeHead(range ? 206 : 200, {
      ...opts.headers,
      'Content-Length': length,
      'Accept-Ranges': 'bytes',
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${info.size}` } : {}),
    })
    if (req.method === 'HEAD' || length === 0) return void res.end(), true
    streaming = true
    await pipeline(handle.createReadStream({ start, end }), res).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ERR_STREAM_PREMATURE_CLOSE') throw e
    })
    return true
  } finally {
    // The read stream closes the handle itself once it is made.
    if (!streaming) await handle.close()
  }
}

/**
 * The file at `encodedPath` (a URL path below the served prefix, still percent-encoded) inside
 * `root`: each segment is decoded on its own, so `%2F` cannot make a separator; `..`, NUL and
 * separators inside a segment are a {@link PathTraversalError}; a bad encoding a
 * {@link BadRequestTargetError}.
 */
export function fileInFolder(root: string, encodedPath: string): string {
  const segments = encodedPath.split('/').filter((s) => s !== '').map(decodePathSegment)
  if (segments.some((s) => s === '..' || s === '.' || /[/\\\0]/.test(s))) throw new PathTraversalError()
  const base = resolve(root)
  const file = join(base, ...segments)
  if (file !== base && !file.startsWith(base + sep)) throw new PathTraversalError()
  return file
}

/** Serves `root` below a URL prefix: GET and HEAD of the file `encodedPath` names (see {@link serveFile}, {@link fileInFolder}). */
export async function serveFolderFile(req: IncomingMessage, res: ServerResponse, root: string, encodedPath: string, opts?: ServeFileOptions): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false
  return serveFile(req, res, fileInFolder(root, encodedPath), opts)
}
