import assert from 'node:assert/strict'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { freePort } from '../node-host/net/freePort.ts'
import { loadFixture } from '../testing/fixtures.ts'
import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'

type Topology = { nodes: Array<{ layerStart: number; layerEnd: number; ready: boolean; peerId: string | null }> }

const procs: CliProcess[] = []
after(() => {
  for (const p of procs) p.child.kill('SIGKILL')
})

test('the last copy of a range is killed: an idle connected host takes it and the origin answers again within 15 s; requests meanwhile wait or get 503 with Retry-After', { timeout: 300_000 }, async () => {
  const p0 = (await loadFixture('docs-llama-7m')).prompts[0]!
  const dir = await mkdtemp(join(tmpdir(), 'shardmesh-repair-'))
  const oraclePort = await freePort()
  const oracleUrl = `http://127.0.0.1:${oraclePort}`
  const allLogs = () => procs.map((p) => p.log.join('')).join('\n---\n')
  // One copy wanted: two hosts (each a little over half the weights) make the pipeline; a third stays idle
  // (--idle-spares: this checks the repair by an idle host, not the default where it would hold a copy already).
  // The silence window is long: only the closed channel (and its 5 s grace) can trigger the repair.
  const oracle = spawnCli(['oracle', '--port', String(oraclePort), '--db', join(dir, 'oracle.db'), '--replicas', '1', '--idle-spares', '--silence-s', '600', '--reconnect-grace-s', '5'])
  procs.push(oracle)
  await waitFor('the oracle', async () => ((await fetch(`${oracleUrl}/health`)).ok ? true : undefined), 30_000, allLogs)
  const topology = async () => (await (await fetch(`${oracleUrl}/api/v1/pipeline/topology?model=docs-llama-7m`)).json()) as Topology
  const apiPort = await freePort()
  const api = `http://127.0.0.1:${apiPort}`
  const startHost = (i: number, extra: string[] = []) => {
    const h = spawnCli(['start', '--oracle', oracleUrl, '--device', 'cpu', '--memory-mb', '9', '--heartbeat-s', '1', '--listen', '/ip4/127.0.0.1/tcp/0', '--identity', join(dir, `host-${i}.key`), ...extra])
    procs.push(h)
    return h
  }
  const origin = startHost(0, ['--api-port', String(apiPort)])
  const other = startHost(1)
  await waitFor('two ready hosts covering every layer', async () => {
    const t = await topology()
    return t.nodes.filter((n) => n.ready).length === 2 && [0, 1, 2, 3, 4, 5, 6, 7].every((l) => t.nodes.some((n) => n.ready && n.layerStart <= l && l < n.layerEnd)) ? t : undefined
  }, 120_000, allLogs)
  startHost(2)
  await waitFor('the idle host joined', async () => ((oracle.log.join('').match(/oracle: orban agent joined/g) ?? []).length >= 3 ? true : undefined), 60_000, allLogs)
  assert.equal((await topology()).nodes.length, 2, 'the third host is idle')
  const generate = () =>
    fetch(`${api}/api/v1/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: p0.prompt, parameters: { max_new_tokens: p0.new_tokens, do_sample: false, repetition_penalty: 1 } }) })
  await waitFor('the origin answers', async () => ((await generate()).ok ? true : undefined), 60_000, allLogs)

  const originPeer = origin.log.join('').match(/"peerId":"(12D3Koo\w+)"/)?.[1]
  const victim = (await topology()).nodes.find((n) => n.peerId !== originPeer)
  assert.ok(victim && other.log.join('').includes(victim.peerId!), 'the other pipeline host is the one to kill')
  const killedAt = Date.now()
  other.child.kill('SIGKILL')
  // Clients keep asking: each answer is the reference text, or a 503 with Retry-After (never an instant 500).
  const answers: Array<{ status: number; at: number; retryAfter: string | null }> = []
  let repairedAt: number | undefined
  while (repairedAt === undefined && Date.now() - killedAt < 40_000) {
    const r = await generate()
    const body = (await r.json()) as { generated_text?: string; error?: string }
    answers.push({ status: r.status, at: (Date.now() - killedAt) / 1000, retryAfter: r.headers.get('retry-after') })
    if (r.status === 200) {
      assert.equal(body.generated_text, p0.greedy_text)
      repairedAt = Date.now()
    } else {
      assert.equal(r.status, 503, `${r.status}: ${body.error}`)
      assert.ok(Number(r.headers.get('retry-after')) > 0, 'a 503 says when to retry')
    }
  }
  assert.ok(repairedAt, `not repaired in 40 s: ${JSON.stringify(answers)}\n${allLogs().slice(-3000)}`)
  const took = (repairedAt - killedAt) / 1000
  console.log(`repair: first answer ${took.toFixed(1)} s after the kill; answers ${JSON.stringify(answers)}`)
  assert.ok(took <= 15, `repaired after ${took} s`)
  const t = await topology()
  assert.ok(!t.nodes.some((n) => n.peerId === victim.peerId), 'the killed host holds nothing')
})
