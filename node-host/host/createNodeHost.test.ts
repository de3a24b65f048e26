import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { after, before, test } from 'node:test'
import { createLogger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { createNodeHost, type NodeHost } from './createNodeHost.ts'

// An origin serving [0, 4) of docs-llama-7m over real libp2p on loopback, with its HTTP API: while no
// peer serves [4, 8) a generation waits (bounded) for one, then is answered 503 with Retry-After.

let fixture: Fixture
const hosts: NodeHost[] = []
/** What the origin's discovery (the Oracle's topology in a real network) returns. */
const discovered: string[] = []
let origin: NodeHost

const startHost = async (extra: { apiPort?: number; routeWaitMs?: number; discover?: () => Promise<string[]> } = {}) => {
  const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
  const host = await createNodeHost({ node, source: fileModelSource(fixture.dir), device: 'cpu', weights: 'float32', bootstrap: [], logger: createLogger('host', 'silent'), ...extra })
  hosts.push(host)
  return { host, node }
}

before(async () => {
  fixture = await loadFixture('docs-llama-7m')
  ;({ host: origin } = await startHost({ apiPort: 0, routeWaitMs: 1500, discover: async () => [...discovered] }))
  await origin.serve({ start: 0, end: 4 })
})
after(async () => {
  for (const h of hosts) await h.stop()
})

const generate = (prompt: string, tokens: number) =>
  fetch(`${origin.apiUrl()}/api/v1/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs: prompt, parameters: { max_new_tokens: tokens, do_sample: false, repetition_penalty: 1 } }) })

test('no peer serves the other layers: the request waits the route wait, then gets 503 with Retry-After (not an instant 500)', async () => {
  const t0 = Date.now()
  const r = await generate(fixture.prompts[0]!.prompt, 4)
  const took = Date.now() - t0
  assert.equal(r.status, 503)
  assert.equal(r.headers.get('retry-after'), '5')
  assert.match(((await r.json()) as { error: string }).error, /no route covers layers \[0, 8\) after waiting/)
  assert.ok(took >= 1400, `answered after ${took} ms: it waited for a repair`)
})

test('a peer that comes up during the wait serves the request: the reference greedy text', async () => {
  const p0 = fixture.prompts[0]!
  // The repair: a peer loads [4, 8); the origin learns of it only once the request is waiting.
  const { host, node } = await startHost()
  await host.serve({ start: 4, end: 8 })
  const pending = generate(p0.prompt, p0.new_tokens)
  await new Promise((r) => setTimeout(r, 300))
  discovered.push(...node.getMultiaddrs().map(String).slice(0, 1))
  const r = await pending
  assert.equal(r.status, 200)
  assert.equal(((await r.json()) as { generated_text: string }).generated_text, p0.greedy_text)
})
