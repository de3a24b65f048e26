import type { ShardSession } from '../engine/shardSession.ts'
import type { Logger } from '../logger.ts'
import type { MeshNode } from '../mesh/forwardService.ts'
import type { CommitmentSigner, Sha256Factory } from './commitment.ts'
import { createStepLog } from './stepLog.ts'
import { createVerifyService } from './verifyProtocol.ts'

export type ServingVerificationInit = {
  node: MeshNode
  /** The peer's libp2p key: signs its commitments when audited. */
  signer: CommitmentSigner
  model: string
  hiddenSize: number
  /** The shard served now (recomputations for checkers run on it). */
  shard: () => ShardSession | undefined
  /** The weight format the shard runs. @default 'float32' */
  weights?: string
  logger?: Logger
  /** The commitments' SHA-256 (a Node host passes node:crypto's). @default noble's */
  sha256?: Sha256Factory
}

/**
 * The serving side of spot checks, as every peer that serves a shard runs it (node hosts and
 * pages alike): a step log the forward service commits each served step to (pass `stepLog` to
 * createMeshPeer), and the /shardmesh/verify service that answers audits from it and
 * recomputations for other peers' checks. A peer without it sends no commitments: its work cannot
 * be sampled, so an Oracle that pays sampled work only does not pay it.
 */
export function createServingVerification(init: ServingVerificationInit) {
  const stepLog = createStepLog({ signer: init.signer, model: init.model, hiddenSize: init.hiddenSize, weights: init.weights, sha256: init.sha256 })
  const service = createVerifyService({ node: init.node, model: init.model, log: stepLog, shard: init.shard, weights: init.weights, logger: init.logger })
  return { stepLog, start: () => service.start(), stop: () => service.stop(), stats: () => ({ ...service.stats(), retainedBytes: stepLog.bytes() }) }
}

export type ServingVerification = ReturnType<typeof createServingVerification>
