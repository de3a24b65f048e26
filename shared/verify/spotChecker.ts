import { silentLogger, type Logger } from '../logger.ts'
import type { HopTimingMs, MeshNode } from '../mesh/forwardService.ts'
import type { PeerShard } from '../mesh/planRoute.ts'
import { bytesToHex } from '@noble/hashes/utils.js'
import { CommitmentError, matchesCommitment, verifyCommitment, type Commitment } from './commitment.ts'
import type { Evidence } from './evidence.ts'
import type { Sampler } from './sampler.ts'
import { DEFAULT_TOLERANCE, rowDistance } from './tolerance.ts'
import { weightsOf } from './weightFormat.ts'
import { requestAudit, requestRecompute, rowFromBytes } from './verifyProtocol.ts'

export type CheckVerdict =
  /** Within tolerance of an independent recomputation. */
  | 'pass'
  /** Outside it: `evidence` holds what the Oracle needs to check the accusation itself (a pass has it too: the Oracle's proof of a sample). */
  | 'fail'
  /** The hop's audit answer does not match its own commitment (or it gave none): its step is not verified, nobody else's fault. */
  | 'unverified'
  /** No other peer could recompute it (none serves the range, or it did not answer): not verified, no blame. */
  | 'no-checker'

export type CheckResult = {
  peerId: string
  sessionId: string
  step: number
  /** The hop's how-manieth step this origin saw (1-based): when, in its work, the check came. */
  seq: number
  range: { start: number; end: number }
  verdict: CheckVerdict
  checker?: string
  distance?: number
  reason?: string
  evidence?: Evidence
  /** Ms from the step's token reaching the origin to the verdict. */
  ms: number
}

export type SpotCheckerInit = {
  node: MeshNode
  model: string
  sampler: Sampler
  /** Relative L2 distance an honest recomputation stays within. @default DEFAULT_TOLERANCE */
  tolerance?: number
  /** Every verdict (a node host sends failures to its Oracle). */
  onResult?: (r: CheckResult) => void
  /** Checks run at once (more wait their turn; past MAX_QUEUED waiting, a sampled step is skipped). @default 4 */
  maxInFlight?: number
  timeoutMs?: number
  /**
   * Hold sampled checks until `flush()` (a host calls it when a generation has delivered its
   * tokens), so their audits and recomputations never share the machine with the generation they
   * check. The hops keep a session's steps for minutes after it ends. @default false
   */
  holdUntilFlush?: boolean
  logger?: Logger
}

/** Sampled checks waiting at most; more are skipped (counted), so a flood of steps cannot grow memory. */
const MAX_QUEUED = 1024

export type SpotCheckerStats = { observed: number; sampled: number; skipped: number; uncommitted: number } & Record<CheckVerdict, number>

/**
 * The origin's spot checks. Every token frame carries each hop's commitment digest for its step;
 * the sampler picks some, and each picked one is checked beside the generation (never awaited by
 * it): the hop is audited for its signed commitment (whose digest must be the one it sent), the
 * session's inputs up to that step and the step's output row (both bound by the commitment);
 * another peer serving the same layers recomputes the output from those inputs, and the two rows
 * are compared by distance. A hop whose audit does not match what it sent is unverified (not
 * paid), not accused: a later hop relaying the digest could have altered it.
 */
