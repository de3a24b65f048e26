import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { createLogger } from '../logger.ts'
import { superviseWorker, type WorkerSnapshot } from './superviseWorker.ts'

// A real Chromium on a page that speaks the app's farm hook (window.shardmeshFarm) and misbehaves on
// purpose: the first load hangs its main thread, the second reports an engine fault, the third serves.

const CHROMIUM = process.env.SHARDMESH_CHROMIUM ?? '/usr/bin/chromium'

let server: Server
let url: string
let loads = 0
let left = 0
let profile: string

const page = (behaviour: string) => `<!doctype html><script>
const choice = localStorage.getItem('shardmesh.contribute')
let error
window.shardmeshFarm = {
  state: () => ({ phase: 'serving', peerId: '12D3KooWtest', range: { start: 0, end: 4 }, tokensForwarded: 7, rate: [{ t: 0, tokensPerSecond: 2 }], error, choice }),
  stop: async () => { await fetch('/left', { method: 'POST' }) },
}
${behaviour}
</script>`

before(async () => {
  profile = await mkdtemp(join(tmpdir(), 'shardmesh-farm-worker-'))
  server = createServer((req, res) => {
    if (req.url === '/left') return void ((left += 1), res.end())
    if (req.url !== '/') return void res.writeHead(404).end()
    loads += 1
    const behaviour = loads === 1 ? 'setTimeout(() => { for (;;) {} }, 1500)' : loads === 2 ? "setTimeout(() => { error = 'the engine worker failed: GPU device was lost' }, 1500)" : ''
    res.writeHead(200, { 'Content-Type': 'text/html' }).end(page(behaviour))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
})

after(async () => {
  server.close()
  await rm(profile, { recursive: true, force: true })
})

test('a hung page and a lost GPU are restarted with backoff; stop tells the page to leave and closes its browser', { timeout: 120_000 }, async () => {
  const seen: WorkerSnapshot[] = []
  const w = superviseWorker({ worker: 1, appUrl: url, profileDir: profile, chromiumPath: CHROMIUM, gpu: 'off', headful: false, memoryMb: 256, logger: createLogger('test', 'silent'), hangMs: 3000, pollMs: 200, onChange: (s) => seen.push(s) })
  try {
    const deadline = Date.now() + 100_000
    while (!(w.snapshot().restarts === 2 && w.snapshot().state === 'running' && w.snapshot().phase === 'serving' && w.snapshot().browserRssBytes) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    const s = w.snapshot()
    assert.equal(s.restarts, 2, JSON.stringify(s))
    const failures = seen.filter((x) => x.state === 'backoff').map((x) => x.lastFailure)
    assert.match(failures[0] ?? '', /no heartbeat for 3 s \(hung\)/)
    assert.match(failures.at(-1) ?? '', /^GPU device lost: the engine worker failed/)
    // Backoff 1 s, then 2 s: neither launch served for a minute, so the failures count in a row.
    assert.deepEqual([...new Set(seen.filter((x) => x.state === 'backoff').map((x) => x.failuresInARow))], [1, 2])
    assert.equal(s.peerId, '12D3KooWtest')
    assert.equal(s.tokensForwarded, 7)
    assert.ok(s.browserRssBytes && s.browserRssBytes > 0, 'its Chromium is measured')
  } finally {
    await w.stop()
  }
  assert.equal(left, 1, 'the page was told to leave')
  assert.equal(w.snapshot().state, 'stopped')
})
