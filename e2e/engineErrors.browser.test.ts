import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { launchChromium } from './launchChromium.ts'
import { startWebServer, type WebServer, type WebServerMode } from './startWebServer.ts'

// The engine worker's failure paths, in a Chromium that offers no WebGPU adapter: every failure
// comes back to the page as a rejected call with the worker's error class name, never a crash.

const serverMode = (process.env.SHARDMESH_WEB_SERVER ?? 'build') as WebServerMode
const MODEL = '/fixtures/tiny-llama'

/** What a rejected call carried across the worker boundary. */
type Rejection = { name: string; message: string } | null

describe('engine worker in a Chromium without a WebGPU adapter', () => {
  let server: WebServer
  let browser: Browser
  let page: Page
  const pageErrors: Error[] = []

  before(async () => {
    server = await startWebServer(serverMode)
    browser = await launchChromium({ webgpu: false })
    page = await browser.newPage()
    page.on('pageerror', (e) => pageErrors.push(e))
    await page.goto(new URL('engine-test.html', server.url).href)
    await page.waitForFunction(() => window.shardmesh !== undefined, undefined, { timeout: 60_000 })
  })

  after(async () => {
    await browser?.close()
    await server?.close()
  })

  /** Runs `call` on the page's engine and returns how it was rejected (null when it resolved). */
  const rejection = (call: string, arg: unknown): Promise<Rejection> =>
    page.evaluate(
      async ({ call, arg }) => {
        const engine = window.shardmesh!.engine as unknown as Record<string, (a: unknown) => Promise<unknown>>
        try {
          await engine[call]!(arg)
          return null
        } catch (e) {
          return { name: (e as Error).name, message: (e as Error).message }
        }
      },
      { call, arg },
    )

  test('the page sees no adapter', async () => {
    assert.equal(await page.evaluate(() => window.shardmesh!.requestGpuAdapterInfo()), null)
  })

  test('device webgpu fails with DeviceUnavailableError', async () => {
    const r = await rejection('load', { baseUrl: MODEL, ranges: [{ start: 0, end: 6 }], device: 'webgpu' })
    assert.equal(r?.name, 'DeviceUnavailableError')
    assert.match(r!.message, /webgpu/)
  })

  test('device auto falls back to wasm, and the engine still answers', async () => {
    const loaded = await page.evaluate((baseUrl) => window.shardmesh!.engine.load({ baseUrl, ranges: [{ start: 0, end: 6 }], device: 'auto' }), MODEL)
    assert.deepEqual(
      loaded.shards.map((s) => s.device),
      ['wasm'],
    )
    assert.equal(loaded.adapter, null)
    const ids = await page.evaluate(
      (shards) => window.shardmesh!.engine.generate({ shards, inputIds: [1, 2, 3], maxNewTokens: 3 }).then((r) => r.outputIds),
      loaded.shards.map((s) => s.id),
    )
    assert.equal(ids.length, 3)
  })

  test('a missing checkpoint fails with ModelFileNotFoundError', async () => {
    const r = await rejection('load', { baseUrl: '/fixtures/no-such-model', ranges: [{ start: 0, end: 1 }], device: 'wasm' })
    assert.equal(r?.name, 'ModelFileNotFoundError')
  })

  test('a layer range outside the model fails with LayerRangeError', async () => {
    const r = await rejection('load', { baseUrl: MODEL, ranges: [{ start: 4, end: 9 }], device: 'wasm' })
    assert.equal(r?.name, 'LayerRangeError')
  })

  test('an unknown shard fails with UnknownShardError', async () => {
    const r = await rejection('forward', { shard: 'shard-999', sessionId: 's', input: { tokens: [1] }, reset: true })
    assert.equal(r?.name, 'UnknownShardError')
  })

  test('stages that do not cover the model fail with StageChainError', async () => {
    const loaded = await page.evaluate((baseUrl) => window.shardmesh!.engine.load({ baseUrl, ranges: [{ start: 0, end: 2 }, { start: 3, end: 6 }], device: 'wasm' }), MODEL)
    const r = await rejection('generate', { shards: loaded.shards.map((s) => s.id), inputIds: [1, 2], maxNewTokens: 2 })
    assert.equal(r?.name, 'StageChainError')
    assert.match(r!.message, /\[0, 2\) \[3, 6\)/)
  })

  test('token ids outside the vocabulary fail with ShardInputError', async () => {
    const loaded = await page.evaluate((baseUrl) => window.shardmesh!.engine.load({ baseUrl, ranges: [{ start: 0, end: 6 }], device: 'wasm' }), MODEL)
    const r = await rejection('generate', { shards: [loaded.shards[0]!.id], inputIds: [1, 1_000_000], maxNewTokens: 1 })
    assert.equal(r?.name, 'ShardInputError')
  })

  test('an aborted generate fails with AbortError', async () => {
    const loaded = await page.evaluate((baseUrl) => window.shardmesh!.engine.load({ baseUrl, ranges: [{ start: 0, end: 6 }], device: 'wasm' }), MODEL)
    const r = await page.evaluate(async (shards) => {
      const controller = new AbortController()
      const run = window.shardmesh!.engine.generate(
        { shards, inputIds: [1, 2, 3], maxNewTokens: 500 },
        { signal: controller.signal, onToken: (_id, i) => i === 2 && controller.abort() },
      )
      return run.then(
        () => null,
        (e: Error) => ({ name: e.name, message: e.message }),
      )
    }, loaded.shards.map((s) => s.id))
    assert.equal(r?.name, 'AbortError')
  })

  test('a malformed message is answered with EngineRequestError', async () => {
    const reply = await page.evaluate(
      () =>
        new Promise((resolve) => {
          const worker = window.shardmesh!.createEngineWorker()
          worker.onmessage = (e) => {
            worker.terminate()
            resolve(e.data)
          }
          worker.postMessage({ type: 'load', id: 7, params: { ranges: 'all' } })
        }),
    )
    assert.deepEqual(
      { type: (reply as { type: string }).type, id: (reply as { id: number }).id, name: (reply as { error: { name: string } }).error.name },
      { type: 'error', id: 7, name: 'EngineRequestError' },
    )
  })

  test('no uncaught error reached the page', async () => {
    await page.evaluate(() => window.shardmesh!.engine.dispose())
    assert.deepEqual(pageErrors, [])
  })
})
