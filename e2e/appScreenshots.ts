/**
 * `npm run screenshots`: PNGs of each view of the contributor app (1280×800 and 390×844) from a
 * running network: the one at `--app <url>` (e.g. `npm start`'s), else a fresh `shardmesh local
 * --hosts 1` started for the purpose. The page contributes, chats once, then each view is taken.
 * The Wallet view is taken connected to the test's own injected wallet (e2e/testWallet.ts, a fresh
 * key with no funds), switched to the network's chain. Prints the folder the PNGs are in.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { chromium } from 'playwright-core'
import { REPO_ROOT } from '../testing/fixtures.ts'
import { CHROMIUM_PATH, MESH_PAGE_ARGS } from './launchChromium.ts'
import { startAppNetwork, type AppNetwork } from './startAppNetwork.ts'
import { installTestWallet } from './testWallet.ts'
import { generatePrivateKey } from 'viem/accounts'

const { values } = parseArgs({ options: { app: { type: 'string' }, out: { type: 'string' } } })
const out = values.out ?? join(REPO_ROOT, '.cache', 'screenshots')
await mkdir(out, { recursive: true })
let net: AppNetwork | undefined
const appUrl = values.app ?? (net = await startAppNetwork({ hosts: 1 })).appUrl
const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: MESH_PAGE_ARGS })
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await context.newPage()
  await installTestWallet(page, { privateKey: generatePrivateKey() })
  await page.goto(appUrl)
  await page.getByRole('button', { name: 'Contribute' }).click()
  await page.locator('[data-phase="serving"]').waitFor({ timeout: 300_000 })
  await page.goto(new URL('#chat', appUrl).href)
  await page.getByRole('button', { name: 'Send' }).click()
  await page.locator('[data-testid="turn"][data-done="true"]').first().waitFor({ timeout: 120_000 })
  // A few seconds of served work for the chart.
  await page.waitForTimeout(3000)
  // The wallet connected and on the network's chain (a network without a chain shows that instead).
  await page.goto(new URL('#wallet', appUrl).href)
  const connect = page.getByRole('button', { name: 'Connect wallet' })
  if (await connect.waitFor({ timeout: 30_000 }).then(() => true, () => false)) {
    await connect.click()
    await page.getByRole('listitem').filter({ hasText: 'Test Wallet' }).click()
    await page.getByRole('button', { name: /^Switch to / }).click()
    await page.getByRole('button', { name: 'Register' }).waitFor({ timeout: 30_000 })
  }
  const files: string[] = []
  for (const [w, h] of [
    [1280, 800],
    [390, 844],
  ] as const) {
    await page.setViewportSize({ width: w, height: h })
    for (const view of ['contribute', 'chat', 'network', 'wallet']) {
      await page.goto(new URL(`#${view}`, appUrl).href)
      await page.waitForTimeout(view === 'network' || view === 'wallet' ? 1500 : 500)
      const file = join(out, `${view}-${w}x${h}.png`)
      await page.screenshot({ path: file, fullPage: false })
      files.push(file)
    }
  }
  process.stdout.write(`screenshots in ${out}:\n${files.map((f) => `  ${f}`).join('\n')}\n`)
} finally {
  await browser.close()
  await net?.stop()
}
