import assert from 'node:assert/strict'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { freePort } from '../node-host/net/freePort.ts'
import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'
import { loadFixture, type FixturePrompt } from '../testing/fixtures.ts'

const SILENCE_S = 4

type TopologyNode = { nodeAddress: string; layerStart: number; layerEnd: number; ready: boolean; peerId: string | null; kind: string }
type Topology = { model: string; nodes: TopologyNode[]; count: number }

/** Copies of each layer among ready nodes. */
function copies(t: Topology, numLayers: number): number[] {
  const c = new Array<number>(numLayers).fill(0)
  for (const n of t.nodes) if (n.ready) for (let l = n.layerStart; l < n.layerEnd; l++) c[l]!++
  return c
}

describe('oracle: an Oracle process assigns the layers of three node hosts, reassigns when one dies, and survives a restart', { timeout: 300_000 }, () => {
  const procs: CliProcess[] = []
  let dir: string
  let oraclePort: number
  let oracle: CliProcess
  let oracleUrl: string
  let api: string
  let p0: FixturePrompt
  const hosts: CliProcess[] = []
  const allLogs = () => procs.map((p) => p.log.join('')).join('\n---\n')
  const topology = async (): Promise<Topology> => (await fetch(`${oracleUrl}/api/v1/pipeline/topology?model=docs-llama-7m`)).json() as Promise<Topology>
  const startOracle = () => {
    const p = spawnCli(['oracle', '--port', String(oraclePort), '--db', join(dir, 'oracle.db'), '--silence-s', String(SILENCE_S)])
    procs.push(p)
    return p
  }
  const generate = async () => {
    const r = await fetch(`${api}/api/v1/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: p0.prompt, parameters: { max_new_tokens: p0.new_tokens, do_sample: false, repetition_penalty: 1 } }) })
    return (await r.json()) as { generated_text: string; num_tokens: number }
  }

  before(async () => {
    p0 = (await loadFixture('docs-llama-7m')).prompts[0]!
    dir = await mkdtemp(join(tmpdir(), 'shardmesh-oracle-'))
    oraclePort = await freePort()
    oracleUrl = `http://127.0.0.1:${oraclePort}`
    oracle = startOracle()
    await waitFor('the oracle', async () => ((await fetch(`${oracleUrl}/health`)).ok ? true : undefined), 30_000, allLogs)
    const apiPort = await freePort()
    api = `http://127.0.0.1:${apiPort}`
    // Each host offers a little over half the model's weights: two hosts make a pipeline, the third a second copy of
    // the first half. The origin (with the HTTP API) joins last, so a host killed later can be one that is not it.
    const startHost = (i: number, extra: string[] = []) => {
      const h = spawnCli(['start', '--oracle', oracleUrl, '--device', 'cpu', '--memory-mb', '9', '--heartbeat-s', '1', '--listen', '/ip4/127.0.0.1/tcp/0', '--identity', join(dir, `host-${i}.key`), ...extra])
      hosts.push(h)
      procs.push(h)
    }
    startHost(1)
    startHost(2)
    await waitFor('two hosts in the topology', async () => ((await topology()).nodes.length === 2 ? true : undefined), 120_000, allLogs)
    startHost(0, ['--api-port', String(apiPort)])
  })
  after(() => {
    for (const p of procs) p.child.kill('SIGKILL')
  })

  test('every layer is covered by ready hosts, and generation gives the reference tokens', async () => {
    const t = await waitFor('three ready hosts covering every layer', async () => {
      const t = await topology()
      return t.nodes.filter((n) => n.ready).length === 3 && copies(t, 8).every((c) => c >= 1) ? t : undefined
    }, 120_000, allLogs)
    assert.ok(t.nodes.every((n) => n.kind === 'orban' && n.peerId), 'hosts join over the Orban channel with their libp2p identity')
    await waitFor('the origin API', async () => ((await fetch(`${api}/health`).then((r) => r.json())).status === 'ok' ? true : undefined), 60_000, allLogs)
    const r = await generate()
    assert.equal(r.generated_text, p0.greedy_text)
  })

  test('a host killed: its layers are reassigned within the silence window and generation works again', async () => {
    const t = await topology()
    const originPeer = hosts.at(-1)!.log.join('').match(/"peerId":"(12D3Koo\w+)"/)?.[1]
    assert.ok(originPeer)
    // The host holding the last layers, not the origin.
    const victim = t.nodes.find((n) => n.layerEnd === 8 && n.peerId !== originPeer)
    assert.ok(victim, `a non-origin host holds the last layers: ${JSON.stringify(t.nodes)}`)
    const victimProc = hosts.find((h) => h.log.join('').includes(victim.peerId!))!
    const killedAt = Date.now()
    victimProc.child.kill('SIGKILL')
    await waitFor('the last layers served by another ready host', async () => {
      const now = await topology()
      const ok = !now.nodes.some((n) => n.peerId === victim.peerId) && copies(now, 8).every((c) => c >= 1)
      return ok ? now : undefined
    }, (SILENCE_S + 60) * 1000, allLogs)
    const took = (Date.now() - killedAt) / 1000
    // Dropped after the silence window, then a survivor loads the range: seconds, not a window more.
    assert.ok(took < SILENCE_S + 30, `reassigned after ${took} s`)
    const r = await generate()
    assert.equal(r.generated_text, p0.greedy_text)
    // The host that moved ended its old shard task: the Oracle recorded earnings for the time it served.
    await waitFor('an earnings record', async () => (hosts.some((h) => h.log.join('').includes('agent: earnings recorded')) ? true : undefined), 10_000, allLogs)
    // Every host answered the proof of work it was challenged with on joining, and the Oracle checked the counter.
    assert.ok((oracle.log.join('').match(/proof of work verified/g) ?? []).length >= 3, 'proofs of work verified')
  })

  test('the oracle restarted: nodes and ranges are still there, agents reconnect, generation works', async () => {
    const before = await topology()
    oracle.child.kill('SIGTERM')
    await oracle.exited
    oracle = startOracle()
    const after = await waitFor('the restarted oracle', async () => topology(), 30_000, allLogs)
    const summary = (t: Topology) => t.nodes.map((n) => `${n.nodeAddress}:${n.layerStart}-${n.layerEnd}`).sort()
    assert.deepEqual(summary(after), summary(before), 'the restart lost nothing')
    // Agents reconnect (backoff from 1 s) and heartbeat; after more than a silence window they are all still assigned.
    await new Promise((r) => setTimeout(r, (SILENCE_S + 2) * 1000))
    const later = await topology()
    assert.deepEqual(summary(later), summary(before))
    assert.ok(later.nodes.every((n) => n.ready))
    const r = await generate()
    assert.equal(r.generated_text, p0.greedy_text)
  })
})
