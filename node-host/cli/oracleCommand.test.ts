import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { createPlumiseOracleClient } from '../../shared/oracle/plumiseOracleClient.ts'
import { REPO_ROOT } from '../../testing/fixtures.ts'
import { parseOracleArgs } from './oracleCommand.ts'

/** Starts `shardmesh oracle` and resolves with its URL once it logs it. */
function startOracle(db: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'node-host/cli/main.ts'), 'oracle', '--port', '0', '--db', db, '--silence-s', '600'], { stdio: ['ignore', 'ignore', 'pipe'] })
  return new Promise((resolve, reject) => {
    let log = ''
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log += chunk
      const m = /oracle listening at (http:\/\/[\d.]+:\d+)/.exec(log)
      if (m) resolve({ child, url: m[1]! })
    })
    child.once('exit', (code) => reject(new Error(`oracle exited with ${code} before listening:\n${log}`)))
  })
}

const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))

test('parses its flags with defaults', () => {
  const o = parseOracleArgs(['--model', 'a/b', '--model', './c', '--silence-s', '30'])
  const { db: _, replicas, ...rest } = o
  assert.deepEqual(rest, { port: 3100, host: '127.0.0.1', model: ['a/b', './c'], silenceS: 30, reconnectGraceS: 5 })
  assert.equal(parseOracleArgs(['--reconnect-grace-s', '2']).reconnectGraceS, 2)
  assert.ok(Number.isInteger(replicas) && replicas >= 1)
  assert.equal(parseOracleArgs(['--replicas', '3']).replicas, 3)
  assert.equal(parseOracleArgs(['--idle-spares']).idleSpares, true)
  assert.equal(parseOracleArgs(['--pay-sampled-only']).paySampledOnly, true)
  assert.match(o.db, /oracle\.db$/)
  assert.throws(() => parseOracleArgs(['--port', 'x']), /--port/)
})

test('shardmesh oracle serves, stops cleanly on SIGTERM, and a restart on the same database keeps the nodes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oracle-cli-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const db = join(dir, 'oracle.db')
  const account = privateKeyToAccount(generatePrivateKey())

  const first = await startOracle(db)
  const client = createPlumiseOracleClient({ baseUrl: first.url, account })
  const reg = await client.register({ grpcEndpoint: 'http://127.0.0.1:50051', httpEndpoint: 'http://127.0.0.1:31331', model: 'docs-llama-7m', ramMb: 8192, device: 'cpu', vramMb: 0 })
  assert.deepEqual([reg.layerStart, reg.layerEnd, reg.totalLayers], [0, 8, 8])
  await client.ready({ model: 'docs-llama-7m' })
  const code = exited(first.child)
  first.child.kill('SIGTERM')
  assert.equal(await code, 0)

  const second = await startOracle(db)
  try {
    const topo = await createPlumiseOracleClient({ baseUrl: second.url, account }).topology('docs-llama-7m')
    assert.deepEqual(topo.nodes.map((n) => [n.nodeAddress, n.layerStart, n.layerEnd, n.ready]), [[account.address.toLowerCase(), 0, 8, true]])
  } finally {
    const code2 = exited(second.child)
    second.child.kill('SIGINT')
    assert.equal(await code2, 0)
  }
})
