import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { loadShards } from '../../../shared/engine/loadShards.ts'
import { evidenceToJson } from '../../../shared/verify/evidence.ts'
import { recomputeLastRow } from '../../../shared/verify/recompute.ts'
import { createStepLog } from '../../../shared/verify/stepLog.ts'
import { rowFromBytes } from '../../../shared/verify/verifyProtocol.ts'
import { nodeRuntime } from '../../engine/nodeRuntime.ts'
import { createLogger } from '../../logger.ts'
import { resolveModelSource } from '../../model/resolveModelSource.ts'
import { noisyShard } from '../../../testing/cheatingShards.ts'
import { createOracle, type Oracle } from '../createOracle.ts'
import { readModelInfo } from '../modelInfo.ts'

// The whole Oracle (createOracle): evidence posted over HTTP is checked by its own referee on the
// model files it serves, kept in its SQLite file across a restart, and readable by anyone.

let dir: string
let oracle: Oracle
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'verify-routes-'))
})
after(async () => {
  await oracle?.close()
  await rm(dir, { recursive: true, force: true })
})

test('POST /api/v1/verify/evidence: a cheat is confirmed, a forgery refused; GET /api/v1/verify/status says why, after a restart too', async () => {
  const info = await readModelInfo(undefined)
  const start = () => createOracle({ db: join(dir, 'oracle.db'), models: [info], port: 0, replicas: 1, logger: createLogger('oracle', 'silent') })
  oracle = await start()
  const source = resolveModelSource(undefined)
  const range = { start: 0, end: 2 }
  const honest = (await loadShards({ source, runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range] })).shards[0]!
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key).toString()
  const log = createStepLog({ signer: { peerId, sign: (d) => key.sign(d) }, model: info.name, hiddenSize: honest.spec.hiddenSize })
  const tokens = [1, 2, 3, 4, 5, 6, 7]
  const out = await noisyShard(honest, 0.2).forward('s', { tokens }, { reset: true })
  const { commitment } = log.record({ origin: 'o', sessionId: 's', range, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: tokens } }, output: out, start: true })
  const audit = await log.audit('o', 's', commitment)
  const evidence = { commitment: audit.commitment, signature: audit.signature, inputs: audit.inputs, output: rowFromBytes(audit.output), checker: 'c', checkerOutput: await recomputeLastRow(honest, audit.inputs) }
  const post = (body: unknown) => fetch(`${oracle.url}/api/v1/verify/evidence`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  const r = await post(evidenceToJson(evidence))
  assert.equal(r.status, 200)
  const answer = (await r.json()) as { verdict: string; peerId: string }
  assert.deepEqual([answer.verdict, answer.peerId], ['confirmed', peerId])
  const forged = await post(evidenceToJson({ ...evidence, output: evidence.checkerOutput }))
  assert.equal(forged.status, 400)
  assert.match(((await forged.json()) as { message?: string; error?: string }).message ?? '', /committed/)

  await oracle.close()
  oracle = await start()
  const status = (await (await fetch(`${oracle.url}/api/v1/verify/status?peerId=${peerId}`)).json()) as { confirmedFailures: number; banned: boolean; records: Array<{ verdict: string; refereeDistance: number }> }
  assert.equal(status.confirmedFailures, 1)
  assert.equal(status.banned, false)
  assert.ok(status.records[0]!.refereeDistance > 0.03)
  assert.equal((await fetch(`${oracle.url}/api/v1/verify/status`)).status, 400)

  // POST /api/v1/verify/sample: an honest step another origin sampled is recomputed and counted for the epoch
  const good = await honest.forward('s2', { tokens }, { reset: true })
  const { commitment: goodDigest } = log.record({ origin: 'o', sessionId: 's2', range, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: tokens } }, output: good, start: true })
  const goodAudit = await log.audit('o', 's2', goodDigest)
  const sample = { commitment: goodAudit.commitment, signature: goodAudit.signature, inputs: goodAudit.inputs, output: rowFromBytes(goodAudit.output), checker: 'c', checkerOutput: rowFromBytes(goodAudit.output) }
  const sampled = await fetch(`${oracle.url}/api/v1/verify/sample`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(evidenceToJson(sample)) })
  assert.equal(sampled.status, 200)
  assert.equal(((await sampled.json()) as { verdict: string }).verdict, 'verified')
  const selfChecked = await fetch(`${oracle.url}/api/v1/verify/sample`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(evidenceToJson({ ...sample, checker: peerId })) })
  assert.equal(selfChecked.status, 400)
  const after = (await (await fetch(`${oracle.url}/api/v1/verify/status?peerId=${peerId}`)).json()) as { sampledEpochs: number[] }
  assert.deepEqual(after.sampledEpochs, [0])
  await honest.dispose()
})
