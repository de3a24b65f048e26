import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { folderHandler } from '../../e2e/serveFolder.ts'
import { startStaticServer, type StaticServer } from '../../testing/staticServer.ts'
import { rawGet, rawRequest } from '../../testing/rawHttp.ts'
import { parseRange } from './parseRange.ts'

test('parseRange: single, suffix and open ranges; unsatisfiable sets; malformed and multi-range headers mean the whole file', () => {
  assert.equal(parseRange(undefined, 10), null)
  assert.deepEqual(parseRange('bytes=2-4', 10), { start: 2, end: 4 })
  assert.deepEqual(parseRange('bytes=2-', 10), { start: 2, end: 9 })
  assert.deepEqual(parseRange('bytes=2-99', 10), { start: 2, end: 9 })
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 })
  assert.deepEqual(parseRange('bytes=-30', 10), { start: 0, end: 9 })
  assert.deepEqual(parseRange('BYTES= 0-0 ', 10), { start: 0, end: 0 })
  for (const h of ['bytes=10-', 'bytes=10-12', 'bytes=-0', 'bytes=5-4', 'bytes=10-,20-30', `bytes=${'9'.repeat(30)}-`]) assert.equal(parseRange(h, 10), 'unsatisfiable', h)
  assert.equal(parseRange('bytes=0-', 0), 'unsatisfiable')
  for (const h of ['', 'bytes=', 'bytes=-', 'bytes=a-b', 'items=0-1', 'bytes=0-1;x', 'bytes=0-1,2-3', 'bytes=0-1,10-']) assert.equal(parseRange(h, 10), null, h)
})

/** The two ways a folder is served (the test static server and the e2e Vite plugin) answer alike. */
describe('one Range file server for the static test server and the e2e folder plugin', () => {
  let dir: string
  let root: string
  const servers: Array<{ name: string; url: string; close(): Promise<void> }> = []
  const content = Buffer.from('0123456789abcdef')

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'serve-file-'))
    root = join(dir, 'root')
    await import('node:fs/promises').then((fs) => fs.mkdir(root))
    await writeFile(join(root, 'f.bin'), content)
    await writeFile(join(dir, 'secret.txt'), 'secret')
    const staticServer: StaticServer = await startStaticServer(root, '/repo/resolve/main')
    servers.push({ name: 'static', url: staticServer.url, close: staticServer.close })
    const handler = folderHandler(root)
    const plugin: Server = createServer((req, res) => handler(req, res, () => res.writeHead(405).end()))
    await new Promise<void>((r) => plugin.listen(0, '127.0.0.1', r))
    servers.push({ name: 'e2e folder', url: `http://127.0.0.1:${(plugin.address() as AddressInfo).port}`, close: () => new Promise((r) => plugin.close(() => r())) })
  })
  after(async () => {
    for (const s of servers) await s.close()
    await rm(dir, { recursive: true, force: true })
  })

  test('200 whole, 206 for one range, 416 with bytes */size when unsatisfiable, 200 whole for several ranges', async () => {
    for (const s of servers) {
      const whole = await fetch(`${s.url}/f.bin`)
      assert.equal(whole.status, 200, s.name)
      assert.equal(whole.headers.get('accept-ranges'), 'bytes')
      assert.deepEqual(Buffer.from(await whole.arrayBuffer()), content)
      const one = await fetch(`${s.url}/f.bin`, { headers: { Range: 'bytes=3-5' } })
      assert.equal(one.status, 206, s.name)
      assert.equal(one.headers.get('content-range'), 'bytes 3-5/16')
      assert.equal(await one.text(), '345')
      const suffix = await fetch(`${s.url}/f.bin`, { headers: { Range: 'bytes=-2' } })
      assert.equal(await suffix.text(), 'ef', s.name)
      for (const range of ['bytes=16-', 'bytes=-0', 'bytes=20-30,40-']) {
        const r = await fetch(`${s.url}/f.bin`, { headers: { Range: range } })
        assert.equal(r.status, 416, `${s.name} ${range}`)
        assert.equal(r.headers.get('content-range'), 'bytes */16')
        assert.equal(typeof (await r.json()).message, 'string')
      }
      const several = await fetch(`${s.url}/f.bin`, { headers: { Range: 'bytes=0-1,4-5' } })
      assert.equal(several.status, 200, s.name)
      assert.deepEqual(Buffer.from(await several.arrayBuffer()), content)
      const junk = await fetch(`${s.url}/f.bin`, { headers: { Range: 'lines=1-2' } })
      assert.equal(junk.status, 200, s.name)
      await junk.arrayBuffer()
      assert.equal((await fetch(`${s.url}/nope.bin`)).status, 404, s.name)
    }
  })

  test('traversal, encoded separators and bad encodings are refused with a message; the server goes on', async () => {
    for (const s of servers) {
      const prefix = new URL(s.url).pathname.replace(/\/$/, '')
      for (const path of ['/../secret.txt', '/%2E%2E/secret.txt', '/..%2Fsecret.txt', '/..%5Csecret.txt', '/f.bin%00', '/%E0%A4%A', '//a:b', '/x/../../secret.txt']) {
        const r = await rawRequest(s.url, rawGet(`${prefix}${path}`))
        assert.ok(r.status >= 400 && r.status < 500, `${s.name} ${path}: ${r.status}`)
        assert.doesNotMatch(r.body, /secret/, `${s.name} ${path}`)
        assert.equal(typeof JSON.parse(r.body).message, 'string', `${s.name} ${path}`)
      }
      assert.equal((await rawRequest(s.url, 'GET nonsense HTTP/1.1\r\n\r\n')).status, 400)
      assert.deepEqual(Buffer.from(await (await fetch(`${s.url}/f.bin`)).arrayBuffer()), content, s.name)
    }
    assert.equal(await readFile(join(dir, 'secret.txt'), 'utf8'), 'secret')
  })
})
