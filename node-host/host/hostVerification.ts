import type { Libp2p } from 'libp2p'
import type { ShardSession } from '../../shared/engine/shardSession.ts'
import type { CommitmentSigner } from '../../shared/verify/commitment.ts'
import { evidenceToJson } from '../../shared/verify/evidence.ts'
import { createSampler, type SamplerInit } from '../../shared/verify/sampler.ts'
import { createSpotChecker, type CheckResult } from '../../shared/verify/spotChecker.ts'
import { createServingVerification } from '../../shared/verify/servingVerification.ts'
import type { Logger } from '../logger.ts'
import { nodeSha256 } from './nodeSha256.ts'

export type HostVerificationOptions = {
  /** The host's peer key: signs its commitments. */
  signer: CommitmentSigner
  /** The Oracle failed checks (as evidence) and passed ones (as samples: what gets the checked peer paid) are sent to (its base URL); without one they are only logged. */
  oracle?: string
  /** Least time between two passes of one peer sent to the Oracle. @default 60_000 */
  sampleEveryMs?: number
  sampling?: SamplerInit
  tolerance?: number
}

/**
 * Spot checks on a node host (shared/verify): as a server it commits to every step and answers
 * audits and recomputations; as an origin it samples its routes' steps, checks them beside the
 * generation, and sends each failure's evidence to the Oracle (which checks it itself).
 */
export function createHostVerification(init: HostVerificationOptions & { node: Libp2p; model: string; hiddenSize: number; shard: () => ShardSession | undefined; weights?: string; logger: Logger }) {
  const serving = createServingVerification({ node: init.node, signer: init.signer, model: init.model, hiddenSize: init.hiddenSize, shard: init.shard, weights: init.weights, logger: init.logger, sha256: nodeSha256 })
  const sampleEveryMs = init.sampleEveryMs ?? 60_000
  /** When a pass of each peer was last sent: the Oracle needs one per peer and epoch, not every pass. */
  const lastSample = new Map<string, number>()
  const report = async (r: CheckResult) => {
    if (!r.evidence || !init.oracle) return
    if (r.verdict === 'pass') {
      const t = Date.now()
      if (t - (lastSample.get(r.peerId) ?? -Infinity) < sampleEveryMs) return
      lastSample.set(r.peerId, t)
      if (lastSample.size > 10_000) lastSample.delete(lastSample.keys().next().value!)
    } else if (r.verdict !== 'fail') return
    const path = r.verdict === 'pass' ? '/api/v1/verify/sample' : '/api/v1/verify/evidence'
    const res = await fetch(new URL(path, init.oracle), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(evidenceToJson(r.evidence)), signal: AbortSignal.timeout(60_000) })
    const body = await res.text()
    if (r.verdict === 'pass') init.logger.debug({ peerId: r.peerId, status: res.status, answer: body.slice(0, 300) }, 'spot check: sample sent to the Oracle')
    else init.logger.warn({ peerId: r.peerId, status: res.status, answer: body.slice(0, 300) }, 'spot check: evidence sent to the Oracle')
  }
  const checker = createSpotChecker({
    node: init.node,
    model: init.model,
    sampler: createSampler(init.sampling),
    tolerance: init.tolerance,
    // The host flushes when a generation has delivered its tokens: checks never slow the one they check.
    holdUntilFlush: true,
    logger: init.logger,
    onResult: (r) => void report(r).catch((e: Error) => init.logger.warn({ err: e.message }, 'spot check: the Oracle did not take the evidence')),
  })
  return { stepLog: serving.stepLog, spotChecker: checker, start: () => serving.start(), stop: () => serving.stop(), stats: () => ({ ...checker.stats(), ...serving.stats() }) }
}
