import assert from 'node:assert/strict'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { loadTokenizer, type TextTokenizer } from '../shared/model/tokenizer.ts'
import { fileModelSource } from '../node-host/model/fileModelSource.ts'
import { freePort } from '../node-host/net/freePort.ts'
import { createPlumiseClient } from '../node-host/plumise/plumiseClient.ts'
import { loadFixture, type FixturePrompt } from '../testing/fixtures.ts'
import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'

const peerIdOf = (h: CliProcess) => /"peerId":"(12D3Koo\w+)"/.exec(h.log.join(''))?.[1]

/**
 * A mixed route (issue 13): the origin [0, 3) and the last host [6, 8) are shardmesh peers on
 * libp2p; layers [3, 6) are served by a Plumise node reached only over gRPC, through a relay host
 * (`--grpc-via`) that stands in for that range in the mesh. The Plumise node is a `start
 * --grpc-port` process whose libp2p address nobody is given, so no route can reach it but the
 * relay's gRPC hop.
 */
describe('mixed route: libp2p hops and a gRPC hop to a Plumise node give the reference tokens', () => {
  const hosts: CliProcess[] = []
  let prompts: FixturePrompt[]
  let tokenizer: TextTokenizer
  let api: string
  let plumiseNode: CliProcess
  let relay: CliProcess
  let last: CliProcess
  const logs = () => hosts.map((h) => h.log.join('')).join('\n---\n')
  const serving = (h: CliProcess) => waitFor('a host serving', async () => (/"msg":"serving"/.test(h.log.join('')) ? true : undefined), 180_000, logs)

  before(async () => {
    const fixture = await loadFixture('docs-llama-7m')
    prompts = fixture.prompts
    tokenizer = await loadTokenizer(fileModelSource(fixture.dir))
    const dir = await mkdtemp(join(tmpdir(), 'plumise-mixed-'))
    const [grpcPort, relayPort, lastPort, originPort, apiPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()])
    const at = (p: number) => `/ip4/127.0.0.1/tcp/${p}`
    const start = (name: string, args: string[]) => {
      const h = spawnCli(['start', '--device', 'cpu', '--identity', join(dir, `${name}.key`), ...args])
      hosts.push(h)
      return h
    }
    plumiseNode = start('plumise', ['--layers', '3-6', '--listen', '/ip4/127.0.0.1/tcp/0', '--grpc-port', String(grpcPort)])
    last = start('last', ['--layers', '6-8', '--listen', at(lastPort)])
    const grpc = createPlumiseClient(`http://127.0.0.1:${grpcPort}`)
    await waitFor('the Plumise node ready over gRPC', async () => ((await grpc.ping()).isReady ? true : undefined), 180_000, logs)
    grpc.close()
    // float32 on the gRPC hop: the tokens must equal the float32 reference (bfloat16 is covered in plumiseShardSession.test.ts).
    relay = start('relay', ['--layers', '3-6', '--listen', at(relayPort), '--grpc-via', `http://127.0.0.1:${grpcPort}`, '--grpc-via-dtype', 'float32'])
    await Promise.all([serving(last), serving(relay)])
    const origin = start('origin', ['--layers', '0-3', '--listen', at(originPort), '--api-port', String(apiPort), '--peer', at(relayPort), '--peer', at(lastPort)])
    await serving(origin)
    api = `http://127.0.0.1:${apiPort}`
  })
  after(() => {
    for (const h of hosts) h.child.kill('SIGKILL')
  })

  test('the mesh sees the relay, never the Plumise node, for layers [3, 6)', async () => {
    const status = await (await fetch(`${api}/api/v1/pipeline/status`)).json()
    const nodes = status.topology.nodes as Array<{ address: string; layerStart: number; layerEnd: number }>
    assert.deepEqual(nodes.map((n) => [n.layerStart, n.layerEnd]), [[0, 3], [3, 6], [6, 8]])
    assert.equal(nodes[1]!.address, peerIdOf(relay))
    assert.ok(peerIdOf(plumiseNode))
    assert.ok(!nodes.some((n) => n.address === peerIdOf(plumiseNode)))
    assert.match(relay.log.join(''), /"layers":"3-6"/)
  })

  test('every fixture prompt through origin (libp2p) -> relay (gRPC to the Plumise node) -> last host (libp2p) gives the reference text', async () => {
    for (const p of prompts) {
      const res = await fetch(`${api}/api/v1/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: p.prompt, parameters: { max_new_tokens: p.new_tokens, do_sample: false, repetition_penalty: 1 } }) })
      const r = (await res.json()) as { generated_text: string }
      assert.equal(res.status, 200, `${JSON.stringify(r)}\n${logs().slice(-6000)}`)
      // The API stops at EOS; the reference runs on past it.
      const eos = p.greedy_new_ids.indexOf(0)
      assert.equal(r.generated_text, eos >= 0 ? tokenizer.decode(p.greedy_new_ids.slice(0, eos)) : p.greedy_text, p.prompt)
    }
  })

  test('the gRPC hop carries the work: with the Plumise node gone, no generation is answered', async () => {
    plumiseNode.child.kill('SIGKILL')
    await plumiseNode.exited
    const res = await fetch(`${api}/api/v1/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: prompts[0]!.prompt, parameters: { max_new_tokens: 4, do_sample: false } }) })
    assert.notEqual(res.status, 200)
    assert.match(relay.log.join(''), /ECONNREFUSED|unavailable|Plumise|127\.0\.0\.1/i)
  })
})
