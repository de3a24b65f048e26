import assert from 'node:assert/strict'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { chromium, type Browser, type Page } from 'playwright-core'
import { loadShards } from '../shared/engine/loadShards.ts'
import { createForwardService, type ForwardService } from '../shared/mesh/forwardService.ts'
import { serveInfo } from '../shared/mesh/infoProtocol.ts'
import type { PeerShard } from '../shared/mesh/planRoute.ts'
import { nodeRuntime } from '../node-host/engine/nodeRuntime.ts'
import { createLogger } from '../node-host/logger.ts'
import { createOracle } from '../node-host/oracle/createOracle.ts'
import { readModelInfo } from '../node-host/oracle/modelInfo.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../node-host/model/fileModelSource.ts'
import { loadFixture, type Fixture, type FixturePrompt } from '../testing/fixtures.ts'
import type { MeshPeerInfo } from '../testing/pages/meshPeerPage.ts'
import { CHROMIUM_PATH, MESH_PAGE_ARGS } from './launchChromium.ts'
import { startWebServer, type WebServer, type WebServerMode } from './startWebServer.ts'

// Pages as peers of the mesh: a page serving docs-llama-7m's middle layers [3, 6) in its engine
// worker (onnxruntime-web, wasm), with libp2p on the page's main thread.
//  (a) Node hosts A [0, 3) and C [6, 8) (C runs the relay the page reserves a slot on); a Node origin.
//  (c) As (a), but the page connects to nothing but a relay R, so hidden states from a host A' [0, 3)
//      reach it through R's circuit. R lifts the default circuit limits (128 KiB, 2 min), which would
//      cut a generation; and A' has the circuit relay *transport*, which createNodeLibp2p's hosts lack
//      (they cannot dial a `/p2p-circuit` address: "no valid addresses").
//  (b) Two pages over WebRTC, signalled through C's relay: page 2 is the origin and serves [0, 3),
//      page 1 serves [3, 6), C serves [6, 8).
// Tensors never cross the relay: the page dials A and C directly over WebSockets, and Node hosts
// reach the page over that connection (libp2p reuses a direct connection to a peer before dialing
// its relayed address); between pages, hidden states go over WebRTC.

const MODEL = 'docs-llama-7m'
const serverMode = (process.env.SHARDMESH_WEB_SERVER ?? 'build') as WebServerMode
const debug = process.env.DEBUG_MESH ? { debug: console.log, info: console.log, warn: console.log, error: console.log } : undefined

const expected = (p: FixturePrompt) => {
  const eos = p.greedy_new_ids.indexOf(0)
  return eos >= 0 ? p.greedy_new_ids.slice(0, eos + 1) : p.greedy_new_ids
}

const wsAddr = (n: NodeLibp2p) => {
  const a = n.getMultiaddrs().map(String).find((m) => m.includes('/ws'))
  if (!a) throw new Error('node has no /ws address')
  return a
}

