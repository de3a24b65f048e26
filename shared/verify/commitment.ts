import { toBinary } from '@bufbuild/protobuf'
import { peerIdFromString } from '@libp2p/peer-id'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { StepInputSchema, type StepInput } from '../../proto/gen/mesh_pb.js'
import { DEFAULT_WEIGHTS, weightFormatSchema } from './weightFormat.ts'

/**
 * A hop's commitment to one step: "on this input I produced this output". It binds the step's
 * input (as the hop received it) and the float32 output row the hop retains for audits with one
 * exact SHA-256 over both and the step's identity (`digest`). The comparison that tolerates honest
 * backend noise happens on the values an audit fetches (distance, see tolerance.ts), not on the
 * digest: a quantized digest flips whenever one of thousands of values sits near a rounding edge,
 * so honest peers on different backends would fail it now and then; a distance needs the values
 * anyway for a third party (the Oracle) to judge.
 */
export const commitmentSchema = z.object({
  v: z.literal(1),
  /** The committing hop. */
  peer: z.string().min(1).max(128),
  /** The origin's session id (unique per origin and route). */
  session: z.string().min(1).max(128),
  /** Whose session it is: only this origin may audit it. */
  origin: z.string().min(1).max(128),
  model: z.string().max(256),
  step: z.number().int().min(0),
  chunk: z.number().int().min(0),
  start: z.number().int().min(0),
  end: z.number().int().min(1),
  /** Positions the hop's session held after the step. */
  length: z.number().int().min(1),
  /** What the output row is: the last position's hidden state, or the top logits of the last shard (see committedRow). */
  row: z.enum(['hidden', 'top-logits']),
  /**
   * The weight format the hop ran the step in (weightFormat.ts); absent means float32. It is bound
   * by the digest, so it is fixed when the step is served, not chosen when audited.
   */
  weights: weightFormatSchema.optional(),
  /** stepDigest hex: what the hop sent the origin with the step. */
  digest: z.string().regex(/^[0-9a-f]{64}$/),
})
export type Commitment = z.infer<typeof commitmentSchema>
export type StepMeta = Omit<Commitment, 'v' | 'digest'>

/** Domain prefix: a commitment signature is never valid for anything else the peer key signs. */
const DOMAIN = 'shardmesh/verify/commitment/v1\n'

export class CommitmentError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CommitmentError'
  }
}

/** The step's identity in a fixed field order (the digest must not depend on how an object was built). */
// float32 adds nothing, so float32 digests stay the ones older builds compute.
const metaBytes = (m: StepMeta) =>
  new TextEncoder().encode(JSON.stringify([m.peer, m.session, m.origin, m.model, m.step, m.chunk, m.start, m.end, m.length, m.row, ...(m.weights && m.weights !== DEFAULT_WEIGHTS ? [m.weights] : [])]))

/**
 * sha256(identity ‖ 0 ‖ input protobuf ‖ output float32 bytes): one pass over everything a step
 * binds (the hop computes it on every step it serves, so it is kept to one hash).
 */
export function stepDigest(meta: StepMeta, input: StepInput, output: Float32Array): Uint8Array {
  return sha256.create().update(metaBytes(meta)).update(new Uint8Array([0])).update(toBinary(StepInputSchema, input)).update(new Uint8Array(output.buffer, output.byteOffset, output.byteLength)).digest()
}

/** Whether an input and output row are the ones a commitment names. */
export const matchesCommitment = (c: Commitment, input: StepInput, output: Float32Array): boolean => bytesToHex(stepDigest(c, input, output)) === c.digest

/** The bytes a hop signs when audited (their digest went to the origin with the step). */
export function encodeCommitment(c: Commitment): Uint8Array {
  return new TextEncoder().encode(DOMAIN + JSON.stringify(c))
}

/** Parses commitment bytes (untrusted: from any peer). */
export function decodeCommitment(bytes: Uint8Array): Commitment {
  const text = new TextDecoder().decode(bytes)
  if (!text.startsWith(DOMAIN)) throw new CommitmentError('not a shardmesh commitment')
  let json: unknown
  try {
    json = JSON.parse(text.slice(DOMAIN.length))
  } catch {
    throw new CommitmentError('commitment is not JSON')
  }
  const parsed = commitmentSchema.safeParse(json)
  if (!parsed.success) throw new CommitmentError(`malformed commitment: ${parsed.error.issues[0]?.message}`)
  return parsed.data
}

/**
 * The commitment, once its signature verifies under the key of the peer it names (a peer id of
 * an Ed25519 key carries the key itself): nobody but that peer can have made it.
 */
export async function verifyCommitment(bytes: Uint8Array, signature: Uint8Array): Promise<Commitment> {
  const c = decodeCommitment(bytes)
  let ok = false
  try {
    const key = peerIdFromString(c.peer).publicKey
    ok = key !== undefined && (await key.verify(bytes, signature))
  } catch {
    ok = false
  }
  if (!ok) throw new CommitmentError(`the commitment's signature is not ${c.peer}'s`)
  return c
}

/** What signs commitments: the hop's libp2p private key. */
export type CommitmentSigner = { peerId: string; sign(data: Uint8Array): Uint8Array | Promise<Uint8Array> }
