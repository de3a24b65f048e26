import assert from 'node:assert/strict'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import type { TextGenerator } from '../../shared/engine/textGenerator.ts'
import { silentLogger } from '../../shared/logger.ts'
import { createLogger } from '../logger.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { createHttpApi, type HttpApiInit } from './httpApi.ts'
import { defaultModelGenerator } from '../../testing/defaultModelGenerator.ts'

type Answer = { status: number; retryAfter: string | undefined; body: string }

/** A POST from a given loopback source address: each address is one client to the fair queue. */
function post(url: string, from: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const text = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', localAddress: from, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers } }, (res) => {
      let data = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (data += c))
      res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'], body: data }))
    })
    req.on('error', reject)
    req.end(text)
  })
}

describe('host API: a fair queue per client, 429 with Retry-After when saturated, a deadline per request (real HTTP, the default model)', () => {
  let shards: ShardSession[]
  let generator: TextGenerator
  /** Generations wait here (or until their signal fires) while a test holds it shut. */
  let gate: Promise<void> = Promise.resolve()
  /** The prompts in the order their generations started. */
  const started: string[] = []
  const servers: Server[] = []

  before(async () => {
    ;({ shards, generator } = await defaultModelGenerator((run) => async (params) => {
      await Promise.race([
        gate,
        new Promise((_, reject) => {
          params.signal?.throwIfAborted()
          params.signal?.addEventListener('abort', () => reject(params.signal!.reason), { once: true })
        }),
      ])
      return run(params)
    }))
    // The prompt a generation was asked for, seen as it starts.
    const generateText = generator.generateText.bind(generator)
    generator = { ...generator, generateText: (req) => (started.push(req.prompt), generateText(req)) }
  })
  after(async () => {
    for (const s of servers) s.close()
    for (const s of shards) await s.dispose()
  })

  async function startApi(init: Partial<HttpApiInit>): Promise<string> {
    const server = createServer(createHttpApi({ model: 'm', address: 'local', layers: { start: 0, end: 8, total: 8 }, ...init }, { logger: createLogger('test', 'silent'), generator: () => generator }))
    answerClientErrors(server, silentLogger)
    servers.push(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }
  const until = async (what: string, check: () => boolean) => {
    for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10))
    assert.ok(check(), what)
  }

  test('one slot, a heavy client and a light one: the light one is served next, the heavy one past its share and anyone past the queue get 429 with Retry-After', async () => {
    const url = await startApi({ maxConcurrentGenerations: 1, maxQueuedGenerations: 3, maxQueuedPerClient: 2 })
    let open!: () => void
    gate = new Promise((r) => (open = r))
    started.length = 0
    const heavy = '127.0.0.2'
    const light = '127.0.0.3'
    const ask = (from: string, prompt: string) => post(url, from, '/v1/completions', { prompt, max_tokens: 1 })
    const h1 = ask(heavy, 'H1')
    await until('H1 runs', () => started.includes('H1'))
    const h2 = ask(heavy, 'H2')
    const h3 = ask(heavy, 'H3')
    await new Promise((r) => setTimeout(r, 100))
    const h4 = await ask(heavy, 'H4')
    assert.equal(h4.status, 429, 'the heavy client is past its share of the queue')
    assert.ok(Number(h4.retryAfter) >= 1, `Retry-After ${h4.retryAfter}`)
    assert.match(JSON.parse(h4.body).error.message, /saturated/)
    const l1 = ask(light, 'L1')
    await new Promise((r) => setTimeout(r, 100))
    const l2 = await ask(light, 'L2')
    assert.equal(l2.status, 429, 'the queue is full')
    assert.ok(Number(l2.retryAfter) >= 1)
    open()
    const answers = await Promise.all([h1, h2, h3, l1])
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200])
    // The light client's request, queued after two of the heavy one's, runs before them.
    assert.deepEqual(started.filter((p) => p !== 'H4' && p !== 'L2'), ['H1', 'L1', 'H2', 'H3'])
  })

  test('the deadline (the API\'s, or shorter by X-Deadline-Ms): a request still waiting gets 429 with Retry-After, the running one 504; the API serves on', async () => {
    const url = await startApi({ maxConcurrentGenerations: 1, maxQueuedGenerations: 4, requestDeadlineMs: 1500 })
    let open!: () => void
    gate = new Promise((r) => (open = r))
    started.length = 0
    const running = post(url, '127.0.0.4', '/api/v1/generate', { inputs: 'R', parameters: { max_new_tokens: 1 } })
    await until('R runs', () => started.includes('R'))
    const waiting = post(url, '127.0.0.5', '/v1/chat/completions', { messages: [{ role: 'user', content: 'W' }], max_tokens: 1 }, { 'X-Deadline-Ms': '300' })
    const [r, w] = await Promise.all([running, waiting])
    assert.equal(r.status, 504)
    assert.match(JSON.parse(r.body).error, /deadline/)
    assert.equal(w.status, 429)
    assert.ok(Number(w.retryAfter) >= 1)
    assert.match(JSON.parse(w.body).error.message, /300 ms deadline/)
    assert.ok(!started.some((p) => p.includes('W')), 'the waiting request never ran')
    open()
    assert.equal((await post(url, '127.0.0.5', '/v1/completions', { prompt: 'again', max_tokens: 1 })).status, 200)
  })
})
