import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { after, before, describe, test } from 'node:test'
import { loadShards } from '../engine/loadShards.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { createMeshPeer, type MeshPeer } from './createMeshPeer.ts'
import { fetchInfo } from './infoProtocol.ts'
import { NoRouteError } from './planRoute.ts'

describe('mesh peer: forward service, info protocol, peer table and origin runner in one', () => {
  let fixture: Fixture
  const nodes: NodeLibp2p[] = []
  const hosts: MeshPeer[] = []

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    const source = fileModelSource(fixture.dir)
    for (const range of [{ start: 0, end: 4 }, { start: 4, end: 8 }]) {
      const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
      const { spec, shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [range] })
      nodes.push(node)
      hosts.push(await createMeshPeer({ node, model: 'docs-llama-7m', numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, shard: shards[0], shareKnown: true, stepTimeoutMs: 5000 }))
    }
  })
  after(async () => {
    for (const h of hosts) await h.stop()
    for (const n of nodes) await n.stop()
  })

  test('an origin peer learns the hosts from its bootstrap addresses and gives the reference greedy tokens', async () => {
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(node)
    const first = nodes[0]!.getMultiaddrs().map(String)[0]!
    const second = nodes[1]!.getMultiaddrs().map(String)[0]!
    const origin = await createMeshPeer({ node, model: 'docs-llama-7m', numLayers: 8, hiddenSize: 256, bootstrap: [first, second], stepTimeoutMs: 5000 })
    try {
      await origin.refresh()
      assert.deepEqual(origin.table.peers().map((p) => [p.start, p.end]).sort((a, b) => a[0]! - b[0]!), [[0, 4], [4, 8]])
      const info = await fetchInfo(node, first)
      assert.deepEqual(info.range, { start: 0, end: 4 }, 'a host says the range of the shard it serves')
      const p = fixture.prompts[0]!
      const r = await origin.generate({ inputIds: p.input_ids, maxNewTokens: p.new_tokens })
      assert.deepEqual(r.outputIds, p.greedy_new_ids.slice(0, r.outputIds.length))
      assert.equal(r.outputIds.length, p.greedy_new_ids.indexOf(0) >= 0 ? p.greedy_new_ids.indexOf(0) + 1 : p.new_tokens)
      assert.deepEqual(r.routes[0], hosts.map((h) => h.peerId))
    } finally {
      await origin.stop()
    }
  })

  test('without routeWaitMs, an origin that knows no route asks its bootstrap peers once before planning (a page chatting before its first refresh)', async () => {
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(node)
    const bootstrap = nodes.slice(0, 2).map((n) => n.getMultiaddrs().map(String)[0]!)
    const origin = await createMeshPeer({ node, model: 'docs-llama-7m', numLayers: 8, hiddenSize: 256, bootstrap, stepTimeoutMs: 5000 })
    try {
      assert.deepEqual(origin.table.peers(), [], 'nothing is known before the first refresh')
      const p = fixture.prompts[0]!
      const r = await origin.generate({ inputIds: p.input_ids, maxNewTokens: 2 })
      assert.deepEqual(r.outputIds, p.greedy_new_ids.slice(0, r.outputIds.length))
      assert.deepEqual(r.routes, [hosts.map((h) => h.peerId)])
    } finally {
      await origin.stop()
    }
  })

  test('with routeWaitMs, a missing range is waited for and then a NoRouteError naming the wait', async () => {
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(node)
    const origin = await createMeshPeer({ node, model: 'docs-llama-7m', numLayers: 8, hiddenSize: 256, bootstrap: [nodes[0]!.getMultiaddrs().map(String)[0]!], routeWaitMs: 600, stepTimeoutMs: 5000 })
    try {
      const t0 = Date.now()
      await assert.rejects(origin.generate({ inputIds: [1, 2, 3], maxNewTokens: 2 }), (e: Error) => e instanceof NoRouteError && /after waiting 1 s for a repair/.test(e.message))
      assert.ok(Date.now() - t0 >= 600, 'it waited')
    } finally {
      await origin.stop()
    }
  })

  test('a route fails on a passing fault of the only copy of its layers (its serving side restarts, the peer stays): the origin routes through it again once it answers, the same tokens, no wait for a repair', async () => {
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(node)
    const bootstrap = nodes.slice(0, 2).map((n) => n.getMultiaddrs().map(String)[0]!)
    // A long wait: without readmission the generation would wait it out and fail with NoRouteError.
    const origin = await createMeshPeer({ node, model: 'docs-llama-7m', numLayers: 8, hiddenSize: 256, bootstrap, routeWaitMs: 20_000, stepTimeoutMs: 5000 })
    try {
      await origin.refresh()
      const p = fixture.prompts[0]!
      let dropped = false
      const t0 = Date.now()
      const r = await origin.generate({
        inputIds: p.input_ids,
        maxNewTokens: p.new_tokens,
        onToken: (_id, i) => {
          if (i === 4 && !dropped) {
            dropped = true
            // The first hop's serving side restarts: its sessions are told it shuts down (the failure is blamed
            // on it), and it serves again at once; it never leaves the mesh.
            void hosts[0]!.service.stop().then(() => hosts[0]!.service.start())
          }
        },
      })
      assert.ok(dropped)
      assert.deepEqual(r.outputIds, p.greedy_new_ids.slice(0, r.outputIds.length))
      assert.equal(r.failovers, 1)
      assert.deepEqual(r.routes, [hosts.map((h) => h.peerId), hosts.map((h) => h.peerId)], 'the same peers, the only ones that cover the layers')
      assert.ok(Date.now() - t0 < 15_000, 'no wait for a repair')
    } finally {
      await origin.stop()
    }
  })
})
