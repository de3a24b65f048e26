import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '../../shared/logger.ts'

/** An error that carries the HTTP status it should be answered with (4xx: the client's fault). */
type WithStatus = { status: number; message: string }
const hasStatus = (e: unknown): e is Error & WithStatus => {
  const status = e instanceof Error ? (e as Error & { status?: unknown }).status : undefined
  return typeof status === 'number' && status >= 400 && status < 600
}

/** Answers `status` with `{ statusCode, message }` JSON, or ends (destroys) a response already under way. */
export function answerError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent || res.writableEnded) {
    res.destroy()
    return
  }
  const text = JSON.stringify({ statusCode: status, message })
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

/**
 * The last line of defence of a request listener: a synchronous throw or a rejected promise
 * becomes an error answer (the error's own 4xx/5xx `status` when it has one, else 500) and a log
 * line, never an uncaught exception that stops the process. Response stream errors (a write after
 * the client left) are logged, not thrown.
 */
export function guardListener(
  listener: (req: IncomingMessage, res: ServerResponse) => unknown,
  logger: Logger,
): RequestListener {
  const fail = (req: IncomingMessage, res: ServerResponse, e: unknown) => {
    if (hasStatus(e) && e.status < 500) logger.warn({ path: req.url, status: e.status, message: e.message }, 'request refused')
    else logger.error({ err: e, path: req.url }, 'request listener failed')
    try {
      answerError(res, hasStatus(e) ? e.status : 500, hasStatus(e) ? e.message : 'internal error')
    } catch (err) {
      logger.error({ err }, 'could not answer a failed request')
      res.destroy()
    }
  }
  return (req, res) => {
    res.on('error', (err) => logger.warn({ err: err.message, path: req.url }, 'response stream error'))
    req.on('error', (err) => logger.warn({ err: err.message, path: req.url }, 'request stream error'))
    try {
      const out = listener(req, res)
      if (out instanceof Promise) out.catch((e: unknown) => fail(req, res, e))
    } catch (e) {
      fail(req, res, e)
    }
  }
}

/** What the HTTP parser's error codes mean to the client. */
const clientErrorStatus = (code: string | undefined): [number, string] =>
  code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout'] : [400, 'Bad Request']

/**
 * Answers requests the HTTP parser itself refuses (a malformed request line or header, headers
 * too large, too slow) with a JSON message and closes the connection, instead of Node's bare 400.
 * Returns the status it answered, for callers that count refusals.
 */
export function answerClientError(err: Error & { code?: string }, socket: { writable: boolean; end(data: string): void; destroy(): void }): number {
  const [status, text] = clientErrorStatus(err.code)
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return status
  }
  const body = JSON.stringify({ statusCode: status, message: `malformed HTTP request (${err.code ?? err.message})` })
  socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  return status
}

/**
 * What never reaches the request listener is answered too: every malformed request on `server`
 * gets {@link answerClientError}, a CONNECT (no proxy here) a JSON 405, each with a log line.
 * `onRefused` is told of each (for refusal counters).
 */
export function answerClientErrors(server: Server, logger: Logger, onRefused?: (status: number) => void): void {
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    logger.warn({ err: err.message, code: err.code }, 'malformed HTTP from a client')
    // Not `onRefused?.(answerClientError(...))`: an absent callback would skip the answer too.
    const status = answerClientError(err, socket)
    onRefused?.(status)
  })
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    logger.warn({ target: String(req.url).slice(0, 200) }, 'CONNECT refused')
    socket.on('error', () => socket.destroy())
    const body = JSON.stringify({ statusCode: 405, message: 'CONNECT is not served here' })
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
    onRefused?.(405)
  })
}
