import assert from 'node:assert/strict'
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, before, describe, test } from 'node:test'
import { loadShards } from '../shared/engine/loadShards.ts'
import type { ShardSession } from '../shared/engine/shardSession.ts'
import { loadTokenizer } from '../shared/model/tokenizer.ts'
import { nodeRuntime } from '../node-host/engine/nodeRuntime.ts'
import { fileModelSource } from '../node-host/model/fileModelSource.ts'
import { freePort } from '../node-host/net/freePort.ts'
import { createPlumiseClient } from '../node-host/plumise/plumiseClient.ts'
import { createPlumiseServer, type PlumiseServer } from '../node-host/plumise/plumiseServer.ts'
import { encodePlumiseHidden, PLUMISE_DTYPES } from '../node-host/plumise/plumiseTensor.ts'
import { loadFixture, REPO_ROOT, type Fixture } from '../testing/fixtures.ts'

const run = promisify(execFile)
const PYTHON = process.env.PLUMISE_PYTHON ?? 'python3'
const PEER = join(REPO_ROOT, 'e2e', 'plumise', 'grpcio_peer.py')
/** grpcio and grpc_tools (what the upstream agent runs on) are needed; skipped where absent. */
const hasGrpcio = (() => {
  try {
    execFileSync(PYTHON, ['-c', 'import grpc, grpc_tools'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

describe('interop with grpcio (the upstream agent\'s gRPC library)', { skip: !hasGrpcio && `${PYTHON} lacks grpcio/grpc_tools (set PLUMISE_PYTHON)` }, () => {
  let fixture: Fixture
  let shards: ShardSession[]
  const servers: PlumiseServer[] = []
  let python: ChildProcess | undefined
  let dir: string

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    const source = fileModelSource(fixture.dir)
    ;({ shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 6 }, { start: 6, end: 8 }, { start: 3, end: 6 }] }))
    dir = await mkdtemp(join(tmpdir(), 'grpcio-'))
    const tokenizer = await loadTokenizer(source)
    servers.push(await createPlumiseServer({ model: 'docs-llama-7m', address: '0xlast', eosTokenIds: [0], tokenizer, shard: () => shards[1] }))
  })
  after(async () => {
    python?.kill('SIGKILL')
    for (const s of servers) await s.close()
    for (const s of shards ?? []) await s.dispose()
  })

  test('a grpcio client calls our last node: Ping, GetLayerInfo, ForwardPass in each dtype, a stream, a malformed request', async () => {
    const p = fixture.prompts[0]!
    const h = await shards[0]!.forward('h', { tokens: p.input_ids }, { reset: true })
    const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64')
    const requests = [
      ...PLUMISE_DTYPES.map((dtype) => {
        const t = encodePlumiseHidden(h.hidden!, 256, dtype)
        return { request_id: `py-${dtype}_s0`, hidden_states: b64(t.hiddenStates), shape: t.shape.map(Number), dtype, params: { do_sample: false, repetition_penalty: 1 }, metadata: { total_nodes: 2, node_index: 1, is_last: true } }
      }),
      { request_id: 'py-bad', hidden_states: '', shape: [1, 2, 3], dtype: 'int8' },
      { request_id: 'py-stream_s0', stream: true, ...(() => { const t = encodePlumiseHidden(h.hidden!, 256, 'bfloat16'); return { hidden_states: b64(t.hiddenStates), shape: t.shape.map(Number), dtype: 'bfloat16' } })(), params: { do_sample: false, repetition_penalty: 1 } },
    ]
    const file = join(dir, 'requests.json')
    await writeFile(file, JSON.stringify(requests))
    const { stdout } = await run(PYTHON, [PEER, 'client', '--target', `127.0.0.1:${servers[0]!.port}`, '--requests', file], { timeout: 120_000 })
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(lines[0], { call: 'Ping', agent_address: '0xlast', model_name: 'docs-llama-7m', layer_start: 6, layer_end: 8, is_ready: true })
    assert.deepEqual(lines[1], { call: 'GetLayerInfo', total_layers: 8, device: 'cpu', is_ready: true })
    for (const [i, dtype] of PLUMISE_DTYPES.entries()) {
      const r = lines[2 + i]!
      assert.equal(r.success, true, `${dtype}: ${String(r.error)}`)
      assert.equal(r.next_token_id, p.greedy_new_ids[0], dtype)
      assert.deepEqual([r.is_eos, r.num_tokens], [false, 1])
    }
    assert.equal(lines[5]!.success, false)
    assert.match(String(lines[5]!.error), /unsupported dtype "int8"/)
    assert.deepEqual(lines[6]!.token_ids, [p.greedy_new_ids[0]])
  })

  test('our middle node forwards to a grpcio node as upstream does, and returns its answer as is', async () => {
    const port = await freePort()
    python = spawn(PYTHON, [PEER, 'server', '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] })
    const seen: Record<string, unknown>[] = []
    let err = ''
    python.stderr!.on('data', (c: Buffer) => (err += c.toString()))
    await new Promise<void>((resolve, reject) => {
      let buffered = ''
      python!.stdout!.on('data', (c: Buffer) => {
        // whole lines only: a chunk may end mid-line
        buffered += c.toString()
        const lines = buffered.split('\n')
        buffered = lines.pop()!
        for (const line of lines.filter(Boolean)) {
          const o = JSON.parse(line) as Record<string, unknown>
          if ('listening' in o) resolve()
          else seen.push(o)
        }
      })
      python!.once('exit', (code) => reject(new Error(`grpcio server exited ${code}: ${err}`)))
    })
    const middle = await createPlumiseServer({ model: 'docs-llama-7m', address: '0xmid', eosTokenIds: [0], shard: () => shards[2], next: () => `http://127.0.0.1:${port}` })
    servers.push(middle)
    const h3 = await shards[0]!.forward('h3', { tokens: [1, 2, 3] }, { reset: true })
    // layers [0, 6) ran above; for the middle [3, 6) any 256-wide state will do
    const hidden = h3.hidden!
    const client = createPlumiseClient(middle.endpoint)
    try {
      const r = await client.forwardPass({ requestId: 'abc_s2', ...encodePlumiseHidden(hidden, 256, 'bfloat16'), params: { maxNewTokens: 5 }, metadata: { totalNodes: 3, nodeIndex: 1, nextNodeEndpoint: `http://127.0.0.1:${port}` }, pastTokenIds: [7, 8] })
      assert.equal(r.success, true, r.error)
      assert.equal(r.nextTokenId, 44, 'the downstream answer, returned as is')
      assert.equal(r.latencyMs, 1.5)
      // the peer's log line and its answer travel separately (stdout vs the gRPC stream)
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((res) => setTimeout(res, 50))
      assert.deepEqual(seen, [{ request_id: 'abc_s2', dtype: 'bfloat16', shape: [1, 3, 256], bytes: seen[0]!.bytes, past_token_ids: [7, 8], node_index: 1, total_nodes: 3, is_last: false, next_node_endpoint: `http://127.0.0.1:${port}`, max_new_tokens: 5 }])
      assert.ok((seen[0]!.bytes as number) > 3 * 256 * 2, 'a torch.save archive, larger than the raw bf16')
    } finally {
      client.close()
    }
  })
})
