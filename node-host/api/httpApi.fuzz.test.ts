import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import fc from 'fast-check'
import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createTextGenerator, stagesRunner } from '../../shared/engine/textGenerator.ts'
import { silentLogger } from '../../shared/logger.ts'
import { createLogger } from '../logger.ts'
import { loadTokenizer, readTokenizerConfig } from '../../shared/model/tokenizer.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { DEFAULT_MODEL_DIR } from '../model/resolveModelSource.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { anyText, assertSafeAnswer, encodeRequest, requestArbitrary } from '../../testing/httpFuzz.ts'
import { rawGet, rawRequest } from '../../testing/rawHttp.ts'
import { createHttpApi } from './httpApi.ts'

const SECRET = 'fuzz-secret'
let shards: ShardSession[]
let server: Server
let url: string

before(async () => {
  const source = fileModelSource(DEFAULT_MODEL_DIR)
  ;({ shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 4 }, { start: 4, end: 8 }] }))
  const generator = createTextGenerator({ tokenizer: await loadTokenizer(source), run: stagesRunner(() => shards), eosTokenIds: [0] })
  server = createServer(
    createHttpApi(
      { model: 'docs-llama-7m', address: 'local', layers: { start: 0, end: 8, total: 8 }, apiSecret: SECRET, tokenizerConfig: await readTokenizerConfig(source), maxBodyBytes: 64 * 1024 },
      { logger: createLogger('test', 'silent'), generator: () => generator, topology: () => [] },
    ),
  )
  answerClientErrors(server, silentLogger)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
after(async () => {
  server.close()
  for (const s of shards) await s.dispose()
})

/** Generation bodies valid or nearly so, kept to a few tokens so that a run stays short. */
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), anyText(40))
/** Mostly in range (so the handlers and the generator run), sometimes not. */
const inRange = <T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<unknown>) => fc.oneof({ weight: 5, arbitrary: valid }, { weight: 1, arbitrary: invalid })
const smallTokens = inRange(fc.integer({ min: 1, max: 3 }), fc.constantFrom(0, -1, 1.5, 5000, null, '2'))
const unit = (max: number) => inRange(fc.double({ min: 0, max, noNaN: true }), fc.oneof(fc.double(), fc.constant('x')))
const plumiseBody = fc.record({ inputs: inRange(text, fc.constantFrom('', 5)), parameters: fc.record({ max_new_tokens: smallTokens, temperature: unit(2), top_p: unit(1), repetition_penalty: inRange(fc.double({ min: 1, max: 2, noNaN: true }), fc.double()), do_sample: fc.boolean() }, { requiredKeys: ['max_new_tokens'] }), stream: fc.boolean() }, { requiredKeys: ['inputs', 'parameters'] })
const completionBody = fc.record({ prompt: inRange(text, fc.array(text, { maxLength: 2 })), max_tokens: smallTokens, temperature: unit(2), top_p: inRange(fc.double({ min: 0.01, max: 1, noNaN: true }), fc.double()), stop: fc.oneof(text, fc.array(text, { maxLength: 5 })), stream: fc.boolean(), seed: fc.integer(), model: inRange(fc.constant('docs-llama-7m'), fc.constant('other')) }, { requiredKeys: ['prompt', 'max_tokens'] })
const chatBody = fc.record({ messages: fc.array(fc.record({ role: inRange(fc.constantFrom('system', 'user', 'assistant', 'tool', 'developer'), fc.constant('root')), content: fc.oneof(text, fc.array(fc.record({ type: inRange(fc.constant('text'), fc.constant('image')), text }), { maxLength: 2 })) }), { minLength: 1, maxLength: 3 }), max_tokens: smallTokens, stream: fc.boolean() }, { requiredKeys: ['messages', 'max_tokens'] })
const bodies = fc.oneof(plumiseBody, completionBody, chatBody).map((b) => JSON.stringify(b))
/** Each route with bodies of its own kind, or any JSON. */
const generations = fc.oneof(
  fc.tuple(fc.constant('/api/v1/generate'), plumiseBody.map((b) => JSON.stringify(b))),
  fc.tuple(fc.constant('/v1/completions'), completionBody.map((b) => JSON.stringify(b))),
  fc.tuple(fc.constant('/v1/chat/completions'), chatBody.map((b) => JSON.stringify(b))),
  fc.tuple(fc.constantFrom('/api/v1/generate', '/v1/completions', '/v1/chat/completions'), fc.json({ maxDepth: 2 })),
)

const routes = ['/health', '/api/v1/generate', '/api/v1/pipeline/status', '/api/v1/metrics', '/v1/models', '/v1/completions', '/v1/chat/completions']

test('fuzz: random methods, targets, headers and bodies over raw sockets never crash the host API nor get a 5xx; errors carry a JSON message', async () => {
  // About 10 s on a loaded 2-core machine: past the deadline the remaining runs return at once.
  const deadline = Date.now() + 6_000
  let runs = 0
  const statuses = new Map<number, number>()
  await fc.assert(
    fc.asyncProperty(requestArbitrary({ routes, bodies, hosts: ['127.0.0.1', 'localhost:8080', '[::1]', 'evil.example'], base: [['Authorization', `Bearer ${SECRET}`]], focus: 6 }), async (req) => {
      if (Date.now() > deadline) return
      runs++
      const res = await rawRequest(url, encodeRequest(req), 5000).catch((e: Error) => {
        throw new Error(`${req.method} ${req.target.slice(0, 120)}: ${e.message}`)
      })
      assertSafeAnswer(req, res)
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    }),
    { numRuns: 300 },
  )
  assert.equal((await rawRequest(url, rawGet('/health', '127.0.0.1'))).status, 200)
  assert.ok(runs >= 50, `only ${runs} requests in the time budget`)
  assert.ok([...statuses.keys()].some((s) => s < 300) && [...statuses.keys()].some((s) => s >= 400), JSON.stringify([...statuses]))
  console.log(`host API fuzz: ${runs} requests, answers by status ${JSON.stringify(Object.fromEntries(statuses))}`)
})

test('fuzz: well-framed, authorized generation requests with random bodies get 200 or a 4xx with a message, never a 5xx', async () => {
  const deadline = Date.now() + 6_000
  const statuses = new Map<number, number>()
  await fc.assert(
    fc.asyncProperty(generations, async ([path, body]) => {
      if (Date.now() > deadline) return
      const req = { method: 'POST', target: path, headers: [['Host', '127.0.0.1'], ['Authorization', `Bearer ${SECRET}`], ['Content-Type', 'application/json']] as Array<[string, string]>, body, chunked: false }
      const res = await rawRequest(url, encodeRequest(req), 5000)
      assertSafeAnswer(req, res)
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    }),
    { numRuns: 200 },
  )
  assert.equal((await rawRequest(url, rawGet('/health', '127.0.0.1'))).status, 200)
  assert.ok((statuses.get(200) ?? 0) > 0 && [...statuses.keys()].some((s) => s >= 400), JSON.stringify([...statuses]))
  console.log(`host API generation fuzz: answers by status ${JSON.stringify(Object.fromEntries(statuses))}`)
})
