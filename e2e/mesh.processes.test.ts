import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { loadFixture, REPO_ROOT, type FixturePrompt } from '../testing/fixtures.ts'
import { freePort } from '../node-host/net/freePort.ts'

const MAIN = join(REPO_ROOT, 'node-host', 'cli', 'main.ts')
const run = promisify(execFile)


type Host = { child: ChildProcess; log: string[]; ready: Promise<void> }

function startHost(args: string[]): Host {
  const child = spawn(process.execPath, [MAIN, 'start', '--device', 'cpu', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } })
  const log: string[] = []
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      log.push(chunk.toString())
      if (/"msg":"serving"/.test(log.join(''))) resolve()
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`host exited with ${code} before serving: ${log.join('').slice(-2000)}`)))
  })
  return { child, log, ready }
}

/** Reads Plumise Server-Sent Events, calling back on each token. */
async function streamTokens(url: string, body: unknown, onToken: (count: number) => void): Promise<string> {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
  assert.equal(res.status, 200)
  const decoder = new TextDecoder()
  let buffer = ''
  let text = ''
  let count = 0
  const reader = res.body!.getReader()
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += decoder.decode(value, { stream: true })
    let at
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const data = buffer.slice(0, at).replace(/^data: /, '')
      buffer = buffer.slice(at + 2)
      if (data === '[DONE]') return text
      const event = JSON.parse(data) as { token?: string; error?: string }
      if (event.error) throw new Error(event.error)
      text += event.token
      onToken(++count)
    }
  }
  return text
}

describe('mesh: node hosts as separate processes on loopback', () => {
  const hosts: Host[] = []
  let api: string
  let ports: Record<'a' | 'm1' | 'm2' | 'c', number>
  let dir: string
  let p0: FixturePrompt

  before(async () => {
    p0 = (await loadFixture('docs-llama-7m')).prompts[0]!
    dir = await mkdtemp(join(tmpdir(), 'shardmesh-mesh-'))
    ports = { a: await freePort(), m1: await freePort(), m2: await freePort(), c: await freePort() }
    const at = (p: number) => `/ip4/127.0.0.1/tcp/${p}`
    const m1 = startHost(['--layers', '3-6', '--listen', at(ports.m1), '--identity', join(dir, 'm1.key')])
    const c = startHost(['--layers', '6-8', '--listen', at(ports.c), '--identity', join(dir, 'c.key')])
    hosts.push(m1, c)
    await Promise.all([m1.ready, c.ready])
    const apiPort = await freePort()
    // The origin also knows the spare's address; the spare starts later.
    const a = startHost(['--layers', '0-3', '--listen', at(ports.a), '--identity', join(dir, 'a.key'), '--api-port', String(apiPort), '--peer', at(ports.m1), '--peer', at(ports.c), '--peer', at(ports.m2)])
    hosts.push(a)
    await a.ready
    api = `http://127.0.0.1:${apiPort}`
  })
  after(() => {
    for (const h of hosts) h.child.kill('SIGKILL')
  })

  test('three hosts give the reference greedy tokens through the HTTP API', async () => {
    const r = await (await fetch(`${api}/api/v1/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: p0.prompt, parameters: { max_new_tokens: p0.new_tokens, do_sample: false, repetition_penalty: 1 } }) })).json()
    assert.equal(r.generated_text, p0.greedy_text)
    assert.equal(r.num_tokens, p0.new_tokens)
    const status = await (await fetch(`${api}/api/v1/pipeline/status`)).json()
    assert.deepEqual(status.assignment, { start: 0, end: 3, total: 8, is_full: false })
    assert.deepEqual(status.topology.nodes.map((n: { layerStart: number; layerEnd: number }) => [n.layerStart, n.layerEnd]), [[0, 3], [3, 6], [6, 8]])
  })

  test('shardmesh generate --peer runs this process as an origin against the hosts', async () => {
    const { stdout } = await run(process.execPath, [MAIN, 'generate', '--peer', `/ip4/127.0.0.1/tcp/${ports.c}`, '--prompt', p0.prompt, '--max-new-tokens', String(p0.new_tokens), '--json'])
    const out = JSON.parse(stdout)
    assert.deepEqual(out.output_ids, p0.greedy_new_ids)
    assert.deepEqual(out.stages, [[0, 3], [3, 6], [6, 8]])
    assert.equal(out.device, 'mesh')
  })

  test('the middle host is killed mid-generation while a spare serves its range: the same tokens', async () => {
    const spare = startHost(['--layers', '3-6', '--listen', `/ip4/127.0.0.1/tcp/${ports.m2}`, '--identity', join(dir, 'm2.key')])
    hosts.push(spare)
    await spare.ready
    const middle = hosts[0]!
    let killed = false
    const text = await streamTokens(`${api}/api/v1/generate`, { inputs: p0.prompt, parameters: { max_new_tokens: p0.new_tokens, do_sample: false, repetition_penalty: 1 }, stream: true }, (n) => {
      if (n === 10 && !killed) {
        killed = true
        middle.child.kill('SIGKILL')
      }
    })
    assert.ok(killed, 'the middle host was killed during the generation')
    assert.equal(text, p0.greedy_text)
    assert.match(hosts[2]!.log.join(''), /route failed; re-planning and replaying/)
  })

  test('a host stops cleanly on SIGTERM', async () => {
    const c = hosts[1]!
    const exit = new Promise<number | null>((resolve) => c.child.once('exit', (code) => resolve(code)))
    c.child.kill('SIGTERM')
    assert.equal(await exit, 0)
  })
})
