import { peerIdFromString } from '@libp2p/peer-id'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import type { StepInput } from '../../proto/gen/mesh_pb.js'
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
  /** 2: the digest hashes the input's values raw, not its protobuf encoding (1). */
  v: z.literal(2),
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
const DOMAIN = 'shardmesh/verify/commitment/v2\n'

export class CommitmentError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CommitmentError'
  }
}

/** One encoder for every digest (a hop builds two per served step). */
const UTF8 = new TextEncoder()

/** The step's identity in a fixed field order (the digest must not depend on how an object was built). */
// float32, the default, is left out: an absent format and 'float32' name the same step.
const metaBytes = (m: StepMeta) =>
  UTF8.encode(JSON.stringify([m.peer, m.session, m.origin, m.model, m.step, m.chunk, m.start, m.end, m.length, m.row, ...(m.weights && m.weights !== DEFAULT_WEIGHTS ? [m.weights] : [])]))

const ZERO = new Uint8Array([0])

/** An incremental SHA-256. */
export type Sha256 = { update(data: Uint8Array): Sha256; digest(): Uint8Array }
/**
 * Where a step digest's SHA-256 comes from: noble's everywhere (synchronous, as WebCrypto's is
 * not); a Node host passes node:crypto's (see node-host/host/nodeSha256.ts).
 */
export type Sha256Factory = () => Sha256
export const nobleSha256: Sha256Factory = () => sha256.create()

/** A step's digest with its input hashed: what remains is the meta and the output row (finishStepDigest). */
export type PendingDigest = { readonly hash: Sha256 }

/**
 * The first part of a step's digest: its input, as a small JSON header (step, chunk, the tensor's
 * dtype, shape and byte count, or the token count) and the raw values. A hop starts it as the
 * step's compute starts: in a page, whose shard runs in a worker, the two overlap.
 */
export function startStepDigest(input: StepInput, createHash: Sha256Factory = nobleSha256): PendingDigest {
  const hash = createHash()
  const head = [String(input.step), input.chunkIndex]
  if (input.input.case === 'hidden') {
    const t = input.input.value
    hash.update(UTF8.encode(JSON.stringify([...head, 'hidden', t.dtype, t.shape, t.data.byteLength]))).update(ZERO).update(t.data)
  } else {
    const ids = Uint32Array.from(input.input.value?.ids ?? [])
    hash.update(UTF8.encode(JSON.stringify([...head, 'tokens', ids.length]))).update(ZERO).update(new Uint8Array(ids.buffer))
  }
  return { hash }
}

/**
 * sha256(input header ‖ 0 ‖ input values ‖ identity ‖ 0 ‖ output float32 bytes). Each part's
 * length follows from what comes before it (JSON holds no 0 byte, the header states the value
 * bytes), so no two steps share the bytes hashed.
 */
export function finishStepDigest(pending: PendingDigest, meta: StepMeta, output: Float32Array): Uint8Array {
  return pending.hash.update(metaBytes(meta)).update(ZERO).update(new Uint8Array(output.buffer, output.byteOffset, output.byteLength)).digest()
}

/** A step's digest in one call (the origin's and the Oracle's checks): the hop's two parts together. */
export function stepDigest(meta: StepMeta, input: StepInput, output: Float32Array): Uint8Array {
  return finishStepDigest(startStepDigest(input), meta, output)
}

/** Whether an input and output row are the ones a commitment names. */
export const matchesCommitment = (c: Commitment, input: StepInput, output: Float32Array): boolean => bytesToHex(stepDigest(c, input, output)) === c.digest

/** The bytes a hop signs when audited (their digest went to the origin with the step). */
export function encodeCommitment(c: Commitment): Uint8Array {
  return UTF8.encode(DOMAIN + JSON.stringify(c))
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
