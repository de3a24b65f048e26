import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { appConfigSchema } from '../../shared/app/appConfig.ts'
import { createLogger } from '../logger.ts'
import { createOracle, type Oracle } from '../oracle/createOracle.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { createAppServer, type AppServer } from './createAppServer.ts'
import { networkAppConfig } from './networkAppConfig.ts'

let dir: string
let oracle: Oracle
let app: AppServer

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shardmesh-app-server-'))
  const built = join(dir, 'dist')
  await mkdir(join(built, 'assets'), { recursive: true })
  await writeFile(join(built, 'index.html'), '<!doctype html><title>app</title>')
  await writeFile(join(built, 'assets', 'main.js'), 'export {}')
  await writeFile(join(dir, 'secret.txt'), 'not served')
  await writeFile(
    join(dir, 'devnet.json'),
    JSON.stringify({
      rpcUrl: 'http://127.0.0.1:8545',
      chainId: 31337,
      contracts: { agentRegistry: `0x${'1'.repeat(40)}`, rewardPool: `0x${'2'.repeat(40)}` },
      precompiles: { verifyInference: `0x${'3'.repeat(40)}`, agentRegister: `0x${'4'.repeat(40)}`, agentHeartbeat: `0x${'5'.repeat(40)}`, claimReward: `0x${'6'.repeat(40)}` },
      verifyInferenceLayout: 'agent-last',
      blocksPerEpoch: 30,
      accounts: { deployer: `0x${'7'.repeat(40)}`, oracle: `0x${'8'.repeat(40)}` },
    }),
  )
  oracle = await createOracle({ db: join(dir, 'oracle.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, logger: createLogger('oracle', 'silent') })
  app = await createAppServer({
    dir: built,
    oracle: oracle.url,
    config: networkAppConfig({ oracle: oracle.url, relays: ['/ip4/127.0.0.1/tcp/1/ws/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'], devnetFile: join(dir, 'devnet.json'), api: 'http://127.0.0.1:31331' }),
    port: 0,
  })
})
after(async () => {
  await app.close()
  await oracle.close()
  await rm(dir, { recursive: true, force: true })
})

test('GET /config.json: the Oracle, its models (through the /oracle window), relays, chain and API, valid for the page', async () => {
  const res = await fetch(new URL('config.json', app.url))
  assert.equal(res.status, 200)
  const config = appConfigSchema.parse(await res.json())
  assert.equal(config.oracle, oracle.url)
  assert.equal(config.oracleHttp, '/oracle')
  assert.deepEqual(config.models, [{ name: 'docs-llama-7m', url: '/oracle/models/docs-llama-7m/' }])
  assert.equal(config.relays.length, 1)
  assert.deepEqual(config.chain, { id: 31337, rpcUrl: 'http://127.0.0.1:8545', contracts: { agentRegistry: `0x${'1'.repeat(40)}`, rewardPool: `0x${'2'.repeat(40)}` } })
  assert.equal(config.api, 'http://127.0.0.1:31331')
})

test('the /oracle window: routes, Range reads of model files, and the event stream pass through; writes do not', async () => {
  assert.equal(((await (await fetch(new URL('oracle/health', app.url))).json()) as { status: string }).status, 'ok')
  const range = await fetch(new URL('oracle/models/docs-llama-7m/model.safetensors', app.url), { headers: { Range: 'bytes=0-7' } })
  assert.equal(range.status, 206)
  assert.equal((await range.arrayBuffer()).byteLength, 8)
  const controller = new AbortController()
  const events = await fetch(new URL('oracle/api/v1/pipeline/events?model=docs-llama-7m', app.url), { signal: controller.signal })
  assert.match(events.headers.get('content-type') ?? '', /text\/event-stream/)
  const reader = events.body!.getReader()
  const first = new TextDecoder().decode((await reader.read()).value)
  assert.match(first, /^event: pipeline:topology\ndata: \{"model":"docs-llama-7m"/)
  controller.abort()
  assert.equal((await fetch(new URL('oracle/api/v1/pipeline/register', app.url), { method: 'POST', body: '{}' })).status, 405)
})

test('static files with their types; client-side views get the app; nothing outside the build', async () => {
  const js = await fetch(new URL('assets/main.js', app.url))
  assert.equal(js.status, 200)
  assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/)
  const view = await fetch(new URL('chat', app.url))
  assert.equal(view.status, 200)
  assert.equal(await view.text(), '<!doctype html><title>app</title>')
  assert.equal((await fetch(new URL('assets/missing.js', app.url))).status, 404)
  assert.equal((await fetch(new URL('..%2Fsecret.txt', app.url))).status, 403, 'an encoded ../ does not leave the build')
})

test('while the app is being built pages get a 503 that reloads itself; an Oracle that is down is said in words', async () => {
  const building = await createAppServer({ dir: new Promise<string>(() => {}), oracle: 'http://127.0.0.1:9', config: networkAppConfig({ oracle: 'http://127.0.0.1:9' }), port: 0 })
  try {
    const res = await fetch(building.url)
    assert.equal(res.status, 503)
    assert.match(await res.text(), /being built/)
    const config = await fetch(new URL('config.json', building.url))
    assert.equal(config.status, 502)
    assert.match(await config.text(), /configuration unavailable/)
    const proxied = await fetch(new URL('oracle/health', building.url))
    assert.equal(proxied.status, 502)
    assert.match(await proxied.text(), /unreachable/)
  } finally {
    await building.close()
  }
})
