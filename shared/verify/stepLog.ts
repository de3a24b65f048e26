import { create } from '@bufbuild/protobuf'
import { AuditAnswerSchema, StepInputSchema, type AuditAnswer, type Forward, type StepInput } from '../../proto/gen/mesh_pb.js'
import type { ShardOutput } from '../engine/shardSession.ts'
import type { LayerRange } from '../model/shardGraph.ts'
import { DEFAULT_WEIGHTS } from './weightFormat.ts'
import { encodeCommitment, finishStepDigest, startStepDigest, type CommitmentSigner, type Sha256Factory, type StepMeta } from './commitment.ts'

export type StepLogInit = {
  signer: CommitmentSigner
  model: string
  /** Bytes of inputs and output rows kept for audits, all sessions together; oldest sessions go first. @default 64 MiB */
  maxBytes?: number
  /** How long a closed session's steps stay auditable. @default 300_000 */
  retainMs?: number
  /** The weight format this host's shard runs: part of every commitment. @default 'float32' */
  weights?: string
  /** Clock, ms. @default Date.now */
  now?: () => number
  /** The digests' SHA-256 (a Node host passes node:crypto's). @default noble's */
  sha256?: Sha256Factory
}

/** One step as the forward service receives it (before its compute). */
export type ServingStep = {
  origin: string
  sessionId: string
  range: LayerRange
  step: bigint
  chunkIndex: number
  input: Forward['input']
  /** The session (re)started with this step. */
  start: boolean
}

/** One served step, as the forward service reports it. */
export type ServedStep = ServingStep & { output: ShardOutput }

/** A retained step; its signed form is made from `meta` only when audited. */
type Entry = { digest: string; meta: StepMeta; input: StepInput; output: Float32Array }

/**
 * Heap a retained step takes besides its input and output data (objects, typed-array headers,
 * digest, meta), measured by stepLog.memory.test.ts: counted with the data, so `maxBytes` bounds
 * the memory the log really holds.
 */
export const STEP_OVERHEAD_BYTES = 1280
type Session = { entries: Entry[]; bytes: number; closedAt: number | null; touched: number }

/** Logits a last shard commits to: the top ones (ids and values), not the whole vocabulary row. */
export const TOP_LOGITS = 32

/**
 * What a hop commits to and retains for a step: the last position's hidden state, or on the last
 * shard its TOP_LOGITS largest logits as [ids…, values…] (a whole vocabulary row was ~10× the
 * bytes to hash and keep per step, and the top ones are what sampling uses).
 */
export function committedRow(out: ShardOutput, hiddenSize: number): { row: Float32Array; kind: 'hidden' | 'top-logits' } {
  if (out.hidden) return { row: lastRow(out, hiddenSize), kind: 'hidden' }
  // A view, not a copy: only the top ones are kept.
  const last = lastRowView(out, hiddenSize)
  const k = Math.min(TOP_LOGITS, last.length)
  if (k === 0) return { row: new Float32Array(0), kind: 'top-logits' }
  // One pass keeping a sorted top-k in typed arrays (a vocabulary row per served step, on the
  // critical path): most values fail the one comparison with the k-th and cost nothing more.
  // Ties keep the lower id first, and a value equal to the k-th does not enter (as before).
  const ids = new Int32Array(k)
  const vals = new Float32Array(k)
  let n = 0
  let kth = -Infinity
  for (let i = 0; i < last.length; i++) {
    const v = last[i]!
    if (n === k && v <= kth) continue
    let at = n < k ? n++ : k - 1
    while (at > 0 && vals[at - 1]! < v) {
      vals[at] = vals[at - 1]!
      ids[at] = ids[at - 1]!
      at--
    }
    vals[at] = v
    ids[at] = i
    if (n === k) kth = vals[k - 1]!
  }
  const row = new Float32Array(2 * k)
  for (let j = 0; j < k; j++) {
    row[j] = ids[j]!
    row[k + j] = vals[j]!
  }
  return { row, kind: 'top-logits' }
}

const HEX = '0123456789abcdef'
/**
 * Hex of a digest as one flat string (80 bytes of heap): bytesToHex builds it by concatenation, a
 * rope of ~30 pieces (800 bytes) that a retained step would keep; a Uint8Array costs ~230.
 */
function flatHex(bytes: Uint8Array): string {
  const codes = new Array<number>(bytes.length * 2)
  for (let i = 0; i < bytes.length; i++) {
    codes[2 * i] = HEX.charCodeAt(bytes[i]! >> 4)
    codes[2 * i + 1] = HEX.charCodeAt(bytes[i]! & 15)
  }
  return String.fromCharCode(...codes)
}

/**
 * The frame's input with its tensor bytes in a buffer of their own: decoded from a frame, they
 * are a view into the whole received chunk, which a retained step would keep alive with them.
 */
function ownBytes(input: Forward['input']): Forward['input'] {
  if (input.case !== 'hidden') return input
  const data = input.value.data
  return data.byteLength === data.buffer.byteLength ? input : { case: 'hidden', value: { ...input.value, data: data.slice() } }
}

/** The last position's row of a step's output: the hidden state, or the logits on the last shard. */
export function lastRow(out: ShardOutput, hiddenSize: number): Float32Array {
  return lastRowView(out, hiddenSize).slice()
}

function lastRowView(out: ShardOutput, hiddenSize: number): Float32Array {
  const all = out.hidden ?? out.logits
  if (!all) throw new Error('shard output has neither hidden state nor logits')
  // The last shard returns the last position's logits only, unless every row was asked for.
  const width = out.hidden ? hiddenSize : all.length / (out.logitRows ?? 1)
  return all.subarray(all.length - width)
}


