import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { silentLogger } from '../../shared/logger.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { rawGet, rawRequest } from '../testing/rawHttp.ts'
import { createHttpApi, type HttpApiComponents, type HttpApiInit } from './httpApi.ts'

async function startApi(init: Partial<HttpApiInit>, components: Partial<HttpApiComponents> = {}): Promise<{ server: Server; url: string }> {
  const server = createServer(
    createHttpApi(
      { model: 'm', address: 'local', layers: { start: 0, end: 8, total: 8 }, ...init },
      { logger: silentLogger, generator: () => null, ...components },
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