describe('mesh: a Chromium page serving layers [3, 6) of docs-llama-7m', () => {
  let fixture: Fixture
  let server: WebServer
  let browser: Browser
  const nodes: NodeLibp2p[] = []
  let hostA: { node: NodeLibp2p; service: ForwardService }
  let hostC: { node: NodeLibp2p; service: ForwardService }
  let origin: ForwardService
  let originLibp2p: NodeLibp2p
  const pageErrors: string[] = []
  /** The pages' console (their mesh logs): shown when a generation fails. */
  const pageLogs: string[] = []
  const explained = <T>(run: Promise<T>): Promise<T> =>
    run.catch((e: Error) => {
      throw new Error(`${e.message}\npages' logs:\n${pageLogs.slice(-60).join('\n')}`, { cause: e })
    })

  async function host(range: { start: number; end: number }, node?: NodeLibp2p) {
    node ??= await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
    const { spec, shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime(), device: 'cpu', ranges: [range] })
    const service = createForwardService({ node, model: MODEL, hiddenSize: spec.hiddenSize, shard: shards[0], stepTimeoutMs: 20_000, logger: debug })
    await service.start()
    await serveInfo(node, () => ({ model: MODEL, numLayers: spec.numLayers, range, known: [] }))
    nodes.push(node)
    return { node, service }
  }

  const nodePeer = (h: { node: NodeLibp2p }, start: number, end: number): PeerShard => ({ peerId: h.node.peerId.toString(), multiaddrs: h.node.getMultiaddrs().map(String), start, end, latencyMs: 1 })

  async function openPeerPage(name: string): Promise<Page> {
    const context = await browser.newContext()
    const page = await context.newPage()
    page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`))
    page.on('console', (m) => {
      pageLogs.push(`[${name}] ${m.text()}`)
      if (process.env.DEBUG_MESH) console.log(`[${name}] ${m.text()}`)
    })
    await page.goto(new URL('mesh-peer.html', server.url).href)
    await page.waitForFunction(() => window.meshPeer !== undefined, undefined, { timeout: 60_000 })
    return page
  }

  const startPage = (page: Page, range: { start: number; end: number } | undefined, dial: string[], relay = wsAddr(hostC.node)): Promise<MeshPeerInfo> =>
    page.evaluate((p) => window.meshPeer!.start(p), { modelUrl: `/models/${MODEL}/`, model: MODEL, range, device: 'wasm' as const, relay, dial })

  before(async () => {
    fixture = await loadFixture(MODEL)
    const [web, a, c, originNode] = await Promise.all([
      startWebServer(serverMode),
      (async () => {
        // loadShards needs the fixture: set above.
        return host({ start: 0, end: 3 })
      })(),
      host({ start: 6, end: 8 }),
      createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false }),
    ])
    server = web
    hostA = a
    hostC = c
    nodes.push(originNode)
    originLibp2p = originNode
    origin = createForwardService({ node: originNode, model: MODEL, hiddenSize: 256, stepTimeoutMs: 20_000, logger: debug })
    await origin.start()
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: MESH_PAGE_ARGS,
    })
  })

  after(async () => {
    await browser?.close()
    await server?.close()
    for (const n of nodes) await Promise.resolve(n.stop()).catch(() => undefined)
  })

  test("a page's peer id is its Ed25519 key kept in IndexedDB: the same after a reload, its libp2p uses it", async () => {
    const page = await openPeerPage('identity')
    const first = await page.evaluate(() => window.meshPeer!.peerId())
    await page.reload()
    await page.waitForFunction(() => window.meshPeer !== undefined, undefined, { timeout: 60_000 })
    assert.equal(await page.evaluate(() => window.meshPeer!.peerId()), first)
    const info = await startPage(page, undefined, [])
    assert.equal(info.peerId, first)
    await page.evaluate(() => window.meshPeer!.stop())
    await page.context().close()
  })

  test('(a) Node hosts A, C (relay) and a Node origin; A reaches the page over the WebSocket the page opened: the reference greedy tokens', async () => {
    const page = await openPeerPage('page')
    const info = await startPage(page, { start: 3, end: 6 }, [wsAddr(hostA.node)])
    assert.equal(info.numLayers, 8)
    assert.ok(info.multiaddrs.some((a) => a.includes(`/p2p/${hostC.node.peerId}/p2p-circuit`)), `a circuit address on C: ${info.multiaddrs.join(', ')}`)
    // What the Node hosts know of the page: its relayed addresses only.
    const pagePeer: PeerShard = { peerId: info.peerId, multiaddrs: info.multiaddrs.filter((a) => a.includes('/p2p-circuit') && !a.includes('/webrtc')), start: 3, end: 6, latencyMs: 1 }
    const peers = [nodePeer(hostA, 0, 3), pagePeer, nodePeer(hostC, 6, 8)]
    const p = fixture.prompts[0]!
    const t0 = performance.now()
    const r = await origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: p.new_tokens, eosTokenIds: [0] })
    const ms = performance.now() - t0
    console.log(`(a) ${r.outputIds.length} tokens in ${ms.toFixed(0)} ms over ${r.routes[0]!.length} hops`)
    assert.deepEqual(r.outputIds, expected(p))
    assert.equal(r.failovers, 0)
    assert.deepEqual(r.routes[0], peers.map((x) => x.peerId))
    // A reached the page over the page's direct WebSocket connection, not through the relay.
    const toPage = hostA.node.getConnections().filter((c) => c.remotePeer.toString() === info.peerId && c.status === 'open')
    assert.ok(toPage.some((c) => c.direct && c.limits == null), `A's connections to the page: ${toPage.map((c) => String(c.remoteAddr)).join(', ')}`)
    assert.deepEqual(pageErrors, [])
    await page.evaluate(() => window.meshPeer!.stop())
    await page.context().close()
  })

  test("(c) a host A' reaches the page only through a relay circuit (limits lifted): the reference greedy tokens", async () => {
    const libp2p = async (relayServer: boolean) =>
      createLibp2p({
        privateKey: await generateKeyPair('Ed25519'),
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'] },
        transports: [tcp(), webSockets(), circuitRelayTransport()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        connectionGater: { denyDialMultiaddr: async () => false },
        services: { identify: identify(), ping: ping(), ...(relayServer ? { relay: circuitRelayServer({ reservations: { applyDefaultLimit: false } }) } : {}) },
      })
    const relay = await libp2p(true)
    nodes.push(relay)
    const hostA2 = await host({ start: 0, end: 3 }, (await libp2p(false)) as unknown as NodeLibp2p)
    const page = await openPeerPage('page-relayed')
    const info = await startPage(page, { start: 3, end: 6 }, [], wsAddr(relay))
    const circuit = info.multiaddrs.filter((a) => a.includes(`/p2p/${relay.peerId}/p2p-circuit`) && !a.includes('/webrtc'))
    assert.ok(circuit.length > 0, `a circuit address on R: ${info.multiaddrs.join(', ')}`)
    const peers = [nodePeer(hostA2, 0, 3), { peerId: info.peerId, multiaddrs: circuit, start: 3, end: 6, latencyMs: 1 }, nodePeer(hostC, 6, 8)]
    const p = fixture.prompts[0]!
    const t0 = performance.now()
    const r = await origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: p.new_tokens, eosTokenIds: [0] })
    console.log(`(c) ${r.outputIds.length} tokens in ${(performance.now() - t0).toFixed(0)} ms over ${r.routes[0]!.length} hops`)
    assert.deepEqual(r.outputIds, expected(p))
    assert.equal(r.failovers, 0)
    assert.deepEqual(r.routes[0], peers.map((x) => x.peerId))
    const toPage = hostA2.node.getConnections().filter((c) => c.remotePeer.toString() === info.peerId && c.status === 'open')
    assert.ok(toPage.length > 0 && toPage.every((c) => !c.direct && String(c.remoteAddr).includes('/p2p-circuit')), `A's connections to the page: ${toPage.map((c) => String(c.remoteAddr)).join(', ')}`)
    assert.deepEqual(pageErrors, [])
    await page.evaluate(() => window.meshPeer!.stop())
    await page.context().close()
  })

  test('(b) two pages over WebRTC (signalled through the relay): the reference greedy tokens', async () => {
    const page1 = await openPeerPage('page1')
    const page2 = await openPeerPage('page2')
    const [info1, info2] = await Promise.all([startPage(page1, { start: 3, end: 6 }, []), startPage(page2, { start: 0, end: 3 }, [])])
    const webrtc1 = info1.multiaddrs.filter((a) => a.includes('/webrtc'))
    assert.ok(webrtc1.length > 0, `page 1 has a /webrtc address: ${info1.multiaddrs.join(', ')}`)
    const peers: PeerShard[] = [
      { peerId: info2.peerId, multiaddrs: [], start: 0, end: 3, latencyMs: 1 },
      { peerId: info1.peerId, multiaddrs: webrtc1, start: 3, end: 6, latencyMs: 1 },
      nodePeer(hostC, 6, 8),
    ]
    const p = fixture.prompts[0]!
    const t0 = performance.now()
    const r = await explained(page2.evaluate((params) => window.meshPeer!.generate(params), { peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: p.new_tokens, eosTokenIds: [0] }))
    const ms = performance.now() - t0
    console.log(`(b) ${r.outputIds.length} tokens in ${ms.toFixed(0)} ms over ${r.routes[0]!.length} hops`)
    assert.deepEqual(r.outputIds, expected(p))
    assert.equal(r.failovers, 0)
    assert.deepEqual(r.routes[0], peers.map((x) => x.peerId))
    const conns = await page2.evaluate(() => window.meshPeer!.connections())
    const toPage1 = conns.filter((c) => c.peerId === info1.peerId)
    assert.ok(toPage1.some((c) => c.remoteAddr.includes('/webrtc') && !c.limited), `page 2's connections to page 1: ${JSON.stringify(toPage1)}`)
    assert.deepEqual(pageErrors, [])
    for (const page of [page1, page2]) {
      await page.evaluate(() => window.meshPeer!.stop())
      await page.context().close()
    }
  })
  test('(d) the page joins an Oracle over the Orban channel: hardware and score registered, a range assigned, loaded in the worker and served: the reference greedy tokens through it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shardmesh-page-oracle-'))
    const oracle = await createOracle({ db: join(dir, 'oracle.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, logger: createLogger('oracle', 'silent') })
    const page = await openPeerPage('page-oracle')
    try {
      const joined = await page.evaluate((p) => window.meshPeer!.joinOracle(p), {
        oracle: oracle.url,
        modelUrl: `/models/${MODEL}/`,
        model: MODEL,
        relay: wsAddr(hostC.node),
        dial: [wsAddr(originLibp2p)],
        device: 'wasm' as const,
        heartbeatIntervalMs: 2000,
      })
      const registered = oracle.orban.agents().find((a) => a.agentId === joined.agentId)
      assert.ok(registered, 'the page registered over the Orban channel')
      assert.equal(registered.registration.mesh?.peer_id, joined.peerId, 'its Orban key is its libp2p identity')
      assert.ok((registered.registration.mesh?.benchmark_tok_per_sec ?? 0) > 0, 'a measured score')
      assert.ok(Number(registered.registration.hardware.memory_gb) > 0, 'navigator.deviceMemory')
      let node
      for (let i = 0; i < 300 && !node; i++) {
        node = oracle.core.topology(MODEL).nodes.find((n) => n.peerId === joined.peerId && n.ready)
        if (!node) await new Promise((r) => setTimeout(r, 200))
      }
      assert.ok(node, 'the page reported its range served')
      assert.deepEqual([node.layerStart, node.layerEnd], [0, 8], 'alone, it holds the whole model')
      assert.deepEqual(await page.evaluate(() => window.meshPeer!.oracleRange()), { start: 0, end: 8 })
      const p = fixture.prompts[0]!
      const pagePeer: PeerShard = { peerId: joined.peerId, multiaddrs: joined.multiaddrs.filter((a) => a.includes('/p2p-circuit') && !a.includes('/webrtc')), start: 0, end: 8, latencyMs: 1 }
      const r = await origin.generate({ peers: () => [pagePeer], numLayers: 8, inputIds: p.input_ids, maxNewTokens: p.new_tokens, eosTokenIds: [0] })
      assert.deepEqual(r.outputIds, expected(p))
      assert.deepEqual(pageErrors, [])
    } finally {
      await page.evaluate(() => window.meshPeer!.stop()).catch(() => undefined)
      await page.context().close()
      await oracle.close()
    }
  })
})