/**
 * The serving side of spot checks: commits to every step it serves (the commitment's digest goes
 * to the origin with the step) and keeps the session's inputs and output rows for a while, so
 * the session's origin can audit any step after the fact: the hop cannot know which steps will be
 * checked when it computes them. It signs a commitment only when audited (a signature per step
 * cost more than the rest of the bookkeeping together); the digest the origin already holds binds it.
 */
export function createStepLog(init: StepLogInit & { hiddenSize: number }) {
  const maxBytes = init.maxBytes ?? 64 << 20
  const retainMs = init.retainMs ?? 300_000
  const now = init.now ?? Date.now
  const sessions = new Map<string, Session>()
  let total = 0
  let recorded = 0
  let recordMs = 0
  const key = (origin: string, sessionId: string) => `${origin}/${sessionId}`

  const forget = (k: string) => {
    const s = sessions.get(k)
    if (!s) return
    total -= s.bytes
    sessions.delete(k)
  }
  /** When expired sessions were last looked for: at most once a second, not on every served step. */
  let expiredAt = -Infinity
  /** Expired sessions go (looked for at most once a second); over the budget, the least recently used (closed ones first). */
  const trim = () => {
    const t = now()
    if (t - expiredAt >= 1000) {
      expiredAt = t
      for (const [k, s] of sessions) if (s.closedAt !== null && s.closedAt < t - retainMs) forget(k)
    }
    if (total <= maxBytes) return
    const order = [...sessions].sort((a, b) => Number(a[1].closedAt === null) - Number(b[1].closedAt === null) || a[1].touched - b[1].touched)
    for (const [k] of order) {
      if (total <= maxBytes) break
      forget(k)
    }
  }

  /**
   * Starts committing to a step whose compute has been started: hashes its input now (the forward
   * service calls this after starting the step, before awaiting it). A page's shard runs in a
   * worker, so there this overlaps the compute; onnxruntime-node runs on the main thread, so on a
   * Node host it only moves the work. `commit` with the output returns the digest that goes into
   * the step's HopTiming and keeps the step auditable.
   */
  const begin = (s: ServingStep): { commit(output: ShardOutput): { commitment: Uint8Array } } => {
    const t0 = performance.now()
    const k = key(s.origin, s.sessionId)
    if (s.start) forget(k)
    // The frame's input oneof is the StepInput's (same cases, same messages): passed through.
    const input = create(StepInputSchema, { step: s.step, chunkIndex: s.chunkIndex, input: ownBytes(s.input) })
    const pending = startStepDigest(input, init.sha256)
    recordMs += performance.now() - t0
    return {
      commit: (out) => {
        const t1 = performance.now()
        let session = sessions.get(k)
        if (!session) sessions.set(k, (session = { entries: [], bytes: 0, closedAt: null, touched: now() }))
        const { row: output, kind } = committedRow(out, init.hiddenSize)
        const meta: StepMeta = {
          peer: init.signer.peerId,
          session: s.sessionId,
          origin: s.origin,
          model: init.model,
          step: Number(s.step),
          chunk: s.chunkIndex,
          start: s.range.start,
          end: s.range.end,
          length: out.length,
          row: kind,
          // Left out for float32, the default (the digest must not depend on how the meta was written).
          ...(init.weights && init.weights !== DEFAULT_WEIGHTS ? { weights: init.weights } : {}),
        }
        const digest = finishStepDigest(pending, meta, output)
        const bytes = (input.input.case === 'hidden' ? input.input.value.data.byteLength : (input.input.value?.ids.length ?? 0) * 4) + output.byteLength + STEP_OVERHEAD_BYTES
        session.entries.push({ digest: flatHex(digest), meta, input, output })
        session.bytes += bytes
        session.touched = now()
        total += bytes
        trim()
        recorded++
        recordMs += performance.now() - t1
        return { commitment: digest }
      },
    }
  }

  return {
    begin,
    /** Records a step served already (begin and commit in one). */
    record(s: ServedStep): { commitment: Uint8Array } {
      return begin(s).commit(s.output)
    },
    /** The session ended here: its steps stay auditable for `retainMs`. */
    closed(origin: string, sessionId: string): void {
      const s = sessions.get(key(origin, sessionId))
      if (s) s.closedAt = now()
    },
    /** The inputs up to a committed step, its output row and the signed commitment: for the session's origin only. */
    async audit(requester: string, sessionId: string, digest: Uint8Array): Promise<AuditAnswer> {
      trim()
      const s = sessions.get(key(requester, sessionId))
      const want = flatHex(digest)
      const at = s?.entries.findIndex((e) => e.digest === want) ?? -1
      if (!s || at < 0) return create(AuditAnswerSchema, { error: `that step of session "${sessionId}" is not retained here` })
      s.touched = now()
      const e = s.entries[at]!
      // The signed form is made only when audited.
      const commitment = encodeCommitment({ v: 2, ...e.meta, digest: e.digest })
      return create(AuditAnswerSchema, {
        inputs: s.entries.slice(0, at + 1).map((x) => x.input),
        output: new Uint8Array(e.output.buffer.slice(e.output.byteOffset, e.output.byteOffset + e.output.byteLength)),
        commitment,
        signature: await init.signer.sign(commitment),
      })
    },
    /** Bytes retained now. */
    bytes: () => total,
    /** Steps recorded, and the time committing took (both halves: on a Node host, on the step's critical path). */
    stats: () => ({ recorded, recordMs }),
  }
}

export type StepLog = ReturnType<typeof createStepLog>
