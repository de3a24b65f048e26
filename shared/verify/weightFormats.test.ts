import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { nodeRuntime } from '../../node-host/engine/nodeRuntime.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../../node-host/mesh/createNodeLibp2p.ts'
import { fileModelSource } from '../../node-host/model/fileModelSource.ts'
import { createShardReferee } from '../../node-host/oracle/verify/shardReferee.ts'
import { createSqliteOracleStore } from '../../node-host/oracle/store/sqliteOracleStore.ts'
import { createVerifyLedger } from '../../node-host/oracle/verify/verifyLedger.ts'
import { loadFixture, type Fixture } from '../../testing/fixtures.ts'
import { loadShards } from '../engine/loadShards.ts'
import { createRng } from '../engine/sampling.ts'
import { silentLogger } from '../logger.ts'
import { createForwardService } from '../mesh/forwardService.ts'
import { fetchInfo } from '../mesh/infoProtocol.ts'
import { createMeshPeer } from '../mesh/createMeshPeer.ts'
import type { WeightFormat } from '../model/shardGraph.ts'
import type { PeerShard } from '../mesh/planRoute.ts'
import { evidenceToJson } from './evidence.ts'
import { createSampler } from './sampler.ts'
import { createSpotChecker, type CheckResult } from './spotChecker.ts'
import { createStepLog } from './stepLog.ts'
import { createVerifyService } from './verifyProtocol.ts'

type Range = { start: number; end: number }
const MODEL = 'docs-llama-7m'

