import { hexToBytes } from '@noble/hashes/utils.js'
import type { Logger } from '../logger.ts'
import type { OrbanAgentEmitter } from './orbanAgentEvents.ts'
import type { OrbanLink } from './orbanLink.ts'
import type { OrbanMessageOf } from './orbanMessages.ts'
import { solveProofOfWork } from './proofOfWork.ts'

export type OrbanPowInit = {
  /** Challenges asking more zero bits are refused with an ERROR. */
  maxDifficulty: number
  /** Sent in POW_RESPONSE. */
  gpuSignature: { device_uuid: string; cuda_version: string | null }
}

export type OrbanPowComponents = {
  link: OrbanLink
  events: OrbanAgentEmitter
  log: Logger
  /** Aborts a search in progress when the agent stops. */
  stopSignal: AbortSignal
}

/** Answers POW_CHALLENGE: solves it before its deadline, or says why not with an ERROR. */
export function createOrbanPowResponder(init: OrbanPowInit, components: OrbanPowComponents): (challenge: OrbanMessageOf<'POW_CHALLENGE'>) => Promise<void> {
  const { maxDifficulty, gpuSignature } = init
  const { link, events, log, stopSignal } = components
  return async function answerPow(challenge) {
    const context = { challenge_id: challenge.challenge_id }
    if (challenge.difficulty > maxDifficulty) {
      link.send('ERROR', { code: 'POW_TOO_HARD', message: `difficulty ${challenge.difficulty} exceeds ${maxDifficulty} bits`, context, recoverable: true })
      return
    }
    const started = Date.now()
    const deadline = AbortSignal.timeout(Math.max(0, Date.parse(challenge.deadline) - started))
    try {
      const solution = await solveProofOfWork({ nonce: hexToBytes(challenge.nonce), difficulty: challenge.difficulty, signal: AbortSignal.any([stopSignal, deadline]) })
      const ms = Date.now() - started
      link.send('POW_RESPONSE', { challenge_id: challenge.challenge_id, response: solution.response, computation_time_ms: ms, gpu_signature: gpuSignature, counter: solution.counter })
      events.emit('pow', { challengeId: challenge.challenge_id, difficulty: challenge.difficulty, counter: solution.counter, ms })
    } catch (e) {
      if (stopSignal.aborted) return
      log.warn({ challengeId: challenge.challenge_id, err: e }, 'orban agent: proof of work missed its deadline')
      link.send('ERROR', { code: 'TIMEOUT', message: 'proof of work missed its deadline', context, recoverable: true })
    }
  }
}
