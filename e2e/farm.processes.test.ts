import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { chromium } from 'playwright-core'
import { topologySchema, type Topology } from '../shared/oracle/plumiseSchemas.ts'
import { rangeBytes } from '../shared/oracle/assignLayers.ts'
import { readModelInfo } from '../node-host/oracle/modelInfo.ts'
import { loadFixture, type FixturePrompt } from '../testing/fixtures.ts'
import { freePort } from '../node-host/net/freePort.ts'
import { startDevnet, type Devnet } from '../node-host/chain/startDevnet.ts'
import type { FarmStatus } from '../node-host/farm/farmStatusServer.ts'
import { createPublicClient, http, numberToHex, parseEther, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { getBalance } from 'viem/actions'
import { verifyAgentBinding } from '../shared/chain/agentBinding.ts'
import { getAgent } from '../shared/chain/getAgent.ts'
import { SERVED_PATH, servedSnapshotSchema } from '../shared/oracle/servedThroughput.ts'
import { pageChainOf } from '../web/wallet/pageChain.ts'
import { parsePromText, promValue } from '../testing/promText.ts'
import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'
import { CHROMIUM_PATH } from './launchChromium.ts'

// The issue's farm, with no Node host serving layers: a devnet, an Oracle, an origin that holds no
// layers (`shardmesh origin`: the HTTP API, and the relay the pages reserve a slot on) and a farm of
// 3 pages (`shardmesh farm`, its own process, serving the app itself), each page offering ~55% of
// docs-llama-7m's weights, so the Oracle cuts the model into page ranges. All checks run inside
// that one farm to keep the run short.

const MODEL = 'docs-llama-7m'
const MB = 2 ** 20
const expected = (p: FixturePrompt) => {
  const eos = p.greedy_new_ids.indexOf(0)
  return eos >= 0 ? p.greedy_new_ids.slice(0, eos + 1) : p.greedy_new_ids
}

/** Every process whose command line names `dir` (the farm's profiles): its Chromiums. */
async function chromiumsUnder(dir: string): Promise<number[]> {
  const pids: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')
    if (cmd.includes(dir)) pids.push(Number(name))
  }
  return pids
}

let dir: string
let devnet: Devnet
let oracle: CliProcess
let origin: CliProcess
let farm: CliProcess
let oracleUrl: string
let apiUrl: string
let profiles: string
let statusUrl: string
/** The farm wallet (PLUMISE_PRIVATE_KEY of the farm process): the pages' rewards are claimed into it. */
let farmKey: Hex
const logs = () => `--- oracle ---\n${oracle?.log.join('').slice(-2000) ?? ''}\n--- origin ---\n${origin?.log.join('').slice(-3000) ?? ''}\n--- farm ---\n${farm?.log.join('').slice(-6000) ?? ''}`

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shardmesh-farm-net-'))
  profiles = join(dir, 'profiles')
  const devnetFile = join(dir, 'devnet.json')
  // As `npm start`'s devnet: 30 blocks an epoch, no historical state.
  devnet = await startDevnet({ out: devnetFile, blocksPerEpoch: 30, pruneHistory: true })
  const chainEnv = { SHARDMESH_DEVNET_FILE: devnetFile, PLUMISE_CHAIN_ID: String(devnet.chainId), PLUMISE_RPC_URL: devnet.rpcUrl }
  const oraclePort = await freePort()
  oracleUrl = `http://127.0.0.1:${oraclePort}`
  oracle = spawnCli(['oracle', '--port', String(oraclePort), '--db', join(dir, 'oracle.db')], { ...chainEnv, ORACLE_PRIVATE_KEY: devnet.accounts.oracle.privateKey })
  await waitFor('the Oracle', async () => ((await fetch(`${oracleUrl}/health`)).ok ? true : undefined), 90_000, logs)
  const apiPort = await freePort()
  apiUrl = `http://127.0.0.1:${apiPort}`
  origin = spawnCli(['origin', '--oracle', oracleUrl, '--api-port', String(apiPort), '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws', '--identity', join(dir, 'origin.key')])
  const relay = await waitFor('the origin\'s relay address', async () => /"relays":\["([^"]+)"/.exec(origin.log.join(''))?.[1], 60_000, logs)
  const statusPort = await freePort()
  statusUrl = `http://127.0.0.1:${statusPort}/status`
  farmKey = generatePrivateKey()
  await fetch(devnet.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'anvil_setBalance', params: [privateKeyToAccount(farmKey).address, numberToHex(parseEther('10'))] }) })
  // Each page offers a little over half of the weights: no page holds the model, two cover it, the third is a copy.
  const info = await readModelInfo(undefined)
  assert.equal(info.name, MODEL, 'the default model')
  const pageMb = Math.ceil((rangeBytes(info, { start: 0, end: info.numLayers }) * 0.55) / MB)
  farm = spawnCli(['farm', '--workers', '3', '--oracle', oracleUrl, '--relay', relay, '--devtools', '--gpu', 'off', '--chromium', CHROMIUM_PATH, '--profiles', profiles, '--status-port', String(statusPort), '--memory-mb', '8000', '--page-memory-mb', String(pageMb), '--payout-s', '5'], {
    ...chainEnv,
    PLUMISE_PRIVATE_KEY: farmKey,
  })
})

