import assert from 'node:assert/strict'
import { copyFile, mkdtemp, readFile, truncate } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { generate } from '../../shared/engine/generate.ts'
import { loadShards } from '../../shared/engine/loadShards.ts'
import { openSafetensors } from '../../shared/model/safetensors.ts'
import { ModelFileNotFoundError, TruncatedFileError } from '../../shared/model/modelSource.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { FIXTURES_DIR, loadFixture } from '../../testing/fixtures.ts'
import { startStaticServer } from '../../testing/staticServer.ts'
import { serveFolderFile } from '../net/serveFile.ts'
import { fileModelSource } from './fileModelSource.ts'
import { ModelNotFoundError, resolveModelSource } from './resolveModelSource.ts'

describe('model sources', () => {
  test('a Hub repository id is read over HTTP Range requests and gives the reference tokens', async () => {
    // The Hub layout served from a local server: HF_ENDPOINT points the real Hub code path at it.
    const server = await startStaticServer(join(FIXTURES_DIR, 'tiny-llama'), '/shardmesh/tiny-llama/resolve/main')
    try {
      const endpoint = server.url.replace('/shardmesh/tiny-llama/resolve/main', '')
      const source = resolveModelSource('shardmesh/tiny-llama', { HF_ENDPOINT: endpoint })
      assert.equal(source.name, 'shardmesh/tiny-llama')
      const { shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 0, end: 2 }, { start: 2, end: 6 }] })
      const fixture = await loadFixture('tiny-llama')
      const p = fixture.prompts[0]!
      const r = await generate({ stages: shards, inputIds: p.input_ids, maxNewTokens: p.new_tokens })
      assert.deepEqual(r.outputIds, p.greedy_new_ids)
      const ranged = server.requests.filter((q) => q.path.endsWith('model.safetensors') && q.range)
      assert.ok(ranged.length >= 3, 'header and tensors are read with Range requests')
      assert.ok(server.requests.every((q) => !q.path.endsWith('model.safetensors') || q.range), 'the weights file is never fetched whole')
      await Promise.all(shards.map((s) => s.dispose()))
    } finally {
      await server.close()
    }
  })

  test('a base URL reads only the byte ranges of the tensors a shard needs', async () => {
    const server = await startStaticServer(join(FIXTURES_DIR, 'tiny-llama'))
    try {
      const src = resolveModelSource(server.url)
      const index = await openSafetensors(src)
      const total = (await readFile(join(FIXTURES_DIR, 'tiny-llama', 'model.safetensors'))).length
      const before = server.requests.length
      const { shards } = await loadShards({ source: src, runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 2, end: 3 }] })
      const bytes = server.requests.slice(before).filter((q) => q.range).map((q) => {
        const [a, b] = q.range!.replace('bytes=', '').split('-').map(Number)
        return b! - a! + 1
      })
      const layerBytes = [...index.tensors.values()].filter((t) => t.name.startsWith('model.layers.2.')).reduce((a, t) => a + t.end - t.start, 0)
      const read = bytes.reduce((a, b) => a + b, 0)
      assert.ok(read < total / 3, `read ${read} of ${total} bytes for one of six layers`)
      assert.ok(read >= layerBytes)
      await Promise.all(shards.map((s) => s.dispose()))
    } finally {
      await server.close()
    }
  })

  test('a missing file, a truncated safetensors file and a bogus model name are clear errors', async () => {
    const server = await startStaticServer(join(FIXTURES_DIR, 'tiny-llama'))
    try {
      await assert.rejects(resolveModelSource(server.url).readText('nope.json'), ModelFileNotFoundError)
    } finally {
      await server.close()
    }
    const dir = await mkdtemp(join(tmpdir(), 'shardmesh-trunc-'))
    for (const f of ['config.json', 'model.safetensors']) await copyFile(join(FIXTURES_DIR, 'tiny-llama', f), join(dir, f))
    await truncate(join(dir, 'model.safetensors'), 500_000)
    await assert.rejects(
      loadShards({ source: fileModelSource(dir), runtime: nodeRuntime(), device: 'cpu' }),
      (e: Error) => e instanceof TruncatedFileError && /model\.safetensors.*truncated/.test(e.message),
    )
    assert.throws(() => resolveModelSource('/definitely/not/here'), ModelNotFoundError)
  })

  test('HF_TOKEN goes to the Hub origin only: not along a redirect to another host, not to a base URL elsewhere', async () => {
    const root = join(FIXTURES_DIR, 'tiny-llama')
    const seen: Array<{ server: 'hub' | 'cdn'; path: string; auth?: string }> = []
    const start = async (handler: (req: IncomingMessage, res: ServerResponse) => Promise<unknown>) => {
      const server = createServer((req, res) => void handler(req, res).catch(() => res.destroy()))
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
      return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) }
    }
    // The CDN: another origin (another port) serving the files.
    const cdn = await start(async (req, res) => {
      seen.push({ server: 'cdn', path: req.url!, auth: req.headers.authorization })
      await serveFolderFile(req, res, root, req.url!)
    })
    // The Hub: config files itself, the weights by redirect to the CDN, as huggingface.co does for LFS files.
    const hub = await start(async (req, res) => {
      seen.push({ server: 'hub', path: req.url!, auth: req.headers.authorization })
      const file = req.url!.replace('/o/r/resolve/main/', '')
      if (file === 'model.safetensors') return res.writeHead(302, { Location: `${cdn.url}/${file}` }).end()
      await serveFolderFile(req, res, root, file)
    })
    try {
      const env = { HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_secret' }
      const source = resolveModelSource('o/r', env)
      assert.equal(JSON.parse(await source.readText('config.json')).num_hidden_layers, 6)
      assert.equal((await source.readRange('model.safetensors', 0, 8)).length, 8)
      assert.ok(seen.some((q) => q.server === 'cdn'), 'the weights came through the redirect')
      assert.ok(seen.filter((q) => q.server === 'hub').every((q) => q.auth === 'Bearer hf_secret'), 'the Hub gets the token')
      // A base URL on another host, and one on the Hub's own origin.
      await resolveModelSource(`${cdn.url}/`, env).readText('config.json')
      await resolveModelSource(`${hub.url}/o/r/resolve/main`, env).readText('config.json')
      assert.equal(seen.at(-1)!.auth, 'Bearer hf_secret')
      assert.deepEqual(seen.filter((q) => q.server === 'cdn' && q.auth !== undefined), [], 'no request to the other host carried the token')
    } finally {
      await hub.close()
      await cdn.close()
    }
  })
})
