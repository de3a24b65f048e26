import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import type { GenerateResult } from '../shared/engine/generate.ts'
import type { ShardOutput } from '../shared/engine/shardSession.ts'
import { parseModelConfig, type ModelSpec } from '../shared/model/modelSpec.ts'
import { FIXTURES_DIR, FIXTURE_NAMES, loadFixture, logitTolerance, maxAbsDiff, type Fixture, splits } from '../testing/fixtures.ts'
import type { LoadResult } from '../web/engine/engineMessages.ts'
import { launchChromium } from './launchChromium.ts'
import { startWebServer, type WebServer, type WebServerMode } from './startWebServer.ts'

// The engine in a page: a Web Worker on onnxruntime-web, fed by HTTP Range requests, checked
// against the Hugging Face reference outputs exactly as the Node fixture tests check onnxruntime-node.

const HIDDEN_TOLERANCE = 1e-3
const devices = (process.env.SHARDMESH_BROWSER_DEVICES ?? 'webgpu,wasm').split(',') as Array<'webgpu' | 'wasm'>
const serverMode = (process.env.SHARDMESH_WEB_SERVER ?? 'build') as WebServerMode


const rangeKey = (start: number, end: number) => `${start}-${end}`

/** Every distinct shard of every split, loaded once and shared by the tests. */
function shardRanges(L: number): Array<{ start: number; end: number }> {
  const keys = new Set(splits(L).flatMap((cuts) => cuts.slice(1).map((end, k) => rangeKey(cuts[k]!, end))))
  return [...keys].map((k) => {
    const [start, end] = k.split('-').map(Number) as [number, number]
    return { start, end }
  })
}

let server: WebServer
let browser: Browser
/** Every URL the browser asked for, with its Range header. */
const requests: Array<{ url: string; range?: string }> = []

before(async () => {
  server = await startWebServer(serverMode)
  browser = await launchChromium()
})

after(async () => {
  await browser?.close()
  await server?.close()
})

/** A fresh engine test page (its own worker), with every request of it and its worker recorded. */
async function openEnginePage(): Promise<Page> {
  const context = await browser.newContext()
  context.on('request', (r) => requests.push({ url: r.url(), range: r.headers().range }))
  const page = await context.newPage()
  const errors: Error[] = []
  page.on('pageerror', (e) => errors.push(e))
  await page.goto(new URL('engine-test.html', server.url).href)
  await page.waitForFunction(() => window.shardmesh !== undefined, undefined, { timeout: 60_000 })
  assert.deepEqual(errors, [], 'page errors while loading')
  return page
}