export function createSpotChecker(init: SpotCheckerInit) {
  const logger = init.logger ?? silentLogger
  const tolerance = init.tolerance ?? DEFAULT_TOLERANCE
  const maxInFlight = init.maxInFlight ?? 4
  const self = init.node.peerId.toString()
  const inFlight = new Set<Promise<void>>()
  const stats: SpotCheckerStats = { observed: 0, sampled: 0, skipped: 0, uncommitted: 0, pass: 0, fail: 0, unverified: 0, 'no-checker': 0 }
  let checkerTurn = 0
  /** Sampled checks not started yet; the first `released` may start (all of them without holdUntilFlush). */
  const queue: Array<() => Promise<void>> = []
  let released = 0
  const pump = () => {
    while (inFlight.size < maxInFlight && released > 0 && queue.length) {
      released--
      const tracked: Promise<void> = queue.shift()!().finally(() => {
        inFlight.delete(tracked)
        pump()
      })
      inFlight.add(tracked)
    }
  }
  /** Steps observed per hop: a result's `seq`. */
  const observedOf = new Map<string, number>()

  async function check(sessionId: string, step: number, seq: number, t: HopTimingMs & { commitment: Uint8Array }, peers: PeerShard[]): Promise<CheckResult> {
    const t0 = performance.now()
    const base = { peerId: t.peerId, sessionId, step, seq, range: { start: 0, end: 0 } }
    const done = (r: Partial<CheckResult> & { verdict: CheckVerdict }): CheckResult => ({ ...base, ...r, ms: performance.now() - t0 })
    const accused = peers.find((p) => p.peerId === t.peerId)
    if (!accused) return done({ verdict: 'unverified', reason: 'the hop is no longer known' })
    let audit
    try {
      audit = await requestAudit(init.node, accused, sessionId, t.commitment, init.timeoutMs)
    } catch (e) {
      return done({ verdict: 'unverified', reason: `audit failed: ${(e as Error).message}` })
    }
    if (audit.error || audit.inputs.length === 0) return done({ verdict: 'unverified', reason: `audit refused: ${audit.error}` })
    let c: Commitment
    try {
      c = await verifyCommitment(audit.commitment, audit.signature)
    } catch (e) {
      return done({ verdict: 'unverified', reason: (e as CommitmentError).message })
    }
    base.range = { start: c.start, end: c.end }
    // The signed commitment must name the digest that came with the step.
    if (c.digest !== bytesToHex(t.commitment)) return done({ verdict: 'unverified', reason: 'the audited commitment is not the one sent with the step' })
    if (c.peer !== t.peerId || c.origin !== self || c.session !== sessionId || c.model !== init.model) return done({ verdict: 'unverified', reason: 'the commitment names another peer, origin, session or model' })
    const last = audit.inputs.at(-1)!
    const output = rowFromBytes(audit.output)
    if (Number(last.step) !== c.step || last.chunkIndex !== c.chunk || !matchesCommitment(c, last, output)) {
      return done({ verdict: 'unverified', reason: 'the audit answer does not match the commitment' })
    }
    const weights = weightsOf(c.weights)
    // It committed to the format it runs; advertising another one misleads routing and checker choice.
    if (weightsOf(accused.weights) !== weights) return done({ verdict: 'unverified', reason: `the hop advertises ${weightsOf(accused.weights)} weights but committed to ${weights}` })
    // Only a checker on the same weight format: another format is a different model, further off than the tolerance.
    const others = peers.filter((p) => p.peerId !== c.peer && p.start === c.start && p.end === c.end && weightsOf(p.weights) === weights)
    if (others.length === 0) return done({ verdict: 'no-checker', reason: `no other peer serves [${c.start}, ${c.end}) in ${weights} weights` })
    // Checkers in turn, so one slow or absent replica does not take every check.
    let lastError = ''
    for (let i = 0; i < others.length; i++) {
      const checker = others[(checkerTurn++ + i) % others.length]!
      try {
        const r = await requestRecompute(init.node, checker, init.model, { start: c.start, end: c.end }, audit.inputs, init.timeoutMs, weights)
        if (r.error) throw new Error(r.error)
        const reference = rowFromBytes(r.output)
        const distance = rowDistance(c.row, output, reference)
        // A pass carries the same record as a failure: the Oracle takes it as proof the hop's work was sampled.
        const evidence: Evidence = { commitment: audit.commitment, signature: audit.signature, inputs: audit.inputs, output, checker: checker.peerId, checkerOutput: reference }
        return done({ verdict: distance <= tolerance ? 'pass' : 'fail', checker: checker.peerId, distance, evidence })
      } catch (e) {
        logger.debug({ checker: checker.peerId, err: (e as Error).message }, 'spot check: checker did not recompute')
        lastError = (e as Error).message
      }
    }
    return done({ verdict: 'no-checker', reason: `no checker recomputed the step (${lastError})` })
  }

  return {
    /**
     * One step of a session this origin runs: each hop's timing as the token frame brought it;
     * `peers` are the peers the route was planned over (checkers are taken from them).
     */
    observe(sessionId: string, step: number, timings: HopTimingMs[], peers: PeerShard[]): void {
      for (const t of timings) {
        if (t.peerId === self) continue
        stats.observed++
        const seq = (observedOf.get(t.peerId) ?? 0) + 1
        observedOf.set(t.peerId, seq)
        if (!t.commitment?.length) {
          stats.uncommitted++
          continue
        }
        if (!init.sampler.pick(t.peerId)) continue
        stats.sampled++
        if (queue.length >= MAX_QUEUED) {
          stats.skipped++
          continue
        }
        queue.push(() =>
          check(sessionId, step, seq, { ...t, commitment: t.commitment! }, peers).then(
            (r) => {
              stats[r.verdict]++
              if (r.verdict === 'pass') init.sampler.passed(r.peerId)
              if (r.verdict === 'fail') {
                init.sampler.failed(r.peerId)
                logger.warn({ peerId: r.peerId, checker: r.checker, distance: r.distance, step: r.step }, 'spot check failed')
              }
              init.onResult?.(r)
            },
            (e: Error) => logger.warn({ err: e.message }, 'spot check crashed'),
          ),
        )
        if (!init.holdUntilFlush) released++
        pump()
      }
    },
    /** Releases the held checks (holdUntilFlush): they run, `maxInFlight` at a time. */
    flush(): void {
      released = queue.length
      pump()
    },
    /** Resolves when the checks started so far have their verdicts. */
    async settled(): Promise<void> {
      while (inFlight.size) await Promise.race([...inFlight])
    },
    stats: (): SpotCheckerStats => ({ ...stats }),
  }
}

export type SpotChecker = ReturnType<typeof createSpotChecker>
