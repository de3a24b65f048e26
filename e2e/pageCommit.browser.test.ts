import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { after, before, test } from 'node:test'
import type { Browser } from 'playwright-core'
import { loadShards } from '../shared/engine/loadShards.ts'
import { createForwardService, type ForwardService } from '../shared/mesh/forwardService.ts'
import type { PeerShard } from '../shared/mesh/planRoute.ts'
import { createSampler } from '../shared/verify/sampler.ts'
import { createServingVerification } from '../shared/verify/servingVerification.ts'
import { createSpotChecker, type CheckResult, type SpotChecker } from '../shared/verify/spotChecker.ts'
import { nodeRuntime } from '../node-host/engine/nodeRuntime.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../node-host/model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../testing/fixtures.ts'
import type { MeshPeerInfo } from '../testing/pages/meshPeerPage.ts'
import { launchChromium } from './launchChromium.ts'
import { startWebServer, type WebServer, type WebServerMode } from './startWebServer.ts'

// A page serving layers [3, 6) of docs-llama-7m (onnxruntime-web, wasm) commits to its steps like
// a Node host: every token frame carries the page's commitment digest, and a Node origin checking
// every step audits the page (over the WebSocket the page opened to it, as pages dial the hosts
// of the Oracle's topology; a relay circuit is limited and carries no audits) and has a Node replica of
// [3, 6) recompute it: the checks pass. Without commitments the page's work could not be sampled,
// and an Oracle paying sampled work only would not pay it.

const MODEL = 'docs-llama-7m'
const serverMode = (process.env.SHARDMESH_WEB_SERVER ?? 'build') as WebServerMode
const wsAddr = (n: NodeLibp2p) => {
  const a = n.getMultiaddrs().map(String).find((m) => m.includes('/ws'))
  if (!a) throw new Error('node has no /ws address')
  return a
}

let fixture: Fixture
let server: WebServer
let browser: Browser
const nodes: NodeLibp2p[] = []
const stops: Array<() => Promise<void>> = []

async function host(range: { start: number; end: number }, committed: boolean) {
  const privateKey = await generateKeyPair('Ed25519')
  const node = await createNodeLibp2p({ privateKey })
  nodes.push(node)
  const { spec, shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range] })
  const serving = committed ? createServingVerification({ node, signer: { peerId: node.peerId.toString(), sign: (d) => privateKey.sign(d) }, model: MODEL, hiddenSize: spec.hiddenSize, shard: () => shards[0] }) : undefined
  await serving?.start()
  const service: ForwardService = createForwardService({ node, model: MODEL, hiddenSize: spec.hiddenSize, shard: shards[0], stepLog: serving?.stepLog, stepTimeoutMs: 30_000 })
  await service.start()
  return { node, service }
}

before(async () => {
  fixture = await loadFixture(MODEL)
  server = await startWebServer(serverMode)
  browser = await launchChromium({ webgpu: false })
})
after(async () => {
  for (const s of stops) await s().catch(() => undefined)
  await browser?.close()
  await server?.close()
  for (const n of nodes) await Promise.resolve(n.stop()).catch(() => undefined)
})

test("a page's served steps carry commitments, and spot checks of them pass", async () => {
  const [a, replica, c] = await Promise.all([host({ start: 0, end: 3 }, true), host({ start: 3, end: 6 }, true), host({ start: 6, end: 8 }, true)])
  const originNode = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
  nodes.push(originNode)
  const results: CheckResult[] = []
  const checker: SpotChecker = createSpotChecker({ node: originNode, model: MODEL, sampler: createSampler({ rate: 1, newPeerRate: 1 }), timeoutMs: 30_000, onResult: (r) => void results.push(r) })
  const origin = createForwardService({ node: originNode, model: MODEL, hiddenSize: 256, spotChecker: checker, stepTimeoutMs: 30_000 })
  await origin.start()

  const page = await (await browser.newContext()).newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  await page.goto(new URL('mesh-peer.html', server.url).href)
  await page.waitForFunction(() => window.meshPeer !== undefined, undefined, { timeout: 60_000 })
  const info: MeshPeerInfo = await page.evaluate((p) => window.meshPeer!.start(p), { modelUrl: `/models/${MODEL}/`, model: MODEL, range: { start: 3, end: 6 }, device: 'wasm' as const, relay: wsAddr(c.node), dial: [wsAddr(a.node), wsAddr(originNode)] })
  stops.push(() => page.evaluate(() => window.meshPeer!.stop()))

  const peerOf = (h: { node: NodeLibp2p }, start: number, end: number, latencyMs = 1): PeerShard => ({ peerId: h.node.peerId.toString(), multiaddrs: h.node.getMultiaddrs().map(String), start, end, latencyMs })
  const pagePeer: PeerShard = { peerId: info.peerId, multiaddrs: info.multiaddrs.filter((m) => m.includes('/p2p-circuit') && !m.includes('/webrtc')), start: 3, end: 6, latencyMs: 1 }
  // The replica is slower on paper: the route goes through the page, the replica checks it.
  const peers = [peerOf(a, 0, 3), pagePeer, peerOf(replica, 3, 6, 500), peerOf(c, 6, 8)]
  const p = fixture.prompts[0]!
  const maxNewTokens = Math.min(p.new_tokens, 16)
  const pageDigests: number[] = []
  const r = await origin.generate({
    peers: () => peers,
    numLayers: 8,
    inputIds: p.input_ids,
    maxNewTokens,
    onToken: (_id, _i, timings) => {
      for (const t of timings) if (t.peerId === info.peerId) pageDigests.push(t.commitment?.length ?? 0)
    },
  })
  assert.deepEqual(r.routes[0], [a.node.peerId.toString(), info.peerId, c.node.peerId.toString()])
  assert.deepEqual(r.outputIds, p.greedy_new_ids.slice(0, r.outputIds.length))
  // every step the page served came with a 32-byte commitment digest
  assert.equal(pageDigests.length, r.outputIds.length)
  assert.ok(pageDigests.every((n) => n === 32), `digest lengths: ${pageDigests.join(',')}`)
  await checker.settled()
  const ofPage = results.filter((x) => x.peerId === info.peerId)
  assert.equal(ofPage.length, r.outputIds.length, `checks of the page: ${JSON.stringify(ofPage.map((x) => [x.verdict, x.reason]))}`)
  assert.ok(ofPage.every((x) => x.verdict === 'pass' && x.checker === replica.node.peerId.toString()), JSON.stringify(ofPage.map((x) => [x.verdict, x.reason, x.distance])))
  console.log(`page: ${ofPage.length} steps checked, max distance ${Math.max(...ofPage.map((x) => x.distance ?? 0)).toExponential(2)}`)
  assert.equal(checker.stats().uncommitted, 0)
  assert.deepEqual(pageErrors, [])
})
