import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { loadShards } from '../../shared/engine/loadShards.ts'
import { createForwardService } from '../../shared/mesh/forwardService.ts'
import type { PeerShard } from '../../shared/mesh/planRoute.ts'
import { createServingVerification } from '../../shared/verify/servingVerification.ts'
import { nodeRuntime } from '../engine/nodeRuntime.ts'
import { createLogger } from '../logger.ts'
import { createNodeLibp2p, type NodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { resolveModelSource } from '../model/resolveModelSource.ts'
import { createOracle, type Oracle } from '../oracle/createOracle.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { createHostVerification } from './hostVerification.ts'

// A node host's spot checks feed the Oracle's pay rule: the passes it sees are sent to the real
// Oracle (POST /api/v1/verify/sample), which recomputes them and marks the checked peer's work of
// the epoch as sampled; a peer that sends no commitments is never sampled.

const MODEL = 'docs-llama-7m'
const nodes: NodeLibp2p[] = []
let oracle: Oracle | undefined
let dir: string | undefined
after(async () => {
  for (const n of nodes) await n.stop()
  await oracle?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

test("a host's passed checks reach the Oracle as samples: the committing peer's epoch is sampled, the uncommitted one's is not", async () => {
  dir = await mkdtemp(join(tmpdir(), 'host-verification-'))
  const info = await readModelInfo(undefined)
  oracle = await createOracle({ db: join(dir, 'oracle.db'), models: [info], port: 0, replicas: 1, logger: createLogger('oracle', 'silent'), paySampledWorkOnly: true })
  const source = resolveModelSource(undefined)
  const range = { start: 0, end: 8 }
  const shard = async () => (await loadShards({ source, runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range] })).shards[0]!

  /** A peer serving all 8 layers, committing or not. */
  async function server(committed: boolean, latencyMs: number): Promise<PeerShard> {
    const privateKey = await generateKeyPair('Ed25519')
    const node = await createNodeLibp2p({ privateKey })
    nodes.push(node)
    const s = await shard()
    const serving = committed ? createServingVerification({ node, signer: { peerId: node.peerId.toString(), sign: (d) => privateKey.sign(d) }, model: MODEL, hiddenSize: 256, shard: () => s }) : undefined
    await serving?.start()
    await createForwardService({ node, model: MODEL, hiddenSize: 256, shard: s, stepLog: serving?.stepLog, stepTimeoutMs: 20_000 }).start()
    return { peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), ...range, latencyMs }
  }
  const committing = await server(true, 1)
  const checker = await server(true, 500)
  const silent = await server(false, 1)

  const originKey = await generateKeyPair('Ed25519')
  const originNode = await createNodeLibp2p({ privateKey: originKey, relay: false })
  nodes.push(originNode)
  const v = createHostVerification({ signer: { peerId: originNode.peerId.toString(), sign: (d) => originKey.sign(d) }, oracle: oracle.url, sampling: { rate: 1, newPeerRate: 1 }, node: originNode, model: MODEL, hiddenSize: 256, shard: () => undefined, logger: createLogger('origin', 'silent') })
  await v.start()
  const origin = createForwardService({ node: originNode, model: MODEL, hiddenSize: 256, spotChecker: v.spotChecker, stepTimeoutMs: 20_000 })
  await origin.start()
  const inputIds = [1, 2, 3, 4, 5]
  for (const peers of [[committing, checker], [silent, checker]]) {
    const r = await origin.generate({ peers: () => peers, numLayers: 8, inputIds, maxNewTokens: 3 })
    assert.equal(r.routes[0]![0], peers[0]!.peerId)
  }
  v.spotChecker.flush()
  await v.spotChecker.settled()
  const stats = v.stats()
  assert.ok(stats.pass >= 1, `passes: ${JSON.stringify(stats)}`)
  assert.equal(stats.uncommitted, 3, "the silent peer's 3 steps came without a commitment")

  const statusOf = async (peerId: string) => (await (await fetch(`${oracle!.url}/api/v1/verify/status?peerId=${peerId}`)).json()) as { sampledEpochs: number[]; rewardRule: string }
  // the sample is sent beside the check's result: wait for it to land
  let sampled: number[] = []
  for (let i = 0; i < 100 && !sampled.length; i++) {
    sampled = (await statusOf(committing.peerId)).sampledEpochs
    if (!sampled.length) await new Promise((r) => setTimeout(r, 100))
  }
  assert.deepEqual(sampled, [0])
  const silentStatus = await statusOf(silent.peerId)
  assert.deepEqual(silentStatus.sampledEpochs, [])
  assert.match(silentStatus.rewardRule, /only if it is in sampledEpochs/)
  await v.stop()
})
