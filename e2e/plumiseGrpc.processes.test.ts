import assert from 'node:assert/strict'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { freePort } from '../node-host/net/freePort.ts'
import { createPlumiseClient, type PlumiseClient } from '../node-host/plumise/plumiseClient.ts'
import { loadFixture, type FixturePrompt } from '../testing/fixtures.ts'
import { spawnCli, waitFor, type CliProcess } from './cliProcess.ts'

/** Three `shardmesh start --grpc-port` processes chained only over the Plumise gRPC pipeline. */
describe('shardmesh start --grpc-port: three host processes speaking only gRPC', () => {
  const hosts: CliProcess[] = []
  const clients: PlumiseClient[] = []
  let prompts: FixturePrompt[]
  let first: PlumiseClient
  const logs = () => hosts.map((h) => h.log.join('')).join('\n---\n')

  before(async () => {
    prompts = (await loadFixture('docs-llama-7m')).prompts
    const dir = await mkdtemp(join(tmpdir(), 'grpc-hosts-'))
    const [a, b, c] = await Promise.all([freePort(), freePort(), freePort()])
    const url = (p: number) => `http://127.0.0.1:${p}`
    const start = (name: string, layers: string, port: number, next: string[]) =>
      spawnCli(['start', '--device', 'cpu', '--layers', layers, '--listen', '/ip4/127.0.0.1/tcp/0', '--identity', join(dir, `${name}.key`), '--grpc-port', String(port), ...next.flatMap((n) => ['--grpc-next', n])])
    hosts.push(start('c', '6-8', c, []), start('b', '3-6', b, [url(c)]), start('a', '0-3', a, [url(b), url(c)]))
    for (const [i, port] of [c, b, a].entries()) {
      const client = createPlumiseClient(url(port))
      clients.push(client)
      await waitFor(`host ${i} ready over gRPC`, async () => ((await client.ping()).isReady ? true : undefined), 120_000, logs)
    }
    first = clients[2]!
  })
  after(() => {
    for (const c of clients) c.close()
    for (const h of hosts) h.child.kill('SIGKILL')
  })

  test('Ping and GetLayerInfo report each range', async () => {
    const infos = await Promise.all(clients.map((c) => c.getLayerInfo()))
    assert.deepEqual(infos.map((i) => [i.layerStart, i.layerEnd, i.totalLayers, i.isReady, i.modelName]), [
      [6, 8, 8, true, 'docs-llama-7m'],
      [3, 6, 8, true, 'docs-llama-7m'],
      [0, 3, 8, true, 'docs-llama-7m'],
    ])
  })

  test('a stream from the first host through the other two gives the reference greedy tokens', async () => {
    for (const p of prompts) {
      const ids: number[] = []
      let end
      for await (const chunk of first.forwardPassStream({ requestId: 'e2e' /* the same id for every prompt: each host's cache must notice the sequence changed */, dtype: 'float32', params: { doSample: false, repetitionPenalty: 1, maxNewTokens: p.new_tokens }, metadata: { originalPrompt: p.prompt } }, { timeoutMs: 120_000 })) {
        if (chunk.isFinished) end = chunk
        else ids.push(chunk.tokenId)
      }
      const eos = p.greedy_new_ids.indexOf(0)
      assert.deepEqual(ids, eos >= 0 ? p.greedy_new_ids.slice(0, eos) : p.greedy_new_ids, p.prompt)
      assert.equal(end?.finishReason, eos >= 0 ? 'eos' : 'length')
    }
  })
})
