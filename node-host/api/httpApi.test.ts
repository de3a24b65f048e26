import assert from 'node:assert/strict'
import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import OpenAI from 'openai'
import { loadShards } from '../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import { createTextGenerator, stagesRunner, type TextGenerator } from '../../shared/engine/textGenerator.ts'
import { loadTokenizer } from '../../shared/model/tokenizer.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { createLogger } from '../logger.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { DEFAULT_MODEL_DIR } from '../model/resolveModelSource.ts'
import { loadFixture, type FixturePrompt } from '../../testing/fixtures.ts'
import { createHttpApi } from './httpApi.ts'

async function listen(handler: RequestListener): Promise<{ server: Server; url: string }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

/** Reads a Server-Sent Events body into its `data:` payloads. */
async function sse(res: Response): Promise<string[]> {
  const text = await res.text()
  return text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''))
}

describe('HTTP API: Plumise agent and OpenAI endpoints over three shards of the default model', () => {
  let shards: ShardSession[]
  let generator: TextGenerator | null = null
  let server: Server
  let url: string
  let p0: FixturePrompt
  const SECRET = 's3cret'

  before(async () => {
    const source = fileModelSource(DEFAULT_MODEL_DIR)
    p0 = (await loadFixture('docs-llama-7m')).prompts[0]!
    ;({ server, url } = await listen(
      createHttpApi(
        { model: 'docs-llama-7m', address: 'local', layers: { start: 0, end: 8, total: 8 }, apiSecret: SECRET },
        { logger: createLogger('test', 'silent'), generator: () => generator },
      ),
    ))
    // Before the model is loaded: health says loading, generation is 503.
    assert.equal((await (await fetch(`${url}/health`)).json()).status, 'loading')
    const loading = await fetch(`${url}/api/v1/generate`, { method: 'POST', headers: { Authorization: `Bearer ${SECRET}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: 'x' }) })
    assert.equal(loading.status, 503)
    ;({ shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 8 }] }))
    generator = createTextGenerator({ tokenizer: await loadTokenizer(source), run: stagesRunner(() => shards), eosTokenIds: [0] })
  })
  after(async () => {
    server.close()
    for (const s of shards) await s.dispose()
  })

  const auth = { Authorization: `Bearer ${SECRET}`, 'Content-Type': 'application/json' }

  test('the openai client gets the reference greedy text from /v1/completions, whole and streamed', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: SECRET })
    const whole = await client.completions.create({ model: 'docs-llama-7m', prompt: p0.prompt, max_tokens: 24, temperature: 0 })
    const tokenizer = generator!.tokenizer
    const expected = tokenizer.decode(p0.greedy_new_ids.slice(0, 24))
    assert.equal(whole.choices[0]!.text, expected)
    assert.equal(whole.choices[0]!.finish_reason, 'length')
    assert.deepEqual(whole.usage, { prompt_tokens: p0.input_ids.length, completion_tokens: 24, total_tokens: p0.input_ids.length + 24 })
    const stream = await client.completions.create({ model: 'docs-llama-7m', prompt: p0.prompt, max_tokens: 24, temperature: 0, stream: true })
    let streamed = ''
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? ''
    assert.equal(streamed, expected)
  })

  test('chat completions, whole and streamed, and stop sequences', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: SECRET })
    const messages = [{ role: 'user' as const, content: 'Explain layers.' }]
    const whole = await client.chat.completions.create({ model: 'docs-llama-7m', messages, max_tokens: 20, temperature: 0 })
    const text = whole.choices[0]!.message.content!
    assert.equal(whole.choices[0]!.message.role, 'assistant')
    assert.ok(text.length > 0)
    let streamed = ''
    for await (const chunk of await client.chat.completions.create({ model: 'docs-llama-7m', messages, max_tokens: 20, temperature: 0, stream: true })) {
      streamed += chunk.choices[0]?.delta?.content ?? ''
    }
    assert.equal(streamed, text)
    const models = await client.models.list()
    assert.deepEqual(models.data.map((m) => m.id), ['docs-llama-7m'])
    // A stop sequence cuts the text before it, streamed or not.
    const reference = generator!.tokenizer.decode(p0.greedy_new_ids.slice(0, 24))
    const stopAt = reference.indexOf('layers')
    const stopped = await client.completions.create({ model: 'docs-llama-7m', prompt: p0.prompt, max_tokens: 24, temperature: 0, stop: ['layers'] })
    assert.equal(stopped.choices[0]!.text, reference.slice(0, stopAt))
    assert.equal(stopped.choices[0]!.finish_reason, 'stop')
    let streamedStop = ''
    for await (const c of await client.completions.create({ model: 'docs-llama-7m', prompt: p0.prompt, max_tokens: 24, temperature: 0, stop: 'layers', stream: true })) {
      streamedStop += c.choices[0]?.text ?? ''
    }
    assert.equal(streamedStop, reference.slice(0, stopAt))
  })

  test('Plumise /api/v1/generate answers JSON and Server-Sent Events; metrics count the work', async () => {
    const body = { inputs: p0.prompt, parameters: { max_new_tokens: 12, do_sample: false, repetition_penalty: 1 } }
    const r = await (await fetch(`${url}/api/v1/generate`, { method: 'POST', headers: auth, body: JSON.stringify(body) })).json()
    assert.equal(r.generated_text, generator!.tokenizer.decode(p0.greedy_new_ids.slice(0, 12)))
    assert.equal(r.num_tokens, 12)
    assert.ok(r.latency_ms > 0)
    const events = await sse(await fetch(`${url}/api/v1/generate`, { method: 'POST', headers: auth, body: JSON.stringify({ ...body, stream: true }) }))
    assert.equal(events.at(-1), '[DONE]')
    assert.equal(events.slice(0, -1).map((e) => JSON.parse(e).token).join(''), r.generated_text)
    const m = await (await fetch(`${url}/api/v1/metrics`, { headers: auth })).json()
    assert.ok(m.total_requests >= 2 && m.total_tokens_processed > 0 && m.tokens_per_second > 0)
    const health = await (await fetch(`${url}/health`)).json()
    assert.deepEqual([health.status, health.mode, health.layers], ['ok', 'single', { start: 0, end: 8, total: 8 }])
    const status = await (await fetch(`${url}/api/v1/pipeline/status`, { headers: auth })).json()
    assert.deepEqual(status.assignment, { start: 0, end: 8, total: 8, is_full: true })
  })

  test('bad requests get clear errors and the server goes on', async () => {
    const post = (path: string, body: string, headers: Record<string, string> = auth) => fetch(`${url}${path}`, { method: 'POST', headers, body })
    assert.equal((await post('/api/v1/generate', '{"inputs":"x"}', {})).status, 401)
    assert.equal((await post('/api/v1/generate', '{"inputs":"x"}', { Authorization: 'Bearer nope' })).status, 403)
    const badJson = await post('/v1/completions', '{not json')
    assert.equal(badJson.status, 400)
    assert.match((await badJson.json()).error.message, /not valid JSON/)
    const badParam = await post('/api/v1/generate', JSON.stringify({ inputs: 'x', parameters: { temperature: 9 } }))
    assert.equal(badParam.status, 400)
    assert.match((await badParam.json()).error, /temperature/)
    assert.equal((await post('/api/v1/generate', JSON.stringify({ inputs: 'x', parameters: { bogus: 1 } }))).status, 400)
    assert.equal((await post('/v1/completions', JSON.stringify({ model: 'other', prompt: 'x' }))).status, 404)
    assert.equal((await post('/v1/completions', 'x'.repeat(2 << 20))).status, 413)
    assert.equal((await fetch(`${url}/nope`, { headers: auth })).status, 404)
    const ok = await post('/v1/completions', JSON.stringify({ prompt: 'The', max_tokens: 2 }))
    assert.equal(ok.status, 200)
  })
})
