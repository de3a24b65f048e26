import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { httpModelSource, ModelFileNotFoundError } from './modelSource.ts'

/** A real HTTP server for one file whose first answers fail as a loaded peer's do: a socket closed, a body cut off. */
const file = Uint8Array.from({ length: 4096 }, (_, i) => i % 251)
let server: Server
let base: string
let requests = 0
/** How the next answers fail, in order; then they succeed. */
let faults: Array<'close' | 'cut'> = []

before(async () => {
  server = createServer((req, res) => {
    requests++
    if (!req.url!.endsWith('/model.safetensors')) return void res.writeHead(404).end()
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '')
    const body = m ? file.subarray(Number(m[1]), Number(m[2]) + 1) : file
    const fault = faults.shift()
    if (fault === 'close') return void req.socket.destroy()
    res.writeHead(m ? 206 : 200, { 'Content-Length': body.length })
    if (fault === 'cut') {
      res.write(body.subarray(0, body.length >> 1))
      return void setTimeout(() => req.socket.destroy(), 20)
    }
    res.end(body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m`
})
after(() => server.close())

test('a range read the connection failed (socket closed, body cut off) is asked again and gives the right bytes', async () => {
  const source = httpModelSource({ baseUrl: base })
  requests = 0
  faults = ['close', 'cut']
  assert.deepEqual(await source.readRange('model.safetensors', 100, 1100), file.subarray(100, 1100))
  assert.equal(requests, 3, 'two failed tries, then the answer')
  assert.deepEqual(faults, [])
})

test('an HTTP answer is final: a missing file is not asked again; a connection that keeps failing gives up', async () => {
  const source = httpModelSource({ baseUrl: base })
  requests = 0
  await assert.rejects(source.readText('config.json'), ModelFileNotFoundError)
  assert.equal(requests, 1)
  requests = 0
  faults = ['close', 'close', 'close', 'close', 'close']
  await assert.rejects(source.readRange('model.safetensors', 0, 10), TypeError)
  assert.equal(requests, 4, 'four tries in all')
  faults = []
})
