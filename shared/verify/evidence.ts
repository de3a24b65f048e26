import { fromBinary, toBinary } from '@bufbuild/protobuf'
import { z } from 'zod'
import { StepInputSchema, type StepInput } from '../../proto/gen/mesh_pb.js'
import { base64ToBytes, bytesToBase64 } from '../orban/base64.ts'
import { matchesCommitment, verifyCommitment, type Commitment } from './commitment.ts'

/**
 * A failed check, as the origin sends it to the Oracle: the accused hop's signed commitment, the
 * inputs and output row it handed over in the audit (their digests are in the commitment), and
 * what the checker computed. Everything but the checker's row is the accused's own signed word.
 */
export type Evidence = {
  commitment: Uint8Array
  signature: Uint8Array
  inputs: StepInput[]
  output: Float32Array
  checker: string
  checkerOutput: Float32Array
}

const b64 = z.string().max(48 << 20).regex(/^[A-Za-z0-9+/]*={0,2}$/)
export const evidenceJsonSchema = z.object({
  commitment: b64,
  signature: b64,
  inputs: z.array(b64).min(1).max(100_000),
  output: b64,
  checker: z.string().min(1).max(128),
  checkerOutput: b64,
})
export type EvidenceJson = z.infer<typeof evidenceJsonSchema>

export class EvidenceError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'EvidenceError'
  }
}

const toB64 = bytesToBase64
const fromB64 = base64ToBytes
const f32 = (b: Uint8Array) => {
  if (b.byteLength % 4) throw new EvidenceError('a row is not float32')
  return new Float32Array(new Uint8Array(b).buffer)
}
const rowBytes = (r: Float32Array) => new Uint8Array(r.buffer, r.byteOffset, r.byteLength)

export function evidenceToJson(e: Evidence): EvidenceJson {
  return {
    commitment: toB64(e.commitment),
    signature: toB64(e.signature),
    inputs: e.inputs.map((i) => toB64(toBinary(StepInputSchema, i))),
    output: toB64(rowBytes(e.output)),
    checker: e.checker,
    checkerOutput: toB64(rowBytes(e.checkerOutput)),
  }
}

export function evidenceFromJson(j: EvidenceJson): Evidence {
  try {
    return {
      commitment: fromB64(j.commitment),
      signature: fromB64(j.signature),
      inputs: j.inputs.map((i) => fromBinary(StepInputSchema, fromB64(i))),
      output: f32(fromB64(j.output)),
      checker: j.checker,
      checkerOutput: f32(fromB64(j.checkerOutput)),
    }
  } catch (e) {
    if (e instanceof EvidenceError) throw e
    throw new EvidenceError(`malformed evidence: ${(e as Error).message}`)
  }
}

/**
 * Checks what the accused signed against what it handed over: the signature is the accused's,
 * the last input is the committed step's and has the committed digest, and the output row has the
 * committed digest. Then the evidence binds the accused to "on these inputs I produced this row";
 * whether that row is wrong is for a recomputation to say.
 */
export async function bindEvidence(e: Evidence): Promise<Commitment> {
  const c = await verifyCommitment(e.commitment, e.signature).catch((err: Error) => {
    throw new EvidenceError(err.message)
  })
  const last = e.inputs.at(-1)!
  if (Number(last.step) !== c.step || last.chunkIndex !== c.chunk) throw new EvidenceError('the last input is not the committed step')
  if (!matchesCommitment(c, last, e.output)) throw new EvidenceError('the input or output is not the one the accused committed to')
  return c
}
