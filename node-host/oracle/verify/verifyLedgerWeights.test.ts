import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { loadShards } from '../../../shared/engine/loadShards.ts'
import type { ShardSession } from '../../../shared/engine/shardSession.ts'
import { silentLogger } from '../../../shared/logger.ts'
import type { WeightFormat } from '../../../shared/model/shardGraph.ts'
import { decodeCommitment } from '../../../shared/verify/commitment.ts'
import { evidenceToJson, type Evidence } from '../../../shared/verify/evidence.ts'
import { recomputeLastRow } from '../../../shared/verify/recompute.ts'
import { createStepLog } from '../../../shared/verify/stepLog.ts'
import { DEFAULT_TOLERANCE } from '../../../shared/verify/tolerance.ts'
import { rowFromBytes } from '../../../shared/verify/verifyProtocol.ts'
import { nodeRuntime } from '../../engine/nodeRuntime.ts'
import { fileModelSource } from '../../model/fileModelSource.ts'
import { noisyShard } from '../../../testing/cheatingShards.ts'
import { loadFixture, type Fixture } from '../../../testing/fixtures.ts'
import { createShardReferee } from './shardReferee.ts'
import { createSqliteOracleStore } from '../store/sqliteOracleStore.ts'
import { createVerifyLedger } from './verifyLedger.ts'

describe('verify ledger: the Oracle judges a step in the weight format the accused committed to (docs-llama-7m, SQLite)', () => {
  let fixture: Fixture
  let dir: string
  const range = { start: 0, end: 3 }
  const shards = new Map<WeightFormat, ShardSession>()

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    dir = await mkdtemp(join(tmpdir(), 'verify-ledger-weights-'))
    for (const weights of ['float32', 'int4'] as const) {
      shards.set(weights, (await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range], weights })).shards[0]!)
    }
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** A hop runs one prefill step on `shard`, committing to `claimed` weights, and is audited; a float32 checker recomputes it (as a checker of the wrong format, or an older origin, would). */
  async function evidenceFrom(shard: ShardSession, claimed: string | undefined, session: string): Promise<Evidence> {
    const key = await generateKeyPair('Ed25519')
    const log = createStepLog({ signer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (d) => key.sign(d) }, model: 'docs-llama-7m', hiddenSize: 256, weights: claimed })
    const tokens = fixture.prompts[0]!.input_ids
    const out = await shard.forward(session, { tokens }, { reset: true })
    const { commitment: digest } = log.record({ origin: 'origin-peer', sessionId: session, range, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: tokens } }, output: out, start: true })
    shard.drop(session)
    const audit = await log.audit('origin-peer', session, digest)
    return { commitment: audit.commitment, signature: audit.signature, inputs: audit.inputs, output: rowFromBytes(audit.output), checker: 'checker-peer', checkerOutput: await recomputeLastRow(shards.get('float32')!, audit.inputs) }
  }

  test('honest int4 is cleared, a noisy int4 cheater and a false format claim are confirmed, a format the Oracle cannot run stays unconfirmed', async () => {
    const store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
    const ledger = await createVerifyLedger({ store, referee: createShardReferee(new Map([['docs-llama-7m', fileModelSource(fixture.dir)]])), epoch: () => 3, logger: silentLogger })
    const int4 = shards.get('int4')!
    const float32 = shards.get('float32')!

    // An honest int4 host, accused by a float32 recomputation (distance well past the tolerance).
    const honest = await evidenceFrom(int4, 'int4', 'honest')
    assert.equal(decodeCommitment(honest.commitment).weights, 'int4')
    const r1 = await ledger.report(evidenceToJson(honest))
    assert.equal(r1.verdict, 'rejected')
    assert.ok(r1.refereeDistance! <= DEFAULT_TOLERANCE, `int4 referee distance ${r1.refereeDistance}`)
    assert.equal(ledger.withheld(r1.peerId, 3), false)
    assert.equal(ledger.status(r1.peerId).records[0]!.weights, 'int4')

    // An int4 host adding noise (10 % of the row RMS): judged in int4, still caught.
    const noisy = await evidenceFrom(noisyShard(int4, 0.1), 'int4', 'noisy')
    const r2 = await ledger.report(evidenceToJson(noisy))
    console.log(`# honest int4 accused by a float32 row: reported distance ${ledger.status(r1.peerId).records[0]!.reportedDistance!.toExponential(2)}, int4 referee ${r1.refereeDistance!.toExponential(2)}; noisy int4: referee ${r2.refereeDistance!.toExponential(2)} (tolerance ${DEFAULT_TOLERANCE})`)
    assert.equal(r2.verdict, 'confirmed')
    assert.ok(r2.refereeDistance! > DEFAULT_TOLERANCE)
    assert.equal(ledger.withheld(r2.peerId, 3), true)

    // Claims a format it did not run, either way round: the recomputation in the claimed format disagrees.
    const claimsInt4 = await ledger.report(evidenceToJson(await evidenceFrom(float32, 'int4', 'claims-int4')))
    assert.equal(claimsInt4.verdict, 'confirmed')
    const claimsFloat32 = await ledger.report(evidenceToJson(await evidenceFrom(int4, undefined, 'claims-float32')))
    assert.equal(claimsFloat32.verdict, 'confirmed')

    // A format the referee does not build: no judgement, no consequence.
    const r5 = await ledger.report(evidenceToJson(await evidenceFrom(int4, 'float16', 'unknown-format')))
    assert.equal(r5.verdict, 'unconfirmed')
    assert.equal(r5.refereeDistance, null)
    assert.equal(ledger.withheld(r5.peerId, 3), false)
    assert.match(ledger.status(r5.peerId).records[0]!.note!, /cannot recompute float16/)

    // float32 commitments carry no weights field: byte for byte what builds before it signed.
    const plain = await evidenceFrom(float32, 'float32', 'plain')
    assert.doesNotMatch(new TextDecoder().decode(plain.commitment), /weights/)
    await store.close()
  })
})
