import assert from 'node:assert/strict'
import { test } from 'node:test'
import { create } from '@bufbuild/protobuf'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ForwardSchema } from '../../proto/gen/mesh_pb.js'
import { createRng } from '../engine/sampling.ts'
import { matchesCommitment, verifyCommitment } from './commitment.ts'
import { committedRow, createStepLog, TOP_LOGITS } from './stepLog.ts'
import { rowFromBytes } from './verifyProtocol.ts'

test('committedRow: the top logits (ids, then values) equal a full sort, ties to the lower id, on rows with many ties', () => {
  const rng = createRng(7)
  for (let trial = 0; trial < 50; trial++) {
    const V = 64 + Math.floor(rng() * 4000)
    // values on a coarse grid: many ties, also at the k-th place
    const logits = Float32Array.from({ length: V }, () => Math.round(rng() * 40) / 4 - 5)
    const { row, kind } = committedRow({ logits, length: 3, seqLen: 1 }, 256)
    assert.equal(kind, 'top-logits')
    const k = TOP_LOGITS
    const ids = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, k)
    assert.deepEqual([...row.subarray(0, k)], ids)
    assert.deepEqual([...row.subarray(k)], ids.map((i) => logits[i]!))
  }
  // the last row only, when every position's logits came back
  const two = Float32Array.from({ length: 2 * 40 }, (_, i) => (i < 40 ? 100 : i))
  const { row } = committedRow({ logits: two, logitRows: 2, length: 2, seqLen: 2 }, 256)
  assert.equal(row[0], 39)
  assert.equal(row[TOP_LOGITS], 79)
})

test('record: the frame input is committed as sent; a closed session expires after retainMs; stats count the recording', async () => {
  const key = await generateKeyPair('Ed25519')
  const clock = { t: 1_000_000 }
  const log = createStepLog({ signer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (d) => key.sign(d) }, model: 'm', hiddenSize: 4, retainMs: 10_000, now: () => clock.t })
  const fw = create(ForwardSchema, { sessionId: 's', step: 3n, chunkIndex: 0, input: { case: 'hidden', value: { dtype: 1, shape: [1, 1, 4], data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) } } })
  const hidden = Float32Array.from([0.5, -1, 2, 3])
  const { commitment } = log.record({ origin: 'o', sessionId: 's', range: { start: 0, end: 2 }, step: fw.step, chunkIndex: 0, input: fw.input, output: { hidden, length: 4, seqLen: 1 }, start: false })
  const audit = await log.audit('o', 's', commitment)
  assert.equal(audit.error, '')
  const c = await verifyCommitment(audit.commitment, audit.signature)
  assert.ok(matchesCommitment(c, audit.inputs[0]!, rowFromBytes(audit.output)))
  assert.equal(audit.inputs[0]!.input.case, 'hidden')
  assert.deepEqual(audit.inputs[0]!.input.value, fw.input.value)
  assert.equal(log.stats().recorded, 1)
  assert.ok(log.stats().recordMs > 0)

  log.closed('o', 's')
  clock.t += 5_000
  assert.equal((await log.audit('o', 's', commitment)).error, '', 'still retained within retainMs')
  clock.t += 6_000
  // another session's step (the expiry runs beside recording, at most once a second)
  log.record({ origin: 'o', sessionId: 't', range: { start: 0, end: 2 }, step: 0n, chunkIndex: 0, input: fw.input, output: { hidden, length: 1, seqLen: 1 }, start: true })
  assert.match((await log.audit('o', 's', commitment)).error, /not retained/)
})
