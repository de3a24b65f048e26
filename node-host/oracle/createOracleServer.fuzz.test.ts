import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import fc from 'fast-check'
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts'
import { silentLogger } from '../../shared/logger.ts'
import { DEFAULT_MODEL_DIR } from '../model/resolveModelSource.ts'
import { assertSafeAnswer, encodeRequest, requestArbitrary } from '../../testing/httpFuzz.ts'
import { rawGet, rawRequest } from '../../testing/rawHttp.ts'
import { createOracleCore, type OracleCore } from './createOracleCore.ts'
import { createOracleServer, type OracleServer } from './createOracleServer.ts'
import { readModelInfo } from './modelInfo.ts'
import type { OracleStore } from './store/oracleStore.ts'
import { createSqliteOracleStore } from './store/sqliteOracleStore.ts'

const MODEL = 'docs-llama-7m'
let dir: string
let store: OracleStore
let core: OracleCore
let oracle: OracleServer

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oracle-fuzz-'))
  store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
  core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, replicas: 1 })
  // Budgets high enough that the handlers, not the limiters, answer most requests (429 would pass too).
  oracle = await createOracleServer({
    core,
    store,
    port: 0,
    logger: silentLogger,
    modelFolders: new Map([[MODEL, DEFAULT_MODEL_DIR]]),
    ipRateLimit: { burst: 100_000, perSecond: 100_000 },
    addressRateLimit: { burst: 100_000, perSecond: 100_000 },
  })
})
after(async () => {
  await oracle.close()
  await core.close()
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

const address = privateKeyToAccount(generatePrivateKey()).address
/** Near-valid bodies of the signed routes: right keys, random or wrong values (they are never correctly signed). */
const bodies = fc.oneof(
  fc.record({ address: fc.constantFrom(address, address.toLowerCase(), '0x', ''), grpcEndpoint: fc.constantFrom('127.0.0.1:1', 'x', ''), httpEndpoint: fc.constantFrom('http://127.0.0.1:2', ''), model: fc.constantFrom(MODEL, 'other', ''), ramMb: fc.oneof(fc.nat(), fc.double()), device: fc.string({ maxLength: 60 }), vramMb: fc.integer(), timestamp: fc.oneof(fc.constant(Math.floor(Date.now() / 1000)), fc.integer()), signature: fc.constantFrom(`0x${'ab'.repeat(65)}`, '0x', 'zz') }, { requiredKeys: [] }),
  fc.record({ wallet: fc.constantFrom(address, 'x'), tokensProcessed: fc.integer(), avgLatencyMs: fc.double(), uptimeSeconds: fc.double(), requestCount: fc.integer(), timestamp: fc.integer(), signature: fc.constant(`0x${'cd'.repeat(65)}`), proofs: fc.array(fc.record({ modelHash: fc.string(), inputHash: fc.string(), outputHash: fc.string(), tokenCount: fc.integer() }), { maxLength: 3 }) }, { requiredKeys: [] }),
).map((b) => JSON.stringify(b))

const routes = [
  '/health',
  '/api/v1/oracle/stats',
  '/api/v1/pipeline/register',
  '/api/v1/pipeline/ready',
  '/api/v1/pipeline/topology',
  '/api/v1/pipeline/events',
  '/api/v1/metrics/report',
  `/models/${MODEL}/config.json`,
  `/models/${MODEL}/model.safetensors`,
  `/models/${MODEL}/`,
  '/models/',
]

test('fuzz: random methods, targets, headers and bodies over raw sockets never crash the Oracle nor get a 5xx; errors carry a JSON message', async () => {
  // About 8 s on a loaded 2-core machine: past the deadline the remaining runs return at once.
  const deadline = Date.now() + 8_000
  let runs = 0
  const statuses = new Map<number, number>()
  await fc.assert(
    fc.asyncProperty(requestArbitrary({ routes, bodies, hosts: ['127.0.0.1', 'localhost:1', 'oracle.example'] }), async (req) => {
      if (Date.now() > deadline) return
      runs++
      const res = await rawRequest(oracle.url, encodeRequest(req), 3000).catch((e: Error) => {
        throw new Error(`${req.method} ${req.target.slice(0, 120)}: ${e.message}`)
      })
      assertSafeAnswer(req, res)
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    }),
    { numRuns: 400 },
  )
  const health = await rawRequest(oracle.url, rawGet('/health'))
  assert.equal(health.status, 200)
  assert.ok(runs >= 50, `only ${runs} requests in the time budget`)
  // Both the handlers and the refusals were reached.
  assert.ok([...statuses.keys()].some((s) => s < 300) && [...statuses.keys()].some((s) => s >= 400), JSON.stringify([...statuses]))
  console.log(`oracle fuzz: ${runs} requests, answers by status ${JSON.stringify(Object.fromEntries(statuses))}`)
})