for (const device of devices) {
  for (const name of FIXTURE_NAMES) {
    describe(`engine in Chromium on ${device}: ${name} against the Hugging Face reference`, () => {
      let page: Page
      let fixture: Fixture
      let spec: ModelSpec
      let loaded: LoadResult
      const shardIds = new Map<string, string>()
      const worst = { hidden: 0, prefill: 0, decode: 0 }

      before(async () => {
        fixture = await loadFixture(name)
        spec = parseModelConfig(await readFile(join(FIXTURES_DIR, name, 'config.json'), 'utf8'))
        page = await openEnginePage()
        const ranges = shardRanges(spec.numLayers)
        loaded = await page.evaluate(({ baseUrl, ranges, device }) => window.shardmesh!.engine.load({ baseUrl, ranges, device }), {
          baseUrl: `/fixtures/${name}`,
          ranges,
          device,
        })
        for (const s of loaded.shards) shardIds.set(rangeKey(s.range.start, s.range.end), s.id)
      })

      after(async (t) => {
        const e = (x: number) => x.toExponential(2)
        t.diagnostic(`${name} on ${device}: max abs error hidden ${e(worst.hidden)}, prefill logits ${e(worst.prefill)}, decode logits ${e(worst.decode)}`)
        await page?.evaluate(() => window.shardmesh!.engine.dispose()).catch(() => undefined)
        await page?.context().close()
      })

      test(`every shard runs on ${device}, its weights fetched with Range requests from this origin`, async (t) => {
        assert.equal(loaded.shards.length, shardRanges(spec.numLayers).length)
        for (const s of loaded.shards) assert.equal(s.device, device, `shard [${s.range.start}, ${s.range.end})`)
        if (device === 'webgpu') {
          assert.ok(loaded.adapter, 'a WebGPU adapter')
          t.diagnostic(`WebGPU adapter: ${JSON.stringify(loaded.adapter)}`)
        } else {
          assert.equal(loaded.adapter, null)
        }
        const origin = new URL(server.url).origin
        const foreign = requests.filter((r) => new URL(r.url).origin !== origin && !r.url.startsWith('data:') && !r.url.startsWith('blob:'))
        assert.deepEqual(foreign, [], 'requests that left the page origin')
        const weights = requests.filter((r) => r.url.endsWith(`/fixtures/${name}/model.safetensors`))
        assert.ok(weights.length > 0, 'model.safetensors was read')
        for (const r of weights) assert.match(r.range ?? '', /^bytes=\d+-\d+$/, 'every read of model.safetensors is a Range request')
      })

      test('every shard maps the reference hidden state at its start to the one at its end', async () => {
        const L = spec.numLayers
        for (const [pi, prompt] of fixture.prompts.entries()) {
          const keys = Array.from({ length: L + 1 }, (_, k) => `p${pi}.hidden_states.${k}`)
          const ref = await fixture.reference(keys)
          for (const { start, end } of shardRanges(L)) {
            if (end === L) continue // the last shard returns logits, checked below
            const input = start === 0 ? { tokens: prompt.input_ids } : { hidden: ref.get(`p${pi}.hidden_states.${start}`)! }
            const out: ShardOutput = await page.evaluate(
              async ({ shard, sessionId, input }) => {
                const engine = window.shardmesh!.engine
                try {
                  return await engine.forward({ shard, sessionId, input, reset: true })
                } finally {
                  await engine.drop({ shard, sessionId })
                }
              },
              { shard: shardIds.get(rangeKey(start, end))!, sessionId: `h-${pi}-${start}-${end}`, input },
            )
            assert.ok(out.hidden instanceof Float32Array, 'a float32 hidden state')
            const err = maxAbsDiff(out.hidden, ref.get(`p${pi}.hidden_states.${end}`)!)
            worst.hidden = Math.max(worst.hidden, err)
            assert.ok(err < HIDDEN_TOLERANCE, `[${start}, ${end}) p${pi}: hidden state max abs error ${err}`)
          }
        }
      })

      for (const cuts of [[0, 'L'], [0, 1, 'L'], [0, '⅓', '⅔', 'L']]) {
        test(`stages ${cuts.join('|')}: prefill logits, decode logits and greedy ids`, async () => {
          const actual = splits(spec.numLayers)[cuts.length - 2]!
          const stages = actual.slice(1).map((end, k) => shardIds.get(rangeKey(actual[k]!, end))!)
          const tol = logitTolerance(name)
          const V = spec.vocabSize
          for (const [pi, p] of fixture.prompts.entries()) {
            const ref = await fixture.reference([`p${pi}.logits`, `p${pi}.decode_logits`])
            const r: GenerateResult = await page.evaluate(
              ({ shards, inputIds, maxNewTokens }) => window.shardmesh!.engine.generate({ shards, inputIds, maxNewTokens, keepLogits: true }),
              { shards: stages, inputIds: p.input_ids, maxNewTokens: p.new_tokens },
            )
            assert.deepEqual(r.outputIds, p.greedy_new_ids, `p${pi} greedy ids`)
            const prefillErr = maxAbsDiff(r.prefillLogits!, ref.get(`p${pi}.logits`)!)
            worst.prefill = Math.max(worst.prefill, prefillErr)
            assert.ok(prefillErr < tol, `p${pi} prefill logits max abs error ${prefillErr}`)
            const decode = ref.get(`p${pi}.decode_logits`)!
            assert.equal(r.decodeLogits!.length, p.new_tokens)
            r.decodeLogits!.forEach((row, k) => {
              const err = maxAbsDiff(row, decode.subarray(k * V, (k + 1) * V))
              worst.decode = Math.max(worst.decode, err)
              assert.ok(err < tol, `p${pi} decode step ${k} logits max abs error ${err}`)
            })
          }
        })
      }
    })
  }
}
