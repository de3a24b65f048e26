import { connect } from 'node:net'

export type RawResponse = { status: number; headers: Record<string, string>; body: string }

/**
 * Sends `request` (the raw bytes of one HTTP/1.1 request: the test writes the request line and
 * headers itself, malformed ones included) to `url`'s host and port over a plain socket and reads
 * the answer until the server closes (an event stream: until its head). The request should say `Connection: close`.
 */
export function rawRequest(url: string, request: string | Buffer, timeoutMs = 5000): Promise<RawResponse> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname.replace(/^\[|\]$/g, ''))
    const chunks: Buffer[] = []
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    let headSeen = false
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      if (headSeen) return
      // An event stream never ends: its head is the answer.
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      if (split < 0) return
      headSeen = true
      if (/^content-type:\s*text\/event-stream/im.test(text.slice(0, split))) socket.destroy()
    })
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const head = (split < 0 ? text : text.slice(0, split)).split('\r\n')
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')
      if (!status) return reject(new Error(`no HTTP answer: ${JSON.stringify(text.slice(0, 200))}`))
      const headers: Record<string, string> = {}
      for (const line of head.slice(1)) {
        const i = line.indexOf(':')
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      let body = split < 0 ? '' : text.slice(split + 4)
      if (headers['transfer-encoding'] === 'chunked') body = dechunk(body)
      resolve({ status: Number(status[1]), headers, body: Buffer.from(body, 'latin1').toString('utf8') })
    })
    // Not end(): a half-closed socket makes the server drop its answer. `Connection: close` ends it.
    socket.write(request)
  })
}

function dechunk(body: string): string {
  let out = ''
  let at = 0
  for (;;) {
    const eol = body.indexOf('\r\n', at)
    if (eol < 0) return out
    const size = parseInt(body.slice(at, eol), 16)
    if (!(size > 0)) return out
    out += body.slice(eol + 2, eol + 2 + size)
    at = eol + 2 + size + 2
  }
}

/** `GET <target>` with `Host` and `Connection: close`, plus any extra header lines. */
export const rawGet = (target: string, host = 'localhost', extra: string[] = []) =>
  [`GET ${target} HTTP/1.1`, `Host: ${host}`, 'Connection: close', ...extra, '', ''].join('\r\n')
