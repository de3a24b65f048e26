import { create } from '@bufbuild/protobuf'
import { AuditAnswerSchema, StepInputSchema, type AuditAnswer, type Forward, type StepInput } from '../../proto/gen/mesh_pb.js'
import type { ShardOutput } from '../engine/shardSession.ts'
import type { LayerRange } from '../model/shardGraph.ts'
import { encodeCommitment, inputDigest, outputDigest, type CommitmentSigner } from './commitment.ts'

export type StepLogInit = {
  signer: CommitmentSigner
  model: string
  /** Bytes of inputs and output rows kept for audits, all sessions together; oldest sessions go first. @default 64 MiB */
  maxBytes?: number
  /** How long a closed session's steps stay auditable. @default 300_000 */
  retainMs?: number
  /** Clock, ms. @default Date.now */
  now?: () => number
}

/** One served step, as the forward service reports it. */
export type ServedStep = {
  origin: string
  sessionId: string
  range: LayerRange
  step: bigint
  chunkIndex: number
  input: Forward['input']
  output: ShardOutput
  /** The session (re)started with this step. */
  start: boolean
}

type Entry = { step: bigint; chunk: number; input: StepInput; output: Float32Array }
type Session = { entries: Entry[]; bytes: number; closedAt: number | null; touched: number }

/** The last position's row of a step's output: the hidden state, or the logits on the last shard. */
export function lastRow(out: ShardOutput, hiddenSize: number): Float32Array {
  const all = out.hidden ?? out.logits
  if (!all) throw new Error('shard output has neither hidden state nor logits')
  const width = out.hidden ? hiddenSize : all.length / out.seqLen
  return all.slice(all.length - width)
}

/**
 * The serving side of spot checks: signs a commitment to every step it serves and keeps the
 * session's inputs and output rows for a while, so the session's origin can audit any step after
 * the fact (the hop cannot know which steps will be checked when it computes them).
 */
export function createStepLog(init: StepLogInit & { hiddenSize: number }) {
  const maxBytes = init.maxBytes ?? 64 << 20
  const retainMs = init.retainMs ?? 300_000
  const now = init.now ?? Date.now
  const sessions = new Map<string, Session>()
  let total = 0
  const key = (origin: string, sessionId: string) => `${origin}/${sessionId}`

  const forget = (k: string) => {
    const s = sessions.get(k)
    if (!s) return
    total -= s.bytes
    sessions.delete(k)
  }
  /** Expired sessions go; over the budget, the least recently used (closed ones first). */
  const trim = () => {
    const t = now()
    for (const [k, s] of sessions) if (s.closedAt !== null && s.closedAt < t - retainMs) forget(k)
    if (total <= maxBytes) return
    const order = [...sessions].sort((a, b) => Number(a[1].closedAt === null) - Number(b[1].closedAt === null) || a[1].touched - b[1].touched)
    for (const [k] of order) {
      if (total <= maxBytes) break
      forget(k)
    }
  }

  return {
    /** Records a step and returns the signed commitment that goes into the step's HopTiming. */
    async record(s: ServedStep): Promise<{ commitment: Uint8Array; signature: Uint8Array }> {
      const k = key(s.origin, s.sessionId)
      if (s.start) forget(k)
      let session = sessions.get(k)
      if (!session) sessions.set(k, (session = { entries: [], bytes: 0, closedAt: null, touched: now() }))
      const input = create(StepInputSchema, { step: s.step, chunkIndex: s.chunkIndex, input: s.input.case === 'tokens' ? { case: 'tokens', value: s.input.value } : s.input.case === 'hidden' ? { case: 'hidden', value: s.input.value } : { case: undefined } })
      const output = lastRow(s.output, init.hiddenSize)
      const bytes = (input.input.case === 'hidden' ? input.input.value.data.byteLength : (input.input.value?.ids.length ?? 0) * 4) + output.byteLength + 64
      session.entries.push({ step: s.step, chunk: s.chunkIndex, input, output })
      session.bytes += bytes
      session.touched = now()
      total += bytes
      trim()
      const commitment = encodeCommitment({
        v: 1,
        peer: init.signer.peerId,
        session: s.sessionId,
        origin: s.origin,
        model: init.model,
        step: Number(s.step),
        chunk: s.chunkIndex,
        start: s.range.start,
        end: s.range.end,
        length: s.output.length,
        input: inputDigest(input),
        output: outputDigest(output),
      })
      return { commitment, signature: await init.signer.sign(commitment) }
    },
    /** The session ended here: its steps stay auditable for `retainMs`. */
    closed(origin: string, sessionId: string): void {
      const s = sessions.get(key(origin, sessionId))
      if (s) s.closedAt = now()
    },
    /** The inputs up to a step and its output row, for the session's origin only. */
    audit(requester: string, sessionId: string, step: bigint, chunk: number): AuditAnswer {
      trim()
      const s = sessions.get(key(requester, sessionId))
      const at = s?.entries.findIndex((e) => e.step === step && e.chunk === chunk) ?? -1
      if (!s || at < 0) return create(AuditAnswerSchema, { error: `step ${step} of session "${sessionId}" is not retained here` })
      s.touched = now()
      const e = s.entries[at]!
      return create(AuditAnswerSchema, { inputs: s.entries.slice(0, at + 1).map((x) => x.input), output: new Uint8Array(e.output.buffer.slice(e.output.byteOffset, e.output.byteOffset + e.output.byteLength)) })
    },
    /** Bytes retained now. */
    bytes: () => total,
  }
}

export type StepLog = ReturnType<typeof createStepLog>
