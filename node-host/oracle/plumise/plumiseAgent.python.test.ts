import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { silentLogger } from '../../../shared/logger.ts'
import { registerMessage } from '../../../shared/oracle/plumiseSigning.ts'
import { REPO_ROOT } from '../../../testing/fixtures.ts'
import { createOracleCore, type OracleCore } from '../createOracleCore.ts'
import { createOracleServer, type OracleServer } from '../createOracleServer.ts'
import { readModelInfo } from '../modelInfo.ts'
import type { OracleStore } from '../store/oracleStore.ts'
import { createSqliteOracleStore } from '../store/sqliteOracleStore.ts'

/** The stdlib-only Python agent (its own Keccak, secp256k1 and RFC 6979), as the upstream agent signs. */
const AGENT = join(REPO_ROOT, 'e2e/plumise/plumise_agent.py')
const python = async (args: string[]) => (await promisify(execFile)('python3', [AGENT, ...args], { encoding: 'utf8' })).stdout

let store: OracleStore
let core: OracleCore
let oracle: OracleServer
before(async () => {
  store = createSqliteOracleStore({ path: ':memory:' })
  // The Oracle's clock moves 20 s on once a node is ready: the agent reports after serving for a
  // while, and a node is booked no more than the Oracle saw it serve (createOracleCore's BookingBounds).
  let servedMs = 0
  core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, replicas: 1, now: () => Date.now() + servedMs })
  core.events.on('nodeStatus', (e) => {
    if (e.ready) servedMs += 20_000
  })
  oracle = await createOracleServer({ core, store, port: 0, logger: silentLogger })
})
after(async () => {
  await oracle.close()
  await core.close()
  await store.close()
})

test('the Python agent derives the same address and signs the same bytes as viem (fixed and random keys, non-ASCII)', async () => {
  const keys = ['0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318' as const, ...Array.from({ length: 4 }, () => generatePrivateKey())]
  for (const key of keys) {
    const account = privateKeyToAccount(key)
    const messages = [
      'hello',
      registerMessage({ address: account.address, grpcEndpoint: 'http://10.0.0.7:50051', httpEndpoint: 'http://10.0.0.7:31331', model: 'modèle/中文-🦙', ramMb: 1, device: 'cuda', vramMb: 2, timestamp: 3 }),
      `random ${key.slice(2, 18)} ü`,
    ]
    const out = JSON.parse(await python(['sign', '--key', key, ...messages.flatMap((m) => ['--message', m])])) as { address: string; signatures: string[] }
    assert.equal(out.address, account.address)
    assert.deepEqual(out.signatures, await Promise.all(messages.map((message) => account.signMessage({ message }))))
  }
})

test('the Python agent registers with a real oracle server, gets a layer range, reports ready and metrics', async () => {
  const key = generatePrivateKey()
  const address = privateKeyToAccount(key).address
  const out = await python([
    'run', '--oracle', oracle.url, '--key', key, '--model', 'docs-llama-7m', '--device', 'cuda:0 (GeForce ü)', '--vram-mb', '8192', '--tokens', '42', '--requests', '3',
  ])
  const calls = Object.fromEntries(out.trim().split('\n').map((line) => {
    const r = JSON.parse(line) as { call: string; status: number; body: Record<string, unknown> }
    return [r.call, r]
  }))
  assert.deepEqual(calls.register, { call: 'register', status: 200, body: { success: true, message: 'Pipeline node registered successfully', layerStart: 0, layerEnd: 8, totalLayers: 8 } })
  assert.deepEqual(calls.ready!.body, { success: true, message: 'Pipeline node marked as ready' })
  assert.deepEqual(calls.metrics!.body, { success: true, message: 'Metrics recorded successfully', shouldReset: false })
  const topo = calls.topology!.body as { nodes: Array<{ nodeAddress: string; device: string; ready: boolean; layerStart: number; layerEnd: number }> }
  assert.deepEqual(
    topo.nodes.map((n) => ({ nodeAddress: n.nodeAddress, device: n.device, ready: n.ready, layerStart: n.layerStart, layerEnd: n.layerEnd })),
    [{ nodeAddress: address.toLowerCase(), device: 'cuda:0 (GeForce ü)', ready: true, layerStart: 0, layerEnd: 8 }],
  )
  const [totals] = await store.metricsTotals(address.toLowerCase(), 0)
  assert.equal(totals!.tokens, 42)
  assert.equal(totals!.requests, 3)
})
