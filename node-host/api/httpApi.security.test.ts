import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import type { TextGenerator } from '../../shared/engine/textGenerator.ts'
import { silentLogger } from '../../shared/logger.ts'
import { createLogger } from '../logger.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { rawGet, rawRequest } from '../../testing/rawHttp.ts'
import { createHttpApi, type HttpApiComponents, type HttpApiInit } from './httpApi.ts'
import { defaultModelGenerator } from '../../testing/defaultModelGenerator.ts'

async function startApi(init: Partial<HttpApiInit>, components: Partial<HttpApiComponents> = {}): Promise<{ server: Server; url: string }> {
  const server = createServer(
    createHttpApi(
      { model: 'm', address: 'local', layers: { start: 0, end: 8, total: 8 }, ...init },
      { logger: createLogger('test', 'silent'), generator: () => null, ...components },
    ),
  )
  answerClientErrors(server, silentLogger)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

describe('host API: hostile requests', () => {
  let api: { server: Server; url: string }
  before(async () => {
    api = await startApi({ apiSecret: 'hunter2' })
  })
  after(() => api.server.close())
  const healthy = async () => assert.equal((await rawRequest(api.url, rawGet('/health', '127.0.0.1'))).status, 200)

  test('protocol-relative and malformed targets get 4xx with a message; the server answers the next request', async () => {
    for (const target of ['//a:b', '//[::1', '*', 'http://[::1/x', '/%E0%A4%A', 'nonsense', `/${'a'.repeat(20_000)}`]) {
      const r = await rawRequest(api.url, rawGet(target, '127.0.0.1'))
      assert.ok(r.status >= 400 && r.status < 500, `${target.slice(0, 20)}: ${r.status}`)
      const body = JSON.parse(r.body) as { error?: unknown; message?: unknown }
      assert.equal(typeof (body.message ?? body.error), 'string', target.slice(0, 20))
      await healthy()
    }
  })
})

describe('host API: secret, content type, Host, concurrency and size limits over the default model', () => {
  const SECRET = 'hunter2'
  let shards: ShardSession[]
  let generator: TextGenerator
  /** Generations wait here while a test holds it shut. */
  let gate: Promise<void> = Promise.resolve()
  let api: { server: Server; url: string }

  before(async () => {
    ;({ shards, generator } = await defaultModelGenerator((run) => async (params) => {
      await gate
      return run(params)
    }))
    api = await startApi({ apiSecret: SECRET, maxBodyBytes: 4096, maxConcurrentGenerations: 1 }, { generator: () => generator })
  })
  after(async () => {
    api.server.close()
    for (const s of shards) await s.dispose()
  })

  const json = { Authorization: `Bearer ${SECRET}`, 'Content-Type': 'application/json' }
  const completion = JSON.stringify({ prompt: 'The', max_tokens: 2 })
  const post = (headers: Record<string, string>, body = completion) => fetch(`${api.url}/v1/completions`, { method: 'POST', headers, body })

  test('the bearer token: missing 401, wrong (shorter, longer, a prefix) 403, right 200', async () => {
    assert.equal((await post({ 'Content-Type': 'application/json' })).status, 401)
    for (const token of ['x', 'hunter', 'hunter22', `${'h'.repeat(5000)}`]) assert.equal((await post({ ...json, Authorization: `Bearer ${token}` })).status, 403, token.slice(0, 10))
    assert.equal((await post(json)).status, 200)
  })

  test('bodies must say Content-Type: application/json (415 otherwise: no cross-site text/plain posts)', async () => {
    for (const type of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx']) {
      const r = await post({ ...json, 'Content-Type': type })
      assert.equal(r.status, 415, type)
      assert.match((await r.json()).error.message, /application\/json/)
    }
    const none = await rawRequest(api.url, [`POST /api/v1/generate HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Bearer ${SECRET}`, 'Content-Length: 2', 'Connection: close', '', '{}'].join('\r\n'))
    assert.equal(none.status, 415)
    assert.equal((await post({ ...json, 'Content-Type': 'Application/JSON; charset=utf-8' })).status, 200)
  })

  test('on a loopback connection only loopback names are accepted in Host (DNS rebinding gets 421)', async () => {
    for (const host of ['evil.example', 'evil.example:8080', 'localhost.evil.example', '127.0.0.1.nip.io', '[::2]:80']) {
      const r = await rawRequest(api.url, rawGet('/api/v1/metrics', host, [`Authorization: Bearer ${SECRET}`]))
      assert.equal(r.status, 421, host)
      assert.equal(typeof JSON.parse(r.body).error, 'string')
    }
    for (const host of ['localhost', 'LOCALHOST:3000', '127.0.0.1', '127.0.0.1:8080', '[::1]', '[::1]:9']) {
      assert.equal((await rawRequest(api.url, rawGet('/api/v1/metrics', host, [`Authorization: Bearer ${SECRET}`]))).status, 200, host)
    }
  })

  test('past the concurrency cap a generation gets 503 with Retry-After; a slot frees when the first ends', async () => {
    let open!: () => void
    gate = new Promise((r) => (open = r))
    const first = post(json)
    // The first holds the only slot once its body is read.
    for (let i = 0; i < 50; i++) {
      const busy = await post(json)
      if (busy.status === 503) {
        assert.equal(busy.headers.get('retry-after'), '1')
        assert.match((await busy.json()).error.message, /busy/)
        break
      }
      assert.equal(busy.status, 200, 'only while the first has not started')
      await new Promise((r) => setTimeout(r, 20))
      if (i === 49) assert.fail('never refused')
    }
    open()
    assert.equal((await first).status, 200)
    assert.equal((await post(json)).status, 200)
  })

  test("an empty prompt is the client's mistake: 400 with a message, not a 500 (found by the fuzz test)", async () => {
    const r = await post(json, JSON.stringify({ prompt: '', max_tokens: 1 }))
    assert.equal(r.status, 400)
    assert.match((await r.json()).error.message, /no tokens/)
  })

  test('sizes: a declared Content-Length over the limit is refused before any body arrives; a streamed body past it gets 413', async () => {
    const head = [`POST /api/v1/generate HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Bearer ${SECRET}`, 'Content-Type: application/json']
    const declared = await rawRequest(api.url, [...head, 'Content-Length: 1000000000', 'Connection: close', '', ''].join('\r\n'), 3000)
    assert.equal(declared.status, 413)
    const chunk = 'x'.repeat(1000)
    const chunked = [...head, 'Transfer-Encoding: chunked', 'Connection: close', '', ...Array.from({ length: 6 }, () => `${(1000).toString(16)}\r\n${chunk}`), '0', '', ''].join('\r\n')
    const streamed = await rawRequest(api.url, chunked)
    assert.equal(streamed.status, 413)
    assert.equal((await post(json)).status, 200)
  })
})
