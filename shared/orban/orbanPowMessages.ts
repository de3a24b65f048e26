import { z } from 'zod'
import { counter64, hex, id, timestamp, uint64 } from './orbanFieldSchemas.ts'

/** Proof of work: the platform's challenge and the agent's answer. */
export const orbanPowPayloads = {
  POW_CHALLENGE: z.object({
    challenge_id: id,
    /** Hex of the nonce bytes (at most 128). */
    nonce: hex.pipe(z.string().min(2).max(256)),
    difficulty: z.number().int().min(0).max(256),
    deadline: timestamp,
  }),
  POW_RESPONSE: z.object({
    challenge_id: id,
    /** Hex of the winning SHA-256 hash (a 0x prefix is dropped, case folded). */
    response: hex.pipe(z.string().max(128)),
    computation_time_ms: uint64,
    gpu_signature: z.object({ device_uuid: z.string().max(256), cuda_version: z.string().max(64).nullable().default(null) }),
    /** The winning counter: ours, upstream omits it (then nothing can be verified). */
    counter: counter64.optional(),
  }),
} as const
