import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { RawResponse } from './rawHttp.ts'

/** One request as the fuzzer builds it; {@link encodeRequest} writes it as raw HTTP/1.1 bytes. */
export type FuzzRequest = { method: string; target: string; headers: Array<[string, string]>; body: string; chunked: boolean }

/**
 * Any code points, lone surrogates included (`fc.string({ unit: 'binary' })` builds a table of
 * all 1.1 M code points on first use: seconds of the time budget).
 */
export const anyText = (maxLength: number) => fc.array(fc.integer({ min: 0, max: 0x10ffff }).map((c) => String.fromCodePoint(c)), { maxLength }).map((a) => a.join(''))

const hex = fc.constantFrom(...'0123456789abcdefABCDEFgz%/.'.split(''))
/** Percent-encodings good and bad: `%41`, `%E0%A4%A`, `%`, `%zz`, `%2F`, `%00`. */
const percent = fc.oneof(
  fc.tuple(hex, hex).map(([a, b]) => `%${a}${b}`),
  fc.constantFrom('%', '%E0%A4%A', '%E0%A4', '%C0%AF', '%2F', '%2e%2e', '%5C', '%00', '%FF', '%ED%A0%80'),
)
const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._~-]{0,12}$/),
  fc.constantFrom('..', '.', '', 'config.json', 'model.safetensors', 'tokenizer.json', '__proto__', 'constructor'),
  fc.array(fc.oneof(percent, fc.stringMatching(/^[A-Za-z0-9:@!$&'()*+,;=-]{1,4}$/)), { minLength: 1, maxLength: 4 }).map((p) => p.join('')),
)
const query = fc.oneof(
  fc.constant(''),
  fc.array(fc.tuple(fc.constantFrom('model', 'x', '', 'model[]'), fc.oneof(segment, percent)), { maxLength: 3 }).map((kv) => `?${kv.map(([k, v]) => `${k}=${v}`).join('&')}`),
)

/** Request targets: known routes and their neighbours, bad encodings, `//`, absolute-form, `*`, huge. */
export function targetArbitrary(routes: string[], focus = 0): fc.Arbitrary<string> {
  const routePath = fc.constantFrom(...routes)
  return fc.oneof(
    { weight: focus, arbitrary: routePath },
    { weight: 6, arbitrary: fc.tuple(routePath, query).map(([p, q]) => p + q) },
    { weight: 3, arbitrary: fc.tuple(routePath, fc.array(segment, { minLength: 1, maxLength: 3 })).map(([p, s]) => `${p.replace(/\/$/, '')}/${s.join('/')}`) },
    { weight: 3, arbitrary: fc.array(segment, { maxLength: 5 }).map((s) => `/${s.join('/')}`) },
    { weight: 2, arbitrary: fc.tuple(routePath, fc.constantFrom('//', '///', '//a:b', '//[::1', '//user@host:99999')).map(([p, pre]) => pre + p) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom('http://', 'https://', 'ftp://', 'http://[::1', 'http://a:b@'), fc.constantFrom('h', 'localhost:80', '127.0.0.1', ''), routePath).map((t) => t.join('')) },
    { weight: 1, arbitrary: fc.constantFrom('*', '', 'nonsense', '?', '#', '/%', `/${'a'.repeat(9000)}`, `/${'%41'.repeat(4000)}`, `/models/${'x/'.repeat(3000)}`) },
  )
}

const headerValue = fc.oneof(fc.stringMatching(/^[\x20-\x7e]{0,40}$/), fc.constantFrom('', 'application/json', 'text/plain', 'bytes=0-1', 'websocket', 'Upgrade'))
const rangeHeader = fc.oneof(
  fc.tuple(fc.nat(1 << 30), fc.option(fc.nat(1 << 30))).map(([a, b]) => `bytes=${a}-${b ?? ''}`),
  fc.nat(1 << 30).map((n) => `bytes=-${n}`),
  fc.array(fc.tuple(fc.nat(100), fc.nat(100)), { minLength: 2, maxLength: 40 }).map((r) => `bytes=${r.map(([a, b]) => `${a}-${b}`).join(',')}`),
  fc.constantFrom('bytes=', 'bytes=-', 'bytes=a-b', 'lines=0-1', `bytes=${'9'.repeat(40)}-`),
)

/**
 * Whole requests: methods (the usual ones and junk), targets, headers (Content-Type, Range, Host,
 * Authorization, Upgrade and random ones), and bodies (the caller's, random JSON, random text),
 * sent with a Content-Length or chunked.
 */
export function requestArbitrary(init: {
  routes: string[]
  /** Bodies that reach the handlers (valid or near-valid), besides random ones. */
  bodies: fc.Arbitrary<string>
  /** Host values to pick from. */
  hosts: string[]
  /** Headers every request starts with (e.g. a bearer token), unless the fuzzer drops them. */
  base?: Array<[string, string]>
  /** Extra weight of the exact routes among targets (the others weigh 17 together), and of POST among methods. @default 0 */
  focus?: number
}): fc.Arbitrary<FuzzRequest> {
  const focus = init.focus ?? 0
  const method = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('GET', 'POST', 'HEAD') }, { weight: focus, arbitrary: fc.constant('POST') }, { weight: 2, arbitrary: fc.constantFrom('PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT', 'PROPFIND') })
  const extra = fc.array(
    fc.oneof(
      fc.tuple(fc.constant('Content-Type'), fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', '')),
      fc.tuple(fc.constant('Range'), rangeHeader),
      fc.tuple(fc.constant('Authorization'), fc.oneof(headerValue, fc.constantFrom('Bearer', 'Bearer ', 'Basic xx'))),
      fc.tuple(fc.constant('Upgrade'), fc.constantFrom('websocket', 'h2c')),
      fc.tuple(fc.constant('X-Forwarded-For'), fc.constantFrom('1.2.3.4', 'junk', ', ,')),
      // Not the framing headers (a wrong Content-Length only makes the server wait) nor Expect (a 100 Continue first).
      fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/).filter((n) => !/length|transfer|connection|expect|^te$|host/i.test(n)), headerValue),
    ),
    { maxLength: 4 },
  )
  const body = fc.oneof(
    { weight: 4, arbitrary: init.bodies },
    { weight: 2, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: anyText(200) },
    { weight: 1, arbitrary: fc.constant('') },
  )
  return fc
    .record({
      method,
      target: targetArbitrary(init.routes, focus),
      host: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...init.hosts) }, { weight: 1, arbitrary: headerValue }),
      keepBase: fc.nat(9).map((n) => n < 8),
      json: fc.nat(3).map((n) => (focus > 0 ? n > 0 : n > 1)),
      extra,
      body,
      chunked: fc.boolean(),
    })
    .map(({ method, target, host, keepBase, json, extra, body, chunked }) => ({
      method,
      target,
      headers: [['Host', host], ...(keepBase ? (init.base ?? []) : []), ...(json ? [['Content-Type', 'application/json'] as [string, string]] : []), ...extra] as Array<[string, string]>,
      body: method === 'GET' || method === 'HEAD' ? (chunked ? body : '') : body,
      chunked,
    }))
}

