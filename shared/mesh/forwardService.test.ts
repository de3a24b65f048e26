import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { after, before, describe, test } from 'node:test'
import { loadShards } from '../engine/loadShards.ts'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { createForwardService, type ForwardService } from './forwardService.ts'
import type { PeerShard } from './planRoute.ts'

describe('forward protocol: docs-llama-7m over libp2p peers on loopback', () => {
  let fixture: Fixture
  const nodes: NodeLibp2p[] = []
  const services: ForwardService[] = []
  const peers: PeerShard[] = []
  let origin: ForwardService

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    const source = fileModelSource(fixture.dir)
    const ranges = [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 3, end: 6 }, { start: 6, end: 8 }]
    for (const range of ranges) {
      const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
      const { spec, shards } = await loadShards({ source, runtime: nodeRuntime(), device: 'cpu', ranges: [range] })
      const service = createForwardService({ node, model: 'docs-llama-7m', hiddenSize: spec.hiddenSize, shard: shards[0], stepTimeoutMs: 5000, logger: process.env.DEBUG_MESH ? { debug: console.log, info: console.log, warn: console.log, error: console.log } : undefined })
      await service.start()
      nodes.push(node)
      services.push(service)
      peers.push({ peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), ...range, latencyMs: 1 })
    }
    // The second [3, 6) peer is the slower choice, so routes use the first until it dies.
    peers[2]!.latencyMs = 3
    const originNode = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(originNode)
    origin = createForwardService({ node: originNode, model: 'docs-llama-7m', hiddenSize: 256, stepTimeoutMs: 5000, logger: process.env.DEBUG_MESH ? { debug: console.log, info: console.log, warn: console.log, error: console.log } : undefined })
    await origin.start()
  })
  after(async () => {
    for (const n of nodes) await n.stop()
  })

  test('three hops give the reference greedy tokens', async () => {
    let positions = 0
    for (const p of fixture.prompts) {
      const r = await origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: p.new_tokens, eosTokenIds: [0] })
      const eos = p.greedy_new_ids.indexOf(0)
      assert.deepEqual(r.outputIds, eos >= 0 ? p.greedy_new_ids.slice(0, eos + 1) : p.greedy_new_ids)
      assert.equal(r.failovers, 0)
      assert.equal(r.routes[0]!.length, 3)
      // the prompt, then every generated token but the last goes through each hop once
      positions += p.input_ids.length + r.outputIds.length - 1
    }
    // what each peer counts as served: the hops of the routes, and nothing on the unused replica
    for (const i of [0, 1, 3]) {
      const s = services[i]!.stats()
      assert.equal(s.processedTokens, positions, `peer ${i}`)
      assert.equal(s.sessions, fixture.prompts.length)
      assert.ok(s.steps >= fixture.prompts.length && s.computeMs > 0)
    }
    assert.deepEqual(services[2]!.stats(), { processedTokens: 0, sessions: 0, steps: 0, computeMs: 0 })
    assert.equal(origin.stats().processedTokens, 0)
  })

  test('the middle peer dies mid-generation: re-planned, replayed, the same tokens', async () => {
    const p = fixture.prompts[0]!
    let killed = false
    const r = await origin.generate({
      peers: () => peers,
      numLayers: 8,
      inputIds: p.input_ids,
      maxNewTokens: p.new_tokens,
      onToken: (_id, i) => {
        if (i === 10 && !killed) {
          killed = true
          void nodes[1]!.stop()
        }
      },
    })
    assert.ok(killed)
    assert.equal(r.failovers, 1)
    assert.deepEqual(r.routes[1], [peers[0]!.peerId, peers[2]!.peerId, peers[3]!.peerId])
    assert.deepEqual(r.outputIds, p.greedy_new_ids)
  })

  test('the last copy of a range dies mid-generation: the origin waits for a repair (a new peer loads it), replays, the same tokens', async () => {
    const p = fixture.prompts[0]!
    const live = [peers[0]!, peers[2]!, peers[3]!]
    let killed = false
    let waited = 0
    const r = await origin.generate({
      peers: () => live,
      numLayers: 8,
      inputIds: p.input_ids,
      maxNewTokens: p.new_tokens,
      onToken: (_id, i) => {
        if (i === 10 && !killed) {
          killed = true
          void nodes[2]!.stop()
        }
      },
      waitForRoute: async (routable) => {
        waited++
        assert.equal(routable(), false)
        // The repair: a fresh peer loads [3, 6) and becomes known.
        const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519') })
        nodes.push(node)
        const { spec, shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime(), device: 'cpu', ranges: [{ start: 3, end: 6 }] })
        const service = createForwardService({ node, model: 'docs-llama-7m', hiddenSize: spec.hiddenSize, shard: shards[0], stepTimeoutMs: 5000 })
        await service.start()
        live.splice(1, 1, { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), start: 3, end: 6, latencyMs: 1 })
        assert.equal(routable(), true)
      },
    })
    assert.ok(killed)
    assert.equal(waited, 1)
    assert.equal(r.failovers, 1)
    assert.deepEqual(r.outputIds, p.greedy_new_ids)
  })
})
