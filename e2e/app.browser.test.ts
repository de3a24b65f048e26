import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { topologySchema, type Topology } from '../shared/oracle/plumiseSchemas.ts'
import { SERVED_PATH, servedSnapshotSchema } from '../shared/oracle/servedThroughput.ts'
import { loadFixture, type Fixture, type FixturePrompt } from '../testing/fixtures.ts'
import { waitFor } from '../testing/waitFor.ts'
import { CHROMIUM_PATH, MESH_PAGE_ARGS } from './launchChromium.ts'
import { startAppNetwork, type AppNetwork } from './startAppNetwork.ts'

// The contributor app against ONE real `npm start` network (`shardmesh local --hosts 1`: devnet,
// Oracle, one host offering ~55% of docs-llama-7m), started once for the whole file. The host alone
// cannot hold every layer, so once a page contributes, every completion needs the page's layers.

const MODEL = 'docs-llama-7m'

const expected = (p: FixturePrompt) => {
  const eos = p.greedy_new_ids.indexOf(0)
  return eos >= 0 ? p.greedy_new_ids.slice(0, eos + 1) : p.greedy_new_ids
}

describe('the contributor app on an npm start network', () => {
  let net: AppNetwork
  let fixture: Fixture
  let browser: Browser
  let context: BrowserContext
  let page: Page
  let pagePeerId: string
  const pageErrors: string[] = []

  const topology = async (): Promise<Topology> => topologySchema.parse(await (await fetch(`${net.oracleUrl}/api/v1/pipeline/topology?model=${MODEL}`)).json())
  const pageNode = async () => (await topology()).nodes.find((n) => n.peerId === pagePeerId)
  const whole = (t: Topology) => Array.from({ length: t.totalLayers }, (_, l) => t.nodes.some((n) => n.ready && n.layerStart <= l && l < n.layerEnd)).every(Boolean)

  /** Waits until the Contribute view says it serves a range, and returns the time it took. */
  async function waitServing(timeoutMs = 180_000): Promise<void> {
    await page.locator('[data-phase="serving"]').waitFor({ timeout: timeoutMs })
  }

  before(async () => {
    fixture = await loadFixture(MODEL)
    net = await startAppNetwork({ hosts: 1 })
    // No --enable-unsafe-webgpu: headless Chromium then has navigator.gpu but no adapter, so the page runs the wasm backend.
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: MESH_PAGE_ARGS })
    context = await browser.newContext()
    page = await context.newPage()
    page.on('pageerror', (e) => pageErrors.push(e.message))
    if (process.env.DEBUG_APP) page.on('console', (m) => console.log(`[page] ${m.text()}`))
  })

  after(async () => {
    await browser?.close()
    await net?.stop()
  })

  test('the app opens on Contribute; without WebGPU it falls back to wasm and says so', async () => {
    await page.goto(net.appUrl)
    await page.getByRole('heading', { name: 'Contribute this tab' }).waitFor()
    await page.getByTestId('backend').getByText(/falls back to the wasm backend/).waitFor({ timeout: 30_000 })
    assert.match(await page.getByTestId('webgpu').innerText(), /Not available/)
    // Enabled once the model is known from /config.json and the Oracle (it can arrive after the heading).
    await page.getByRole('button', { name: 'Contribute', disabled: false }).waitFor({ timeout: 30_000 })
    const footer = `Oracle ${net.oracleUrl.replace(/[.:/]/g, '\\$&')}`
    await page.waitForFunction((re) => new RegExp(re).test((document.querySelector('footer') as HTMLElement | null)?.innerText ?? ''), footer, { timeout: 30_000 })
    assert.match(await page.locator('footer').innerText(), new RegExp(footer))
  })

  test('with WebGPU (SwiftShader here) the capability check names the adapter, shader-f16 and its largest buffer, and picks WebGPU', async () => {
    const gpuBrowser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...MESH_PAGE_ARGS, '--enable-unsafe-webgpu'] })
    try {
      const gpuPage = await gpuBrowser.newPage()
      await gpuPage.goto(net.appUrl)
      await gpuPage.getByTestId('backend').getByText('WebGPU (the GPU)').waitFor({ timeout: 30_000 })
      assert.match(await gpuPage.getByTestId('webgpu').innerText(), /google · swiftshader/)
      const facts = await gpuPage.locator('.facts').last().innerText()
      assert.match(facts, /shader-f16\s+no \(float32 shaders\)/)
      assert.match(facts, /Largest GPU buffer\s+\d/)
    } finally {
      await gpuBrowser.close()
    }
  })

  test('?oracle= points the same build at another Oracle; one that is down is said in words on Network and Contribute', async () => {
    // Its own context: its own identity and remembered choice, apart from the contributing page's.
    const otherContext = await browser.newContext()
    try {
      const other = await otherContext.newPage()
      await other.goto(`${net.appUrl}?oracle=${encodeURIComponent('http://127.0.0.1:9')}#network`)
      assert.match(await other.getByRole('alert').first().innerText({ timeout: 30_000 }), /Oracle's event stream \(http:\/\/127\.0\.0\.1:9\) is unreachable/)
      assert.match(await other.locator('footer').innerText(), /Oracle http:\/\/127\.0\.0\.1:9/)
      await other.getByRole('link', { name: 'Contribute' }).click()
      await other.getByRole('button', { name: 'Contribute' }).click()
      await other.locator('[data-phase="error"]').waitFor({ timeout: 30_000 })
      assert.match(await other.getByRole('alert').first().innerText(), /unreachable/)
      assert.ok(await other.getByRole('button', { name: 'Contribute' }).isEnabled(), 'it can be tried again')
    } finally {
      await otherContext.close()
    }
  })

  test('"Contribute" gets a range and serves it; a completion through the origin\'s OpenAI API passes through the page and gives the reference tokens', async () => {
    const t0 = Date.now()
    await page.getByRole('button', { name: 'Contribute' }).click()
    await waitServing()
    const clickToServingMs = Date.now() - t0
    process.stdout.write(`# click to serving: ${(clickToServingMs / 1000).toFixed(1)} s (${await page.getByTestId('start-to-serving').getAttribute('title')})\n`)
    const range = await page.getByTestId('range').innerText()
    const m = /^\[(\d+), (\d+)\)$/.exec(range)
    assert.ok(m, `a range is shown: ${range}`)
    pagePeerId = (await page.evaluate(() => document.querySelector('[title^="12D3"]')?.getAttribute('title'))) ?? ''
    assert.match(pagePeerId, /^12D3/, 'the page shows its peer id')
    const node = await (async () => {
      for (let i = 0; i < 100; i++) {
        const n = await pageNode()
        if (n?.ready) return n
        await new Promise((r) => setTimeout(r, 200))
      }
    })()
    assert.ok(node, 'the Oracle lists the page as ready')
    assert.deepEqual([node.layerStart, node.layerEnd], [Number(m[1]), Number(m[2])], 'the range the page shows is the one the Oracle assigned')
    // The host alone cannot hold every layer: the whole model is served only with the page.
    const t = await topology()
    assert.ok(whole(t), 'every layer is served')
    assert.ok(!whole({ ...t, nodes: t.nodes.filter((n) => n.peerId !== pagePeerId) }), 'without the page some layer has no server')

    const p = fixture.prompts[0]!
    const tokensBefore = Number(await page.getByTestId('tokens').innerText())
    let completion: { choices: Array<{ text: string }>; usage: { completion_tokens: number } } | undefined
    for (let i = 0; i < 60 && !completion; i++) {
      // The origin learns the page's range from the topology: a 5xx until it has.
      const r = await fetch(`${net.apiUrl}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: p.prompt, max_tokens: p.new_tokens, temperature: 0 }) })
      if (r.ok) completion = (await r.json()) as typeof completion
      else await new Promise((r) => setTimeout(r, 1000))
    }
    assert.ok(completion, `a completion; logs: ${net.logs().slice(-2000)}`)
    const ids = expected(p)
    assert.equal(completion.usage.completion_tokens, ids.length)
    assert.equal(completion.choices[0]!.text, p.greedy_text)
    await page.waitForFunction((before) => Number(document.querySelector('[data-testid="tokens"]')?.textContent) > before, tokensBefore, { timeout: 10_000 })
    assert.ok(Number(await page.getByTestId('sessions').innerText()) >= 1, 'a session ran on the page')
    assert.ok(Number(await page.getByTestId('peers').innerText()) >= 1, 'peers connected')
    assert.deepEqual(pageErrors, [])
  })

  test('Chat streams the reference greedy tokens, the page itself the origin over libp2p, with the route shown', async () => {
    const p = fixture.prompts[0]!
    await page.getByRole('link', { name: 'Chat' }).click()
    await page.getByLabel('Prompt').fill(p.prompt)
    await page.getByLabel('Max tokens').fill(String(p.new_tokens))
    await page.getByLabel('Temperature').fill('0')
    await page.getByRole('button', { name: 'Send' }).click()
    const turn = page.getByTestId('turn').last()
    // Streamed: text shows while the turn is still running.
    await page.waitForFunction(() => {
      const t = [...document.querySelectorAll('[data-testid="turn"]')].at(-1)
      return t?.getAttribute('data-done') === 'false' && (t.querySelector('.completion')?.textContent ?? '').length > 1
    }, undefined, { timeout: 60_000 })
    await page.locator('[data-testid="turn"][data-done="true"]').last().waitFor({ timeout: 60_000 })
    assert.equal(await turn.getByRole('alert').count(), 0, await turn.innerText())
    assert.deepEqual(JSON.parse((await turn.getAttribute('data-token-ids'))!), expected(p))
    assert.equal(await turn.locator('.completion').innerText(), p.greedy_text.trimEnd())
    const hops = await turn.getByRole('list', { name: 'route' }).locator('li').allInnerTexts()
    assert.ok(hops.some((h) => h.startsWith('this tab') && /layers \[\d+, \d+\)/.test(h)), `the page is on the route: ${hops.join(' | ')}`)
    assert.ok(hops.length >= 3, `origin and at least two shard hops: ${hops.join(' | ')}`)
    assert.ok(hops.slice(1).every((h) => /ms per step/.test(h)), `per-hop ms: ${hops.join(' | ')}`)
    assert.match(await turn.getByTestId('tps').innerText(), /tokens\/s/)
  })

  test('Network shows every node the Oracle lists, live from its events', async () => {
    await page.getByRole('link', { name: 'Network' }).click()
    const card = page.getByTestId(`model-${MODEL}`)
    await card.waitFor()
    const t = await topology()
    assert.ok(t.nodes.length >= 2)
    for (const n of t.nodes) await card.locator(`tr[data-peer-id="${n.peerId}"]`).waitFor({ timeout: 10_000 })
    assert.match(await card.locator(`tr[data-peer-id="${pagePeerId}"]`).innerText(), /^page/)
    assert.match(await card.locator('tbody tr').filter({ hasNotText: pagePeerId.slice(-6) }).first().innerText(), /^host/)
    assert.equal(await card.locator('tbody tr').count(), t.nodes.length)
    assert.match(await card.getByTestId('network-tps').innerText(), /tokens\/s/)
    // What the page served (the completion and the chat above went through it), as the Oracle
    // counted it from the page's TASK_PROGRESS reports: in its API, and in the view, per node and in total.
    // The page reports every 5 s: the work of the tests just before may not be counted yet.
    let served = servedSnapshotSchema.parse(await (await fetch(`${net.oracleUrl}${SERVED_PATH}`)).json())
    const mine = await waitFor(
      "the Oracle's count of the page's work",
      async () => {
        served = servedSnapshotSchema.parse(await (await fetch(`${net.oracleUrl}${SERVED_PATH}`)).json())
        return served.nodes.find((n) => n.peerId === pagePeerId && n.tokens > 0)
      },
      15_000,
      250,
    ).catch(() => served.nodes.find((n) => n.peerId === pagePeerId))
    assert.ok(mine && mine.kind === 'page' && mine.tokens > 0 && mine.steps > 0 && mine.sessions >= 1, `the Oracle counted the page's work: ${JSON.stringify(mine)}`)
    assert.ok(mine.tokensPerSecond > 0 && served.totalTokensPerSecond >= mine.tokensPerSecond, `served tokens/s: ${JSON.stringify(served)}`)
    const row = card.locator(`tr[data-peer-id="${pagePeerId}"]`)
    await page.waitForFunction((peer) => Number(document.querySelector(`tr[data-peer-id="${peer}"] [data-testid="served-tokens"]`)?.textContent) > 0, pagePeerId, { timeout: 15_000 })
    assert.match(await row.getByTestId('served-tps').innerText(), /^\d+\.\d tokens\/s$/)
    assert.ok(Number.parseFloat(await card.getByTestId('network-tps').innerText()) > 0, await card.getByTestId('network-tps').innerText())
    assert.ok(Number.parseFloat(await page.getByTestId('network-served-total').innerText()) > 0)
  })

  test('Network at phone width (390×844): the node table fits inside its card, nothing hidden off its edge; at 1280 it is a table', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 } })
    try {
      const p = await phone.newPage()
      await p.goto(new URL('#network', net.appUrl).href)
      const card = p.getByTestId(`model-${MODEL}`)
      await card.locator('tbody tr').first().waitFor({ timeout: 30_000 })
      /** Widths in CSS px: what is laid out against what is shown (a scroller's hidden part counts as overflow). */
      const measure = () =>
        card.evaluate((c) => {
          const wrap = c.querySelector('.table-wrap') as HTMLElement
          const table = c.querySelector('table') as HTMLElement
          const box = c.getBoundingClientRect()
          const inner = box.right - Number.parseFloat(getComputedStyle(c).paddingRight)
          const cellsRight = Math.max(...[...c.querySelectorAll('td, th')].filter((el) => (el as HTMLElement).offsetParent !== null).map((el) => el.getBoundingClientRect().right))
          return { card: [c.scrollWidth, c.clientWidth], wrap: [wrap.scrollWidth, wrap.clientWidth], tableRight: table.getBoundingClientRect().right, cellsRight, inner, page: [document.documentElement.scrollWidth, window.innerWidth], thead: getComputedStyle(c.querySelector('thead')!).display }
        })
      const m = await measure()
      const detail = JSON.stringify(m)
      assert.ok(m.card[0]! <= m.card[1]!, `the card does not overflow: ${detail}`)
      assert.ok(m.wrap[0]! <= m.wrap[1]!, `the table needs no hidden horizontal scrolling: ${detail}`)
      assert.ok(m.tableRight <= m.inner + 0.5 && m.cellsRight <= m.inner + 0.5, `every cell ends inside the card's padding: ${detail}`)
      assert.ok(m.page[0]! <= m.page[1]!, `the page does not scroll sideways: ${detail}`)
      // Each value keeps its column's name at phone width (the header row is not shown there).
      assert.match(await card.locator('tbody tr').first().locator('td[data-label="Layers"]').innerText(), /^\[\d+, \d+\)$/)
      await p.setViewportSize({ width: 1280, height: 800 })
      assert.equal((await measure()).thead, 'table-header-group', 'at 1280 px the header row is shown: a table as before')
    } finally {
      await phone.close()
    }
  })

  test('"Stop" leaves cleanly: the Oracle reassigns within 5 s (no silence window)', async () => {
    await page.getByRole('link', { name: 'Contribute' }).click()
    const t0 = Date.now()
    await page.getByRole('button', { name: 'Stop' }).click()
    let gone = false
    while (Date.now() - t0 < 5000 && !gone) {
      gone = (await pageNode()) === undefined
      if (!gone) await new Promise((r) => setTimeout(r, 100))
    }
    assert.ok(gone, 'the page no longer holds a range within 5 s')
    process.stdout.write(`# stop to reassigned: ${Date.now() - t0} ms\n`)
    await page.getByRole('button', { name: 'Contribute' }).waitFor()
    // And the Network view saw it go, from the event stream.
    await page.getByRole('link', { name: 'Network' }).click()
    await page.locator(`tr[data-peer-id="${pagePeerId}"]`).waitFor({ state: 'detached', timeout: 5000 })
  })

  test('the choice is remembered: after Contribute, a reload resumes contributing with the same identity', async () => {
    await page.getByRole('link', { name: 'Contribute' }).click()
    await page.getByLabel('Memory offered (MB)', { exact: true }).fill('512')
    await page.getByRole('button', { name: 'Contribute' }).click()
    await waitServing()
    const t0 = Date.now()
    await page.reload()
    // No click: the page resumes by itself (its benchmark score remembered: no second run).
    await waitServing()
    process.stdout.write(`# reload to serving: ${((Date.now() - t0) / 1000).toFixed(1)} s (${await page.getByTestId('start-to-serving').getAttribute('title')})\n`)
    assert.equal(await page.getByLabel('Memory offered (MB)', { exact: true }).inputValue(), '512')
    const title = await page.evaluate(() => document.querySelector('[title^="12D3"]')?.getAttribute('title'))
    assert.equal(title, pagePeerId, 'the same peer id (IndexedDB identity)')
    let node
    for (let i = 0; i < 100 && !node?.ready; i++) {
      node = await pageNode()
      if (!node?.ready) await new Promise((r) => setTimeout(r, 200))
    }
    assert.ok(node?.ready, 'the Oracle lists the reloaded page as ready')
  })
})
