import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { after, before, describe, test } from 'node:test'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { noisyShard, replayingShard, shortShard } from '../../testing/cheatingShards.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { loadShards } from '../engine/loadShards.ts'
import { createRng } from '../engine/sampling.ts'
import type { ShardSession } from '../engine/shardSession.ts'
import { createForwardService, type ForwardService } from '../mesh/forwardService.ts'
import type { PeerShard } from '../mesh/planRoute.ts'
import { bindEvidence } from './evidence.ts'
import { createSampler, stepsToFirstCheck } from './sampler.ts'
import { createSpotChecker, type CheckResult, type SpotChecker } from './spotChecker.ts'
import { createStepLog } from './stepLog.ts'
import { DEFAULT_TOLERANCE } from './tolerance.ts'
import { createVerifyService } from './verifyProtocol.ts'

type Range = { start: number; end: number }

describe('spot checks over libp2p on loopback: docs-llama-7m', () => {
  let fixture: Fixture
  const nodes: NodeLibp2p[] = []

  async function shardOf(range: Range, threads?: number): Promise<ShardSession> {
    const { shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ threads, spinning: false }), device: 'cpu', ranges: [range] })
    return shards[0]!
  }

  /** A serving peer: forward service with a step log, and the verify protocol. */
  async function servingPeer(shard: ShardSession, latencyMs: number): Promise<PeerShard> {
    const privateKey = await generateKeyPair('Ed25519')
    const node = await createNodeLibp2p({ privateKey })
    nodes.push(node)
    const log = createStepLog({ signer: { peerId: node.peerId.toString(), sign: (d) => privateKey.sign(d) }, model: 'docs-llama-7m', hiddenSize: 256 })
    await createForwardService({ node, model: 'docs-llama-7m', hiddenSize: 256, shard, stepLog: log, stepTimeoutMs: 10_000 }).start()
    await createVerifyService({ node, model: 'docs-llama-7m', log, shard: () => shard }).start()
    return { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), ...shard.range, latencyMs }
  }

  async function originWith(rate: number, seed: number, onResult: (r: CheckResult) => void, holdUntilFlush = false): Promise<{ service: ForwardService; checker: SpotChecker }> {
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(node)
    const checker = createSpotChecker({ node, model: 'docs-llama-7m', sampler: createSampler({ rate, newPeerRate: rate, random: createRng(seed) }), onResult, maxInFlight: 8, holdUntilFlush })
    const service = createForwardService({ node, model: 'docs-llama-7m', hiddenSize: 256, spotChecker: checker, stepTimeoutMs: 10_000 })
    await service.start()
    return { service, checker }
  }

  /** The route's peers (lowest latency), then the checkers: same ranges, another thread count. */
  const honest: PeerShard[] = []
  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    for (const range of [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 8 }]) {
      honest.push(await servingPeer(await shardOf(range), 1))
      honest.push(await servingPeer(await shardOf(range, 1), 5))
    }
  })
  after(async () => {
    for (const n of nodes) await n.stop()
  })

  test('honest peers on 2 and 1 ORT threads check each other over 1,000+ steps: every check passes', async () => {
    const results: CheckResult[] = []
    const { service, checker } = await originWith(1, 7, (r) => results.push(r))
    let tokens = 0
    while (results.filter((r) => r.verdict === 'pass').length < 1000) {
      const p = fixture.prompts[tokens % 2]!
      const r = await service.generate({ peers: () => honest, numLayers: 8, inputIds: p.input_ids, maxNewTokens: p.new_tokens })
      assert.deepEqual(r.outputIds, p.greedy_new_ids)
      tokens += r.outputIds.length
      await checker.settled()
    }
    const s = checker.stats()
    const worst = Math.max(...results.map((r) => r.distance ?? 0))
    console.log(`# honest: ${s.pass} checks passed, ${s.fail} failed, ${s.skipped} skipped, ${s.unverified} unverified; worst distance ${worst.toExponential(2)} (tolerance ${DEFAULT_TOLERANCE})`)
    assert.equal(s.fail, 0)
    assert.equal(s.unverified, 0)
    assert.ok(s.pass >= 1000)
    // Checks on every hop, by the other replica of its range.
    for (const r of results) assert.notEqual(r.checker, r.peerId)
    assert.deepEqual(new Set(results.map((r) => r.range.start)), new Set([0, 3, 6]))
  })

  test('held checks (as node hosts run them) start only once the generation is done, and then all run', async () => {
    const results: CheckResult[] = []
    const { service, checker } = await originWith(0.5, 3, (r) => results.push(r), true)
    const p = fixture.prompts[1]!
    await service.generate({ peers: () => honest, numLayers: 8, inputIds: p.input_ids, maxNewTokens: 16 })
    await new Promise((r) => setTimeout(r, 200))
    const sampled = checker.stats().sampled
    assert.ok(sampled > 5)
    assert.equal(results.length, 0, 'no check ran during or after the generation before flush')
    checker.flush()
    await checker.settled()
    assert.equal(results.length, sampled)
    assert.deepEqual(results.filter((r) => r.verdict !== 'pass').map((r) => `${r.verdict}: ${r.reason}`), [])
  })

  const cheaters: Array<[string, () => Promise<ShardSession>]> = [
    ['adds noise (10 % of the row RMS) to its outputs', async () => noisyShard(await shardOf({ start: 3, end: 6 }), 0.1)],
    ['answers decode steps with a cached answer for another input', async () => replayingShard(await shardOf({ start: 3, end: 6 }))],
    ['runs layers [3, 5) while claiming [3, 6)', async () => shortShard(await shardOf({ start: 3, end: 5 }), { start: 3, end: 6 })],
  ]
  const bound = stepsToFirstCheck(0.05, 0.999)
  for (const [label, make] of cheaters) {
    test(`a hop that ${label} is caught at 5 %, its first failed check within ${bound} of its steps`, async () => {
      const cheater = await servingPeer(await make(), 0)
      const peers = [...honest, cheater]
      const results: CheckResult[] = []
      const { service, checker } = await originWith(0.05, label.length, (r) => results.push(r))
      let fail: CheckResult | undefined
      let steps = 0
      for (let g = 0; !fail && steps < 2000; g++) {
        const p = fixture.prompts[g % 2]!
        const r = await service.generate({
          peers: () => peers,
          numLayers: 8,
          inputIds: p.input_ids,
          maxNewTokens: p.new_tokens,
          onToken: (_id, _i, timings) => void (steps += timings.filter((x) => x.peerId === cheater.peerId).length),
        })
        assert.ok(r.routes[0]!.includes(cheater.peerId))
        await checker.settled()
        fail = results.filter((x) => x.verdict === 'fail').sort((a, b) => a.seq - b.seq)[0]
      }
      assert.ok(fail, 'the cheater was never caught')
      assert.equal(fail.peerId, cheater.peerId)
      const at = fail.seq
      console.log(`# ${label}: first failed check at its step ${at} (predicted: mean 20, 95 % within 59, 99.9 % within ${bound}); distance ${fail.distance!.toExponential(2)}; honest hops failed: ${results.filter((x) => x.verdict === 'fail' && x.peerId !== cheater.peerId).length}`)
      assert.ok(at <= bound, `caught only at step ${at}`)
      assert.ok(fail.distance! > DEFAULT_TOLERANCE)
      assert.ok(!results.some((x) => x.verdict === 'fail' && x.peerId !== cheater.peerId), 'an honest hop was accused')
      // The evidence binds the cheater's own signature to the inputs and the wrong row.
      const c = await bindEvidence(fail.evidence!)
      assert.equal(c.peer, cheater.peerId)
    })
  }
})
