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
import { evidenceToJson, type Evidence } from '../../../shared/verify/evidence.ts'
import { recomputeLastRow } from '../../../shared/verify/recompute.ts'
import { createStepLog } from '../../../shared/verify/stepLog.ts'
import { rowFromBytes } from '../../../shared/verify/verifyProtocol.ts'
import { nodeRuntime } from '../../engine/nodeRuntime.ts'
import { fileModelSource } from '../../model/fileModelSource.ts'
import { noisyShard } from '../../../testing/cheatingShards.ts'
import { loadFixture, type Fixture } from '../../../testing/fixtures.ts'
import { createShardReferee } from './shardReferee.ts'
import { createSqliteOracleStore } from '../store/sqliteOracleStore.ts'
import { EvidenceRefusedError, createVerifyLedger } from './verifyLedger.ts'

describe('verify ledger: the Oracle checks accusations itself (docs-llama-7m, SQLite)', () => {
  let fixture: Fixture
  let dir: string
  let honest: ShardSession
  const range = { start: 0, end: 3 }

  before(async () => {
    fixture = await loadFixture('docs-llama-7m')
    dir = await mkdtemp(join(tmpdir(), 'verify-ledger-'))
    honest = (await loadShards({ source: fileModelSource(fixture.dir), runtime: nodeRuntime({ spinning: false }), device: 'cpu', ranges: [range] })).shards[0]!
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** A hop serves one prefill step on `shard` and is audited; the checker recomputes on the honest shard. */
  let cheaterKey: Awaited<ReturnType<typeof generateKeyPair>>
  async function evidenceFrom(shard: ShardSession, session: string, tokens: number[], reuse = false): Promise<Evidence> {
    const key = reuse ? cheaterKey : (cheaterKey = await generateKeyPair('Ed25519'))
    const peerId = peerIdFromPrivateKey(key).toString()
    const log = createStepLog({ signer: { peerId, sign: (d) => key.sign(d) }, model: 'docs-llama-7m', hiddenSize: 256 })
    const out = await shard.forward(session, { tokens }, { reset: true })
    const { commitment: digest } = log.record({ origin: 'origin-peer', sessionId: session, range, step: 0n, chunkIndex: 0, input: { case: 'tokens', value: { $typeName: 'shardmesh.mesh.v1.TokenIds', ids: tokens } }, output: out, start: true })
    const audit = await log.audit('origin-peer', session, digest)
    return { commitment: audit.commitment, signature: audit.signature, inputs: audit.inputs, output: rowFromBytes(audit.output), checker: 'checker-peer', checkerOutput: await recomputeLastRow(honest, audit.inputs) }
  }

  test('a confirmed cheat withholds the epoch and bans after two; an honest row is not confirmed; forgeries are refused; all of it survives a restart', async () => {
    const path = join(dir, 'oracle.db')
    let store = createSqliteOracleStore({ path })
    const referee = createShardReferee(new Map([['docs-llama-7m', fileModelSource(fixture.dir)]]))
    let epoch = 4
    const banned: string[] = []
    let ledger = await createVerifyLedger({ store, referee, epoch: () => epoch, logger: silentLogger, onBan: (p) => void banned.push(p) })
    const cheat = noisyShard(honest, 0.1)
    const p = fixture.prompts[0]!.input_ids

    const e1 = await evidenceFrom(cheat, 's1', p)
    const accused = JSON.parse(new TextDecoder().decode(e1.commitment).split('\n')[1]!).peer as string
    const r1 = await ledger.report(evidenceToJson(e1))
    assert.equal(r1.verdict, 'confirmed')
    assert.ok(r1.refereeDistance! > 0.03)
    assert.equal((await ledger.report(evidenceToJson(e1))).verdict, 'duplicate')
    assert.equal(ledger.withheld(accused, 4), true)
    assert.equal(ledger.withheld(accused, 5), false)
    assert.equal(ledger.banned(accused), false)

    // An accusation against an honest row (the accuser lies about its recomputation): the referee clears it.
    const honestEvidence = await evidenceFrom(honest, 's2', p)
    const lie = { ...honestEvidence, checkerOutput: honestEvidence.checkerOutput.map((x) => x * 2) }
    const r2 = await ledger.report(evidenceToJson(lie))
    assert.equal(r2.verdict, 'rejected')
    const honestPeer = r2.peerId
    assert.equal(ledger.withheld(honestPeer, 4), false)

    // Forged: the output row is not the one the accused signed.
    const forged = { ...e1, output: e1.output.map((x) => x + 1) }
    await assert.rejects(ledger.report(evidenceToJson(forged)), EvidenceRefusedError)
    // Forged: another key's signature.
    const other = await evidenceFrom(cheat, 's3', p)
    await assert.rejects(ledger.report(evidenceToJson({ ...e1, signature: other.signature })), EvidenceRefusedError)
    await assert.rejects(ledger.report({ commitment: 'x' }), EvidenceRefusedError)

    // Restart: the record is read back from SQLite.
    await store.close()
    store = createSqliteOracleStore({ path })
    ledger = await createVerifyLedger({ store, referee, epoch: () => epoch, logger: silentLogger, onBan: (p) => void banned.push(p) })
    const s = ledger.status(accused)
    assert.equal(s.confirmedFailures, 1)
    assert.deepEqual(s.withheldEpochs, [4])
    assert.equal(ledger.status(honestPeer).confirmedFailures, 0)
    assert.equal(ledger.status(honestPeer).records[0]!.verdict, 'rejected')
    assert.ok(await ledger.evidence(s.records[0]!.id))

    // A second confirmed failure of the same peer (same key: same log, next session) bans it.
    epoch = 5
    const first = await evidenceFrom(cheat, 's4', p)
    assert.equal((await ledger.report(evidenceToJson(first))).verdict, 'confirmed')
    assert.deepEqual(banned, [])
    const second = await evidenceFrom(cheat, 's5', p, true)
    assert.equal((await ledger.report(evidenceToJson(second))).verdict, 'confirmed')
    const twice = JSON.parse(new TextDecoder().decode(second.commitment).split('\n')[1]!).peer as string
    assert.deepEqual(banned, [twice])
    assert.equal(ledger.banned(twice), true)
    assert.deepEqual(ledger.status(twice).withheldEpochs, [5])
    await store.close()
  })
})