after(async () => {
  if (process.env.FARM_LOG) await writeFile(process.env.FARM_LOG, [oracle, origin, farm].map((p) => p?.log.join('') ?? '').join('\n--- next process ---\n'))
  for (const p of [farm, origin, oracle]) p?.child.kill('SIGKILL')
  await devnet?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

test('a farm of 3 pages alone serves docs-llama-7m through an origin; a renderer crashed through CDP comes back with its peer id; SIGTERM leaves the Oracle and no Chromium', async () => {
  const fixture = await loadFixture(MODEL)
  const p = fixture.prompts[0]!
  const status = async () => (await (await fetch(statusUrl)).json()) as FarmStatus
  const topology = async (): Promise<Topology> => topologySchema.parse(await (await fetch(`${oracleUrl}/api/v1/pipeline/topology?model=${MODEL}`)).json())
  const whole = (t: Topology) => Array.from({ length: t.totalLayers }, (_, l) => t.nodes.some((n) => n.ready && n.layerStart <= l && l < n.layerEnd)).every(Boolean)
  const complete = async () =>
    waitFor('a completion through the origin', async () => {
      const r = await fetch(`${apiUrl}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: p.prompt, max_tokens: p.new_tokens, temperature: 0 }) })
      return r.ok ? ((await r.json()) as { choices: Array<{ text: string }>; usage: { completion_tokens: number } }) : undefined
    }, 120_000, logs)

  const t0 = Date.now()
  const serving = await waitFor('3 pages with peer ids, their ranges covering every layer', async () => {
    const s = await status()
    if (s.workers.length !== 3 || !s.workers.every((w) => w.state === 'running' && w.peerId && w.devtoolsUrl && (w.phase === 'serving' || w.phase === 'waiting'))) return undefined
    return whole(await topology()) ? s : undefined
  }, 400_000, logs)
  process.stdout.write(`# farm launch to serving: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`)
  const t = await topology()
  const pagePeers = serving.workers.map((w) => w.peerId!)
  assert.equal(new Set(pagePeers).size, 3, 'each worker has its own identity')
  // The pages alone: every node the Oracle lists is one of them, and it cut the model into ranges (no page holds it all).
  assert.deepEqual(t.nodes.map((n) => n.peerId).filter((id) => !pagePeers.includes(id ?? '')), [], 'no node but the pages')
  const ranged = t.nodes.filter((n) => n.ready)
  assert.ok(ranged.length >= 2 && ranged.every((n) => n.layerEnd - n.layerStart < t.totalLayers), `page ranges: ${JSON.stringify(ranged.map((n) => [n.layerStart, n.layerEnd]))}`)
  for (const w of serving.workers) assert.ok(w.pageRssBytes && w.pageRssBytes > 10 * MB && w.browserRssBytes && w.browserRssBytes > 10 * MB, `memory measured: ${JSON.stringify(w)}`)
  process.stdout.write(`# memory per worker (page + its Chromium, PSS): ${serving.workers.map((w) => `${Math.round((w.pageRssBytes! + w.browserRssBytes!) / MB)} MB`).join(', ')}\n`)

  const first = await complete()
  assert.equal(first.usage.completion_tokens, expected(p).length)
  assert.equal(first.choices[0]!.text, p.greedy_text)

  // Crash the renderer of a page that serves a range, through CDP: the test attaches to the worker's
  // browser at the DevTools URL the farm reports (--devtools) and sends Page.crash to its page.
  const victim = serving.workers.find((w) => w.phase === 'serving' && ranged.some((n) => n.peerId === w.peerId))!
  const browser = await chromium.connectOverCDP(victim.devtoolsUrl!)
  try {
    const page = browser.contexts().flatMap((c) => c.pages()).find((pg) => pg.url().startsWith('http'))
    assert.ok(page, `the victim's app page: ${browser.contexts().flatMap((c) => c.pages()).map((pg) => pg.url()).join(', ')}`)
    const cdp = await page.context().newCDPSession(page)
    const crashed = new Promise<void>((resolve) => page.once('crash', () => resolve()))
    // No answer comes: the renderer is gone before it could send one.
    void cdp.send('Page.crash').catch(() => undefined)
    await Promise.race([crashed, new Promise((_, reject) => setTimeout(() => reject(new Error('no crash event within 30 s')), 30_000).unref())])
  } finally {
    await browser.close()
  }
  await waitFor('the Oracle to drop the crashed page', async () => ((await topology()).nodes.some((n) => n.peerId === victim.peerId && n.ready) ? undefined : true), 30_000, logs)
  // Back in the network with its identity: serving again, or waiting as a spare when the Oracle has
  // already given its range to another page (a crashed agent is no copy once its grace is over).
  const back = await waitFor('the crashed worker restarted and back with the Oracle', async () => {
    const w = (await status()).workers.find((x) => x.worker === victim.worker)!
    return w.restarts >= 1 && w.state === 'running' && (w.phase === 'serving' || w.phase === 'waiting') ? w : undefined
  }, 240_000, logs)
  assert.equal(back.peerId, victim.peerId, 'the same peer id after the restart (its profile\'s IndexedDB identity)')
  assert.equal(back.lastFailure, 'the renderer crashed', 'seen as a renderer crash (its browser stayed up until the farm closed it)')
  assert.equal(back.restarts, 1)
  assert.notEqual(back.devtoolsUrl, victim.devtoolsUrl, 'a new browser')
  assert.match(farm.log.join(''), new RegExp(`"worker":${victim.worker}.*"peerId":"${victim.peerId}".*worker failed: restarting`), 'the failure is logged with the worker and its peer id')
  await waitFor('every layer served again (the Oracle reassigned the crashed page\'s range)', async () => (whole(await topology()) ? true : undefined), 120_000, logs)
  assert.deepEqual((await topology()).nodes.map((n) => n.peerId).filter((id) => !pagePeers.includes(id ?? '')), [], 'still no node but the pages')
  const second = await complete()
  assert.equal(second.choices[0]!.text, p.greedy_text)
  assert.equal(second.usage.completion_tokens, expected(p).length)

  // What the pages served, as the Oracle counted it, in the farm's status and /metrics; each serving
  // page bound to its worker wallet (the farm wallet's), which the Oracle credits; the rewards claimed into the farm wallet.
  const pc = pageChainOf({ id: devnet.chainId, rpcUrl: devnet.rpcUrl, contracts: devnet.contracts })
  const reader = createPublicClient({ chain: pc.chain, transport: http(devnet.rpcUrl) })
  const credited = await waitFor('a serving page counted by the Oracle and bound to its worker wallet', async () => {
    const s = await status()
    const w = s.workers.find((x) => x.phase === 'serving' && x.wallet && (x.served?.tokens ?? 0) > 0 && x.served?.wallet === x.wallet)
    return w && s.servedTokensPerSecond > 0 ? w : undefined
  }, 120_000, logs)
  const record = (await getAgent(reader, { config: pc.config, agent: credited.wallet as Address }))!
  assert.equal((await verifyAgentBinding({ chainId: pc.config.chainId, agent: record })).peerId, credited.peerId, 'the worker wallet is bound to its page\'s peer on chain')
  assert.notEqual(credited.wallet, privateKeyToAccount(farmKey).address, 'a wallet of its own (one peer per wallet in the registry)')
  const oracleCount = servedSnapshotSchema.parse(await (await fetch(`${oracleUrl}${SERVED_PATH}`)).json()).nodes.find((n) => n.peerId === credited.peerId)
  assert.equal(oracleCount?.wallet, credited.wallet)
  const metrics = parsePromText(await (await fetch(statusUrl.replace(/\/status$/, '/metrics'))).text())
  assert.ok((promValue(metrics, 'shardmesh_farm_worker_served_tokens_per_second', { worker: String(credited.worker) }) ?? 0) > 0)
  assert.ok((promValue(metrics, 'shardmesh_farm_served_tokens_per_second') ?? 0) > 0)
  assert.equal(promValue(metrics, 'shardmesh_farm_worker_up', { worker: String(credited.worker), state: 'serving' }), 1)
  const farmBefore = await getBalance(reader, { address: privateKeyToAccount(farmKey).address })
  // Epochs close (mined ahead here), the Oracle reports and distributes; the farm claims and forwards.
  const perEpoch = 30n
  const claimed = await waitFor('rewards claimed into the farm wallet', async () => {
    await reader.request({ method: 'anvil_mine', params: [numberToHex(perEpoch / 3n), '0x0'] } as never)
    await new Promise((r) => setTimeout(r, 2000))
    const w = (await status()).wallet
    return w && BigInt(w.claimedWei) > 0n ? BigInt(w.claimedWei) : undefined
  }, 240_000, logs)
  process.stdout.write(`# farm claimed ${claimed} wei for its pages\n`)
  const forwarded = [...farm.log.join('').matchAll(/"forwardedWei":"(\d+)"/g)].reduce((sum, m) => sum + BigInt(m[1]!), 0n)
  assert.ok(forwarded >= claimed, `forwarded ${forwarded} to the farm wallet`)
  // It received them (less what it paid for the workers' gas: 0.02 ETH a worker at most, and their transactions).
  assert.ok((await getBalance(reader, { address: privateKeyToAccount(farmKey).address })) > farmBefore - parseEther('0.1'))

  // SIGTERM: every page tells the Oracle it leaves, the farm exits 0, no Chromium is left.
  assert.ok((await chromiumsUnder(profiles)).length > 0)
  const t1 = Date.now()
  farm.child.kill('SIGTERM')
  await waitFor('the farm to exit', async () => (farm.child.exitCode !== null ? true : undefined), 60_000, logs)
  process.stdout.write(`# SIGTERM to exit: ${Date.now() - t1} ms\n`)
  assert.equal(farm.child.exitCode, 0, logs())
  assert.equal(farm.log.join('').match(/worker stopped: it told the Oracle it leaves/g)?.length, 3, `every page left the Oracle: ${logs()}`)
  // As after "Stop" in the app: the Oracle drops a page that left within 5 s (no silence window).
  const listed = async () => (await topology()).nodes.filter((n) => pagePeers.includes(n.peerId ?? '')).map((n) => n.peerId)
  await waitFor('the Oracle to drop the pages', async () => ((await listed()).length === 0 ? true : undefined), 5000, logs).catch(async () => assert.fail(`the Oracle still lists ${JSON.stringify(await listed())}`))
  assert.deepEqual(await chromiumsUnder(profiles), [], 'no Chromium left')
})
