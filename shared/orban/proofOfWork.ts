import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'

/**
 * The Orban proof of work: find a 64-bit counter such that SHA-256(nonce ‖ counter as 8
 * little-endian bytes) starts with `difficulty` zero bits. Upstream's response carries only the
 * hash; ours carries the counter too, so the platform can recompute and check it.
 */

export type PowSolution = {
  counter: bigint
  /** The winning hash. */
  hash: Uint8Array
  /** Its hex (POW_RESPONSE.response). */
  response: string
  /** Counters tried. */
  attempts: number
}

export type SolveProofOfWorkParameters = {
  nonce: Uint8Array
  /** Leading zero bits required (0–256). */
  difficulty: number
  /** Stops the search (the promise rejects with the signal's reason). */
  signal?: AbortSignal
  /** Hashes between yields to the event loop. @default 16384 */
  chunk?: number
  /** First counter tried. @default 0n */
  start?: bigint
}

export class ProofOfWorkError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ProofOfWorkError'
  }
}

/** Leading zero bits of a hash. */
export function leadingZeroBits(hash: Uint8Array): number {
  let bits = 0
  for (const byte of hash) {
    if (byte === 0) {
      bits += 8
      continue
    }
    return bits + Math.clz32(byte) - 24
  }
  return bits
}

/** SHA-256(nonce ‖ counter as 8 little-endian bytes). */
export function proofOfWorkHash(nonce: Uint8Array, counter: bigint): Uint8Array {
  const input = new Uint8Array(nonce.length + 8)
  input.set(nonce)
  new DataView(input.buffer).setBigUint64(nonce.length, BigInt.asUintN(64, counter), true)
  return sha256(input)
}

const yieldToLoop = () => new Promise<void>((resolve) => setTimeout(resolve, 0))

/** Searches counters from `start` upwards, yielding every `chunk` hashes so it stays abortable. */
export async function solveProofOfWork({ nonce, difficulty, signal, chunk = 16384, start = 0n }: SolveProofOfWorkParameters): Promise<PowSolution> {
  if (!Number.isInteger(difficulty) || difficulty < 0 || difficulty > 256) throw new ProofOfWorkError(`difficulty ${difficulty} is not 0–256 bits`)
  const input = new Uint8Array(nonce.length + 8)
  input.set(nonce)
  const view = new DataView(input.buffer)
  let counter = BigInt.asUintN(64, start)
  let attempts = 0
  for (;;) {
    signal?.throwIfAborted()
    // The low 32 bits are written as a number in the loop (BigInt per hash is slow); the high half changes once per 2^32.
    let low = Number(counter & 0xffff_ffffn)
    const high = Number(counter >> 32n)
    view.setUint32(nonce.length + 4, high, true)
    for (let i = 0; i < chunk; i++) {
      view.setUint32(nonce.length, low, true)
      const hash = sha256(input)
      attempts++
      if (leadingZeroBits(hash) >= difficulty) {
        const found = (BigInt(high) << 32n) | BigInt(low)
        return { counter: found, hash, response: bytesToHex(hash), attempts }
      }
      low++
      if (low > 0xffff_ffff) break
    }
    counter = BigInt.asUintN(64, (BigInt(high) << 32n) + BigInt(low))
    if (counter === BigInt.asUintN(64, start) && attempts > 0) throw new ProofOfWorkError('no counter meets the difficulty')
    await yieldToLoop()
  }
}

export type VerifyProofOfWorkParameters = {
  nonce: Uint8Array
  difficulty: number
  counter: bigint
  /** The hash the prover claimed (hex, any case, optional 0x); when given it must match. */
  response?: string
}

/** Recomputes the hash from the counter: true when it has the zero bits (and equals the claimed response). */
export function verifyProofOfWork({ nonce, difficulty, counter, response }: VerifyProofOfWorkParameters): boolean {
  if (counter < 0n || counter > 0xffff_ffff_ffff_ffffn) return false
  const hash = proofOfWorkHash(nonce, counter)
  if (response !== undefined && response.replace(/^0x/i, '').toLowerCase() !== bytesToHex(hash)) return false
  return leadingZeroBits(hash) >= difficulty
}