/** The raw bytes of `r`: Connection: close, and a body framed by Content-Length or chunks. */
export function encodeRequest(r: FuzzRequest): Buffer {
  const body = Buffer.from(r.body, 'utf8')
  const framing = r.chunked ? ['Transfer-Encoding: chunked'] : body.length ? [`Content-Length: ${body.length}`] : []
  const head = [`${r.method} ${r.target} HTTP/1.1`, ...r.headers.map(([k, v]) => `${k}: ${v}`), ...framing, 'Connection: close', '', ''].join('\r\n')
  const payload = r.chunked ? Buffer.concat([Buffer.from(body.length ? `${body.length.toString(16)}\r\n` : ''), body, Buffer.from(body.length ? '\r\n0\r\n\r\n' : '0\r\n\r\n')]) : body
  return Buffer.concat([Buffer.from(head, 'latin1'), payload])
}

/**
 * What every answer must be: never 5xx; an error answer (4xx) to anything but HEAD carries JSON
 * with a string `message` or `error` (or OpenAI's `error.message`).
 */
export function assertSafeAnswer(req: FuzzRequest, res: RawResponse): void {
  const what = `${req.method} ${req.target.slice(0, 120)} → ${res.status} ${res.body.slice(0, 200)}`
  assert.ok(res.status >= 200 && res.status < 500, what)
  if (res.status < 400 || req.method === 'HEAD') return
  let body: { message?: unknown; error?: unknown }
  try {
    body = JSON.parse(res.body) as typeof body
  } catch {
    return assert.fail(`not JSON: ${what}`)
  }
  const message = body.message ?? (typeof body.error === 'object' && body.error ? (body.error as { message?: unknown }).message : body.error)
  assert.equal(typeof message, 'string', what)
}
