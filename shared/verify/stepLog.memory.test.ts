import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decodeFrame, encodeFrame, encodeHidden } from '../mesh/frames.ts'
import { frame } from '../mesh/forwardStreams.ts'
import { createStepLog } from './stepLog.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const settled = async () => {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((r) => setImmediate(r))
  }
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

test('the step log holds no more memory than it counts: its byte budget bounds what a host keeps for audits', async () => {
  // docs-llama-7m's hidden size; each step as a middle hop sees it: a float16 hidden state decoded
  // from a real frame in, a float32 hidden row committed out.
  const H = 256
  const key = await generateKeyPair('Ed25519')
  const log = createStepLog({ signer: { peerId: peerIdFromPrivateKey(key).toString(), sign: (d) => key.sign(d) }, model: 'docs-llama-7m', hiddenSize: H, maxBytes: 1 << 30, retainMs: 3_600_000 })
  const sessions = 100
  const steps = 100
  const hidden = Float32Array.from({ length: H }, (_, i) => Math.sin(i))
  const frames = Array.from({ length: 8 }, (_, i) => encodeFrame(frame({ case: 'forward', value: { sessionId: `s${i}`, step: 1n, input: { case: 'hidden', value: encodeHidden(hidden, H) } } })))
  const before = await settled()
  for (let s = 0; s < sessions; s++) {
    // A session id as the origin makes them: 8 + 1 + 32 characters.
    const sessionId = `${'abcdefgh'}-${s.toString(16).padStart(32, '0')}`
    for (let step = 0; step < steps; step++) {
      const f = decodeFrame(frames[step % frames.length]!)
      if (f.kind.case !== 'forward') throw new Error('not a forward frame')
      const output = Float32Array.from(hidden, (v) => v + step)
      log.record({ origin: '12D3KooWorigin', sessionId, range: { start: 0, end: 4 }, step: BigInt(step), chunkIndex: 0, input: f.kind.value.input, output: { hidden: output, length: 1, seqLen: 1 }, start: step === 0 })
    }
    log.closed('12D3KooWorigin', sessionId)
  }
  const held = (await settled()) - before
  const n = sessions * steps
  const perStep = held / n
  const counted = log.bytes() / n
  // Measured: ~2,620 bytes a step, 512 of float16 input and 1,024 of output row among them (before
  // the change ~3,150 with the input a view of a shared frame not counted, against 1,792 counted).
  assert.ok(held <= log.bytes(), `held ${Math.round(perStep)} bytes a step, counted ${Math.round(counted)}: the budget would not bound the memory`)
})
