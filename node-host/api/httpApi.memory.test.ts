import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import type { TextGenerator } from '../../shared/engine/textGenerator.ts'
import { silentLogger } from '../../shared/logger.ts'
import { createLogger } from '../logger.ts'
import { answerClientErrors } from '../net/guardListener.ts'
import { createHttpApi } from './httpApi.ts'
import { defaultModelGenerator } from '../../testing/defaultModelGenerator.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

let shards: ShardSession[]
let generator: TextGenerator
let server: Server
/** The signal each generation was given, weakly. */
const signals: WeakRef<AbortSignal>[] = []

before(async () => {
  ;({ shards, generator } = await defaultModelGenerator((run) => (params) => {
    signals.push(new WeakRef(params.signal!))
    // As consumers of the signal do (libp2p dials, the mesh origin): combined with others.
    const combined = AbortSignal.any([params.signal!])
    return run({ ...params, signal: combined })
  }))
  server = createServer(createHttpApi({ model: 'm', address: 'local', layers: { start: 0, end: 8, total: 8 } }, { logger: createLogger('test', 'silent'), generator: () => generator }))
  answerClientErrors(server, silentLogger)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
})
after(async () => {
  server.close()
  for (const s of shards) await s.dispose()
})

test('a finished request leaves nothing behind: its signal is collectable at once, not kept for the 5-minute deadline', async () => {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  for (let i = 0; i < 5; i++) {
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json', Connection: 'close' }, body: JSON.stringify({ prompt: `Hello ${i}`, max_tokens: 2, temperature: 0 }) })
    assert.equal(r.status, 200)
    await r.text()
  }
  await new Promise((r) => setTimeout(r, 50))
  for (let i = 0; i < 5; i++) {
    gc()
    await new Promise((r) => setImmediate(r))
  }
  assert.equal(signals.length, 5)
  const alive = signals.filter((s) => s.deref() !== undefined).length
  assert.equal(alive, 0, `${alive} of 5 finished requests' signals still reachable`)
})
