import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { freePort } from '../node-host/net/freePort.ts'
import { REPO_ROOT } from '../testing/fixtures.ts'

const MAIN = join(REPO_ROOT, 'node-host', 'cli', 'main.ts')

test('npm start (shardmesh local): devnet, oracle and three hosts come up, the printed curl works, Ctrl-C stops everything', { timeout: 300_000 }, async () => {
  const apiPort = await freePort()
  const oraclePort = await freePort()
  const child = spawn(process.execPath, [MAIN, 'local', '--api-port', String(apiPort), '--oracle-port', String(oraclePort)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } })
  let out = ''
  let err = ''
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  try {
    const deadline = Date.now() + 240_000
    while (!out.includes('Ctrl-C stops the network') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 250))
    assert.match(out, /Ctrl-C stops the network/, `no banner; stderr: ${err.slice(-3000)}`)
    assert.match(out, /Chain: anvil at http:\/\/127\.0\.0\.1:\d+ \(chain id 31337\)/)

    // The first curl line the banner prints, run as it is written.
    const line = out.split('\n').find((l) => l.trim().startsWith('curl -s http') && l.includes('/v1/completions'))!
    const body = /-d '(.*)'$/.exec(line.trim())![1]!
    const url = /curl -s (\S+)/.exec(line)![1]!
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
    assert.equal(res.status, 200)
    const completion = (await res.json()) as { choices: Array<{ text: string }>; usage: { completion_tokens: number } }
    assert.equal(completion.usage.completion_tokens, 32)
    assert.ok(completion.choices[0]!.text.length > 0)

    const topology = (await (await fetch(`http://127.0.0.1:${oraclePort}/api/v1/pipeline/topology?model=docs-llama-7m`)).json()) as { nodes: Array<{ layerStart: number; layerEnd: number; ready: boolean }> }
    assert.equal(topology.nodes.length, 3, 'three hosts hold ranges (a pipeline and a second copy)')
    for (let l = 0; l < 8; l++) assert.ok(topology.nodes.some((n) => n.ready && n.layerStart <= l && l < n.layerEnd), `layer ${l} is served`)
  } finally {
    child.kill('SIGINT')
  }
  assert.equal(await exited, 0)
  // Nothing it started is left behind: no oracle, host or anvil holds the ports.
  await assert.rejects(fetch(`http://127.0.0.1:${oraclePort}/health`))
  await assert.rejects(fetch(`http://127.0.0.1:${apiPort}/health`))
})
