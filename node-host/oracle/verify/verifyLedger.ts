import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import type { StepInput } from '../../../proto/gen/mesh_pb.js'
import type { Logger } from '../../../shared/logger.ts'
import { bindEvidence, evidenceFromJson, evidenceJsonSchema, EvidenceError } from '../../../shared/verify/evidence.ts'
import { DEFAULT_TOLERANCE, rowDistance } from '../../../shared/verify/tolerance.ts'
import { weightsOf } from '../../../shared/verify/weightFormat.ts'
import type { OracleStore } from '../store/oracleStore.ts'
import { RefereeCannotRecomputeError } from './refereeCannotRecomputeError.ts'

/**
 * Recomputes a range on inputs as a fresh session, in the weight format the accused committed to:
 * the Oracle's own check of an accusation. Throws RefereeCannotRecomputeError for a format it does
 * not run.
 */
export type Referee = (model: string, range: { start: number; end: number }, inputs: StepInput[], weights: string) => Promise<Float32Array>

export type VerifyLedgerInit = {
  store: Pick<OracleStore, 'getValue' | 'setValue'>
  /** Without one, evidence is kept as unconfirmed and has no consequence (an accusation the Oracle cannot check). */
  referee?: Referee
  /** @default DEFAULT_TOLERANCE */
  tolerance?: number
  /** The epoch rewards are booked to now (the reward reporter's). */
  epoch: () => number
  /** Confirmed failures after which a peer is out of routing and assignment. @default 2 */
  banAfter?: number
  /** Called when a peer reaches `banAfter` (the Oracle takes its node out of the topology). */
  onBan?: (peerId: string) => void | Promise<void>
  logger: Logger
  now?: () => number
  /** Whether only sampled work is reported for rewards (shown in a peer's status, so it can see why it is not paid). @default false */
  paySampledWorkOnly?: boolean
}

export type Verdict = 'confirmed' | 'rejected' | 'unconfirmed' | 'duplicate'

const failureSchema = z.object({
  id: z.string(),
  verdict: z.enum(['confirmed', 'rejected', 'unconfirmed']),
  epoch: z.number().int(),
  at: z.number(),
  session: z.string(),
  step: z.number().int(),
  start: z.number().int(),
  end: z.number().int(),
  checker: z.string(),
  /** The weight format the accused committed to, and the referee recomputed in (absent in older records: float32). */
  weights: z.string().optional(),
  /** Why the referee did not judge, when it could not. */
  note: z.string().optional(),
  /** The reporting checker's distance, and the Oracle's own (null without a referee). */
  reportedDistance: z.number().nullable(),
  refereeDistance: z.number().nullable(),
})
export type FailureRecord = z.infer<typeof failureSchema>
const peerSchema = z.object({ peerId: z.string(), records: z.array(failureSchema) })
/** A passed spot check of one of the peer's committed steps (POST /api/v1/verify/sample). */
const sampleSchema = z.object({ id: z.string(), epoch: z.number().int(), at: z.number(), verified: z.boolean() })
export type SampleRecord = z.infer<typeof sampleSchema>
export type SampleVerdict = 'verified' | 'sampled' | 'enough' | 'duplicate' | Verdict
type PeerRecord = z.infer<typeof peerSchema>

export class EvidenceRefusedError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'EvidenceRefusedError'
  }
}

export type PeerVerifyStatus = {
  peerId: string
  confirmedFailures: number
  banned: boolean
  /** Epochs whose work of this peer is not reported for rewards. */
  withheldEpochs: number[]
  /** Epochs in which a spot check sampled one of its committed steps and it passed. */
  sampledEpochs: number[]
  /** Why its work of an epoch is or is not reported for rewards. */
  rewardRule: string
  records: FailureRecord[]
}

const PEERS_KEY = 'verify:peers'
const peerKey = (id: string) => `verify:peer:${id}`
const SAMPLED_KEY = 'verify:sampledPeers'
const samplesKey = (id: string) => `verify:samples:${id}`
/** Samples judged per peer and epoch: one proves the peer's steps are committed and checked; more would only cost the referee recomputations. */
const SAMPLES_PER_EPOCH = 2
/** Samples remembered per peer (the latest epochs'). */
const SAMPLES_KEPT = 64
const evidenceKey = (id: string) => `verify:evidence:${id}`

