import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { silentLogger } from '../../shared/logger.ts'
import { DEFAULT_MODEL_DIR } from '../model/resolveModelSource.ts'
import { rawGet, rawRequest } from '../../testing/rawHttp.ts'
import { createOracleCore, type OracleCore } from './createOracleCore.ts'
import { createOracleServer, type OracleServer } from './createOracleServer.ts'
import { readModelInfo } from './modelInfo.ts'
import type { OracleStore } from './store/oracleStore.ts'
import { createSqliteOracleStore } from './store/sqliteOracleStore.ts'

const MODEL = 'docs-llama-7m'

describe('Oracle HTTP server: hostile requests', () => {
  let dir: string
  let store: OracleStore
  let core: OracleCore
  let oracle: OracleServer
  let weights: Buffer

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oracle-server-'))
    store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
    core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, replicas: 1 })
    weights = await readFile(join(DEFAULT_MODEL_DIR, 'model.safetensors'))
    oracle = await createOracleServer({
      core,
      store,
      port: 0,
      logger: silentLogger,
      modelFolders: new Map([[MODEL, DEFAULT_MODEL_DIR]]),
      // Room for two whole reads of the weights; a whole one more only after 20 s of refill.
      modelBandwidth: { burstBytes: 2 * weights.length, bytesPerSecond: weights.length / 20 },
    })
  })
  after(async () => {
    await oracle.close()
    await core.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  const healthy = async () => assert.equal((await rawRequest(oracle.url, rawGet('/health'))).status, 200)

  test('a bad percent-encoding, a protocol-relative target, junk targets: 400 with a message, and the server goes on', async () => {
    for (const target of [`/models/%E0%A4%A/config.json`, `/models/${MODEL}/%E0%A4%A`, '//a:b', '//[::1', '*', 'http://[::1/x', 'nonsense']) {
      const r = await rawRequest(oracle.url, rawGet(target))
      assert.ok(r.status >= 400 && r.status < 500, `${target}: ${r.status}`)
      assert.equal(typeof JSON.parse(r.body).message, 'string', target)
      await healthy()
    }
    // Absolute-form is a valid request target.
    const absolute = await rawRequest(oracle.url, rawGet(`http://oracle.example/health`))
    assert.equal(absolute.status, 200)
  })

  test('model files: single ranges 206, unsatisfiable 416 with bytes */size, several ranges the whole file', async () => {
    const base = `/models/${MODEL}/model.safetensors`
    const head = await rawRequest(oracle.url, [`HEAD ${base} HTTP/1.1`, 'Host: x', 'Range: bytes=-8', 'Connection: close', '', ''].join('\r\n'))
    assert.equal(head.status, 206)
    assert.equal(head.headers['content-range'], `bytes ${weights.length - 8}-${weights.length - 1}/${weights.length}`)
    for (const range of [`bytes=${weights.length}-`, 'bytes=-0', 'bytes=9-3', `bytes=${weights.length}-${weights.length + 5},${weights.length + 9}-`]) {
      const r = await fetch(new URL(base, oracle.url), { headers: { Range: range } })
      assert.equal(r.status, 416, range)
      assert.equal(r.headers.get('content-range'), `bytes */${weights.length}`, range)
      assert.equal(typeof (await r.json()).message, 'string')
    }
    const ranged = await fetch(new URL(`/models/${MODEL}/config.json`, oracle.url), { headers: { Range: 'bytes=0-1,4-5' } })
    assert.equal(ranged.status, 200)
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), await readFile(join(DEFAULT_MODEL_DIR, 'config.json')))
  })

  test('model reads are inside a per-IP byte budget: 429 with a message past it, a small read served again after a short refill', async () => {
    const url = new URL(`/models/${MODEL}/model.safetensors`, oracle.url)
    // Far more requests than the per-IP request budget would allow if model reads were inside it.
    for (let i = 0; i < 150; i++) {
      const r = await fetch(url, { method: 'HEAD' })
      assert.equal(r.status, 200)
    }
    let served = 0
    let refused: Response | undefined
    for (let i = 0; i < 4 && !refused; i++) {
      const r = await fetch(url)
      if (r.status === 200) served += (await r.arrayBuffer()).byteLength
      else refused = r
    }
    assert.equal(served, 2 * weights.length)
    assert.equal(refused?.status, 429)
    assert.match((await refused!.json()).message, /bandwidth/)
    // Other routes are not charged to the byte budget.
    await healthy()
    await new Promise((r) => setTimeout(r, 200))
    const again = await fetch(url, { headers: { Range: 'bytes=0-7' } })
    assert.equal(again.status, 206)
    await again.arrayBuffer()
  })
})