describe('spot checks across weight formats over libp2p on loopback: docs-llama-7m', () => {
  let fixture: Fixture
  let dir: string
  const nodes: NodeLibp2p[] = []
  const formatOf = new Map<string, WeightFormat>()

  /** A serving peer as a node host runs it: mesh peer (forward + info), step log and verify service, all on `weights`. */
  async function servingPeer(range: Range, weights: WeightFormat, latencyMs: number): Promise<PeerShard> {
    const { shards } = await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range], weights })
    const shard = shards[0]!
    const privateKey = await generateKeyPair('Ed25519')
    const node = await createNodeLibp2p({ privateKey })
    nodes.push(node)
    const log = createStepLog({ signer: { peerId: node.peerId.toString(), sign: (d) => privateKey.sign(d) }, model: MODEL, hiddenSize: 256, weights })
    await createMeshPeer({ node, model: MODEL, numLayers: 8, hiddenSize: 256, shard, stepLog: log, weights, stepTimeoutMs: 10_000 })
    await createVerifyService({ node, model: MODEL, log, shard: () => shard, weights }).start()
    formatOf.set(node.peerId.toString(), weights)
    return { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), ...range, latencyMs }
  }

  before(async () => {
    fixture = await loadFixture(MODEL)
    dir = await mkdtemp(join(tmpdir(), 'verify-weights-'))
  })
  after(async () => {
    for (const n of nodes) await n.stop()
    await rm(dir, { recursive: true, force: true })
  })

  test('honest int4 and float32 hosts on the same ranges, every step sampled: never an accusation, never a withheld epoch', async () => {
    const lo = { start: 0, end: 4 }
    const hi = { start: 4, end: 8 }
    // One host of each format per range first: no same-format checker exists.
    const a = await servingPeer(lo, 'float32', 1)
    const b = await servingPeer(lo, 'int4', 1)
    const c = await servingPeer(hi, 'int4', 1)
    const d = await servingPeer(hi, 'float32', 1)

    // The format travels in the info protocol (what the peer table builds PeerShards from).
    const originNode = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(originNode)
    for (const p of [a, b, c, d]) {
      const info = await fetchInfo(originNode, p.multiaddrs[0]!)
      assert.equal(info.weights ?? 'float32', formatOf.get(p.peerId))
      p.weights = info.weights
    }
    assert.equal(a.weights, undefined, 'float32 stays absent on the wire (as older builds send it)')
    assert.equal(b.weights, 'int4')

    // The Oracle, as node hosts reach it: every failure's evidence goes to its ledger (real SQLite, its own referee).
    const store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
    const ledger = await createVerifyLedger({ store, referee: createShardReferee(new Map([[MODEL, fileModelSource(fixture.dir)]])), epoch: () => 1, logger: silentLogger })
    const results: CheckResult[] = []
    const reports: Array<Promise<unknown>> = []
    const checker = createSpotChecker({
      node: originNode,
      model: MODEL,
      sampler: createSampler({ rate: 1, newPeerRate: 1, random: createRng(5) }),
      maxInFlight: 8,
      onResult: (r) => {
        results.push(r)
        if (r.verdict === 'fail') reports.push(ledger.report(evidenceToJson(r.evidence!)))
      },
    })
    const origin = createForwardService({ node: originNode, model: MODEL, hiddenSize: 256, spotChecker: checker, stepTimeoutMs: 10_000 })
    await origin.start()

    /** Generations through the peers with `favoured` at the lowest latency (so they form the route). */
    async function run(peers: PeerShard[], favoured: PeerShard[], generations: number) {
      const withLatency = peers.map((p) => ({ ...p, latencyMs: favoured.includes(p) ? 0 : 20 }))
      for (let g = 0; g < generations; g++) {
        const p = fixture.prompts[g % 2]!
        const r = await origin.generate({ peers: () => withLatency, numLayers: 8, inputIds: p.input_ids, maxNewTokens: 6 })
        assert.deepEqual(new Set(r.routes[0]), new Set(favoured.map((f) => f.peerId)))
        await checker.settled()
      }
    }

    // No checker of the same format: the steps are unchecked, not failed.
    await run([a, b, c, d], [a, c], 2)
    await run([a, b, c, d], [b, d], 2)
    const unpaired = checker.stats()
    assert.ok(unpaired['no-checker'] >= 40, `${unpaired['no-checker']} unchecked steps`)
    assert.equal(unpaired.pass, 0)
    assert.equal(unpaired.fail, 0)

    // A same-format replica per range and format: every step is checked, and always by its own format.
    const more = [await servingPeer(lo, 'float32', 1), await servingPeer(lo, 'int4', 1), await servingPeer(hi, 'int4', 1), await servingPeer(hi, 'float32', 1)]
    for (const p of more) p.weights = (await fetchInfo(originNode, p.multiaddrs[0]!)).weights
    const all = [a, b, c, d, ...more]
    const before = results.length
    await run(all, [a, c], 2)
    await run(all, [b, d], 2)
    await Promise.all(reports)
    const paired = results.slice(before)
    const s = checker.stats()
    const worst = (w: WeightFormat) => Math.max(...paired.filter((r) => formatOf.get(r.peerId) === w).map((r) => r.distance ?? 0))
    console.log(`# formats: ${s.pass} passed, ${s.fail} failed, ${s['no-checker']} unchecked (no same-format checker), ${s.unverified} unverified; worst distance float32 ${worst('float32').toExponential(2)}, int4 ${worst('int4').toExponential(2)}`)
    assert.equal(s.fail, 0)
    assert.equal(s.unverified, 0)
    assert.deepEqual(paired.filter((r) => r.verdict !== 'pass').map((r) => `${r.verdict}: ${r.reason}`), [])
    for (const r of paired) assert.equal(formatOf.get(r.checker!), formatOf.get(r.peerId), 'checked by another weight format')
    for (const p of [a, b, c, d]) {
      assert.ok(paired.some((r) => r.peerId === p.peerId), `host ${formatOf.get(p.peerId)} [${p.start}, ${p.end}) was never checked`)
      assert.equal(ledger.status(p.peerId).records.length, 0)
      assert.equal(ledger.withheld(p.peerId, 1), false)
    }
    await store.close()
  })

  test('a hop that advertises float32 but commits to int4 is unverified (not paid), not accused', async () => {
    const liar = await servingPeer({ start: 0, end: 8 }, 'int4', 0)
    const honest = await servingPeer({ start: 0, end: 8 }, 'float32', 5)
    const node = await createNodeLibp2p({ privateKey: await generateKeyPair('Ed25519'), relay: false })
    nodes.push(node)
    const results: CheckResult[] = []
    const checker = createSpotChecker({ node, model: MODEL, sampler: createSampler({ rate: 1, newPeerRate: 1, random: createRng(1) }), onResult: (r) => results.push(r) })
    const origin = createForwardService({ node, model: MODEL, hiddenSize: 256, spotChecker: checker, stepTimeoutMs: 10_000 })
    await origin.start()
    // Its advertisement says float32 (no weights field), as a host misreporting its format would.
    const peers = [{ ...liar, weights: undefined }, honest]
    const p = fixture.prompts[0]!
    await origin.generate({ peers: () => peers, numLayers: 8, inputIds: p.input_ids, maxNewTokens: 4 })
    await checker.settled()
    assert.ok(results.length >= 4)
    for (const r of results) {
      assert.equal(r.peerId, liar.peerId)
      assert.equal(r.verdict, 'unverified')
      assert.match(r.reason!, /advertises float32 weights but committed to int4/)
    }
  })
})