/**
 * The Oracle's record of failed spot checks. It takes an accusation only as evidence it can check
 * itself: the accused's signature over its commitment, the inputs and output row matching the
 * commitment's digests (bindEvidence), and its own recomputation (the referee) out of tolerance of
 * the accused's row. A confirmed failure withholds the peer's work of that epoch from the reward
 * report; `banAfter` of them take it out of routing and assignment. Kept in the Oracle's store
 * (SQLite), so it survives a restart; every peer can read its own record.
 */
export async function createVerifyLedger(init: VerifyLedgerInit) {
  const tolerance = init.tolerance ?? DEFAULT_TOLERANCE
  const banAfter = init.banAfter ?? 2
  const now = init.now ?? Date.now
  const peers = new Map<string, PeerRecord>()
  for (const id of z.array(z.string()).parse(JSON.parse((await init.store.getValue(PEERS_KEY)) ?? '[]'))) {
    const raw = await init.store.getValue(peerKey(id))
    if (raw) peers.set(id, peerSchema.parse(JSON.parse(raw)))
  }
  const samples = new Map<string, SampleRecord[]>()
  for (const id of z.array(z.string()).parse(JSON.parse((await init.store.getValue(SAMPLED_KEY)) ?? '[]'))) {
    const raw = await init.store.getValue(samplesKey(id))
    if (raw) samples.set(id, z.array(sampleSchema).parse(JSON.parse(raw)))
  }
  const confirmed = (id: string) => peers.get(id)?.records.filter((r) => r.verdict === 'confirmed') ?? []
  const banned = (id: string) => confirmed(id).length >= banAfter

  /** The evidence, once the accused's signature and digests bind it (bindEvidence). */
  async function bound(body: unknown) {
    const parsed = evidenceJsonSchema.safeParse(body)
    if (!parsed.success) throw new EvidenceRefusedError(`malformed evidence: ${parsed.error.issues[0]?.message}`)
    try {
      const evidence = evidenceFromJson(parsed.data)
      return { json: parsed.data, evidence, c: await bindEvidence(evidence) }
    } catch (e) {
      if (e instanceof EvidenceError) throw new EvidenceRefusedError(e.message)
      throw e
    }
  }

  async function report(body: unknown): Promise<{ verdict: Verdict; peerId: string; refereeDistance: number | null }> {
    const { json, evidence, c } = await bound(body)
    const id = bytesToHex(sha256(evidence.commitment))
    const record = peers.get(c.peer) ?? { peerId: c.peer, records: [] }
    if (record.records.some((r) => r.id === id)) return { verdict: 'duplicate', peerId: c.peer, refereeDistance: null }
    let refereeDistance: number | null = null
    let verdict: Verdict = 'unconfirmed'
    let note: string | undefined
    const weights = weightsOf(c.weights)
    if (init.referee) {
      try {
        // In the committed format: another one is a different model, further off than the tolerance.
        // A hop that claims a format it did not run is caught the same way: the recomputation disagrees.
        const row = await init.referee(c.model, { start: c.start, end: c.end }, evidence.inputs, weights)
        refereeDistance = rowDistance(c.row, evidence.output, row)
        verdict = refereeDistance > tolerance ? 'confirmed' : 'rejected'
      } catch (e) {
        if (!(e instanceof RefereeCannotRecomputeError)) throw e
        note = e.message
      }
    }
    const failure: FailureRecord = {
      id,
      verdict,
      epoch: init.epoch(),
      at: now(),
      session: c.session,
      step: c.step,
      start: c.start,
      end: c.end,
      checker: evidence.checker,
      weights,
      ...(note ? { note } : {}),
      reportedDistance: rowDistance(c.row, evidence.output, evidence.checkerOutput),
      refereeDistance,
    }
    const wasBanned = banned(c.peer)
    record.records.push(failure)
    await init.store.setValue(evidenceKey(id), JSON.stringify(json))
    await init.store.setValue(peerKey(c.peer), JSON.stringify(record))
    if (!peers.has(c.peer)) {
      peers.set(c.peer, record)
      await init.store.setValue(PEERS_KEY, JSON.stringify([...peers.keys()]))
    }
    init.logger.warn({ peerId: c.peer, verdict, refereeDistance, epoch: failure.epoch, checker: evidence.checker }, 'spot check evidence')
    if (!wasBanned && banned(c.peer)) {
      init.logger.warn({ peerId: c.peer, failures: confirmed(c.peer).length }, 'peer out of routing and assignment after failed spot checks')
      await init.onBan?.(c.peer)
    }
    return { verdict, peerId: c.peer, refereeDistance }
  }

  /**
   * A passed spot check, as the origin that ran it sends it (the same shape as evidence): the
   * peer's signed commitment to a step of a session another peer originated, and its row. It marks
   * the peer's work of the epoch as committed and sampled; with a referee the Oracle recomputes the
   * step too (a row out of tolerance is a confirmed failure, as if reported as one).
   */
  async function sample(body: unknown): Promise<{ verdict: SampleVerdict; peerId: string; refereeDistance: number | null }> {
    const { evidence, c } = await bound(body)
    // Its own sessions or its own recomputation prove nothing: anyone can commit to work nobody asked for.
    if (c.origin === c.peer || evidence.checker === c.peer) throw new EvidenceRefusedError('a peer cannot sample its own steps')
    const id = bytesToHex(sha256(evidence.commitment))
    const epoch = init.epoch()
    const list = samples.get(c.peer) ?? []
    if (list.some((r) => r.id === id)) return { verdict: 'duplicate', peerId: c.peer, refereeDistance: null }
    if (list.filter((r) => r.epoch === epoch).length >= SAMPLES_PER_EPOCH) return { verdict: 'enough', peerId: c.peer, refereeDistance: null }
    let refereeDistance: number | null = null
    if (init.referee) {
      try {
        const row = await init.referee(c.model, { start: c.start, end: c.end }, evidence.inputs, weightsOf(c.weights))
        refereeDistance = rowDistance(c.row, evidence.output, row)
      } catch (e) {
        if (!(e instanceof RefereeCannotRecomputeError)) throw e
      }
      if (refereeDistance !== null && refereeDistance > tolerance) return report(body)
    }
    const record: SampleRecord = { id, epoch, at: now(), verified: refereeDistance !== null }
    samples.set(c.peer, [...list, record].slice(-SAMPLES_KEPT))
    await init.store.setValue(samplesKey(c.peer), JSON.stringify(samples.get(c.peer)))
    if (list.length === 0) await init.store.setValue(SAMPLED_KEY, JSON.stringify([...samples.keys()]))
    init.logger.debug({ peerId: c.peer, epoch, verified: record.verified, refereeDistance }, 'spot check sample')
    return { verdict: record.verified ? 'verified' : 'sampled', peerId: c.peer, refereeDistance }
  }

  const sampledEpochs = (id: string) => [...new Set((samples.get(id) ?? []).map((r) => r.epoch))]

  return {
    report,
    sample,
    /** Whether a spot check sampled one of `peerId`'s committed steps in `epoch` and it passed. */
    sampled: (peerId: string, epoch: number) => (samples.get(peerId) ?? []).some((r) => r.epoch === epoch),
    banned,
    /** Whether `peerId`'s work in `epoch` is kept out of the reward report. */
    withheld: (peerId: string, epoch: number) => confirmed(peerId).some((r) => r.epoch === epoch),
    status(peerId: string): PeerVerifyStatus {
      const records = peers.get(peerId)?.records ?? []
      const rewardRule = init.paySampledWorkOnly
        ? 'work of an epoch is reported for rewards only if it is in sampledEpochs (the peer attached commitments to its steps and a spot check of one passed) and not in withheldEpochs'
        : 'work of an epoch is reported for rewards unless it is in withheldEpochs'
      return { peerId, confirmedFailures: confirmed(peerId).length, banned: banned(peerId), withheldEpochs: [...new Set(confirmed(peerId).map((r) => r.epoch))], sampledEpochs: sampledEpochs(peerId), rewardRule, records }
    },
    /** The stored evidence of a record (as it was sent). */
    evidence: async (id: string) => init.store.getValue(evidenceKey(id)),
  }
}

export type VerifyLedger = Awaited<ReturnType<typeof createVerifyLedger>>
